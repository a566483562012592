"""One aetcd client connection to one etcd member, with TLS, auth and leader checks.

Part of the kvstore layer, under ``EtcdBackend``. aetcd 1.0.0 dials one plaintext
``host:port``; ``open_client`` returns an ``aetcd.Client`` whose ``connect()`` dials
with TLS (CA bundle, optional client certificate) when the config asks for it,
fetches an auth token for username/password, and sends etcd's ``hasleader``
metadata on every call so that a member cut off from the quorum refuses requests
and cancels watches instead of serving stale data (the Go client's
``WithRequireLeader``). ``watch_range`` gives each watch its own stream, since
aetcd's shared watch stream does not recover from a failure. Calls carry no
deadline of their own (gRPC's would start counting before the event loop even sent
the request): the backend bounds them with ``member_deadline``. Failover between
members is the backend's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from kubemirror.kvstore import etcd_config

__all__ = ["open_client"]

REQUIRE_LEADER = ("hasleader", "true")


async def _shutdown(watcher: Any) -> None:
    """Close a private watcher's stream (bounded: aetcd's teardown can block)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2.0):
            await watcher.shutdown()


class _StreamEnded(ConnectionError):
    """The private watch stream's task ended (channel closed or stream failed)."""


class _PrivateWatch:
    """Events of one ``watch_range``: iterate them; ``cancel()`` closes the stream.

    Iteration raises the stream's error (as aetcd reports it) and ends when the
    server or ``cancel()`` ends the stream.
    """

    def __init__(self, watcher: Any, events: asyncio.Queue[Any]) -> None:
        self._watcher = watcher
        self._events = events

    def __aiter__(self) -> _PrivateWatch:
        return self

    async def __anext__(self) -> Any:
        item = await self._events.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def cancel(self) -> None:
        await _shutdown(self._watcher)


@functools.cache
def _client_class(aetcd: Any) -> type[Any]:
    """A subclass of ``aetcd.Client`` (built once, as aetcd is imported lazily)."""
    import grpc
    from aetcd import rpc

    class _Client(aetcd.Client):  # type: ignore[misc]
        _connected: asyncio.Event

        def __init__(
            self,
            endpoint: etcd_config.EtcdEndpoint,
            credentials: grpc.ChannelCredentials | None,
            username: str | None,
            password: str | None,
            options: dict[str, Any],
        ) -> None:
            super().__init__(
                host=endpoint.host, port=endpoint.port, username=username, password=password,
                timeout=None, options=options,
            )
            self._credentials = credentials
            self._dialing: asyncio.Task[None] | None = None

        async def connect(self) -> None:
            """Dial once; concurrent callers share that dial (and its error), with no
            timeout of their own (aetcd's 3 s one counted the busy event loop)."""
            if self._connected.is_set():
                return
            if self._dialing is None or self._dialing.done():
                self._dialing = asyncio.get_running_loop().create_task(self._dial())
            await asyncio.shield(self._dialing)

        async def close(self) -> None:
            if self._dialing is not None and not self._dialing.done():
                self._dialing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._dialing
            await super().close()

        async def _dial(self) -> None:
            target = f"{self._host}:{self._port}"
            options = list(self._options.items())
            channel = (
                grpc.aio.insecure_channel(target, options=options)
                if self._credentials is None
                else grpc.aio.secure_channel(target, self._credentials, options=options)
            )
            metadata: list[tuple[str, str]] = [REQUIRE_LEADER]
            try:
                if self._username is not None:
                    reply = await rpc.AuthStub(channel).Authenticate(
                        rpc.AuthenticateRequest(name=self._username, password=self._password),
                    )
                    metadata.append(("token", reply.token))
            except BaseException:
                await channel.close()
                raise
            self.channel = channel
            self.metadata = tuple(metadata)
            self.kvstub = rpc.KVStub(channel)
            self.clusterstub = rpc.ClusterStub(channel)
            self.leasestub = rpc.LeaseStub(channel)
            self.maintenancestub = rpc.MaintenanceStub(channel)
            self._watcher = self._new_watcher()  # aetcd's own watch(); we use watch_range
            self._connected.set()

        def _new_watcher(self) -> Any:
            return aetcd.watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )

        async def watch_range(self, key: bytes, range_end: bytes, start_revision: int) -> Any:
            """A watch of ``[key, range_end)`` from ``start_revision`` on its own stream.

            aetcd's shared ``Watcher`` never recovers once its stream failed (its
            request queue fills up and later watches block forever), so every watch
            gets a private ``Watcher`` (one gRPC stream), shut down with the watch.
            """
            await self.connect()
            watcher = self._new_watcher()
            events: asyncio.Queue[Any] = asyncio.Queue()

            async def deliver(response: Any) -> None:
                await events.put(response)

            try:
                await watcher.add_callback(
                    key, deliver, range_end=range_end, start_revision=start_revision
                )
            except BaseException:
                await _shutdown(watcher)
                raise
            # The stream task can also end without telling the subscribers (it is
            # cancelled when the channel closes): end the iteration then too.
            stream = getattr(watcher, "_request_handler", None)
            if stream is not None:
                stream.add_done_callback(
                    lambda _: events.put_nowait(_StreamEnded("watch stream ended"))
                )
            return _PrivateWatch(watcher, events)

    return _Client


def channel_credentials(config: etcd_config.EtcdClientConfig) -> Any:
    """gRPC channel credentials for ``config`` (None without TLS); reads the PEM files."""
    if not config.tls:
        return None
    import grpc

    ca, key, cert = config.read_credentials()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


def open_client(
    aetcd: Any,
    config: etcd_config.EtcdClientConfig,
    endpoint: etcd_config.EtcdEndpoint,
    credentials: Any,
    *,
    options: dict[str, Any],
) -> Any:
    """A new, not yet connected client for ``endpoint`` (connects on first use).

    ``credentials`` comes from ``channel_credentials(config)`` (shared by all the
    clients of a backend). Its calls have no deadline: bound them with
    ``member_deadline.answer_within``. Close the client with ``await client.close()``.
    """
    cls = _client_class(aetcd)
    return cls(endpoint, credentials, config.username, config.password, dict(options))
