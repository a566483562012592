"""One aetcd client connection to one etcd member, with TLS, auth and leader checks.

Part of the kvstore layer, under ``EtcdBackend``. aetcd 1.0.0 dials one plaintext
``host:port``; ``open_client`` returns an ``aetcd.Client`` whose ``connect()`` dials
with TLS (CA bundle, optional client certificate) when the config asks for it,
fetches an auth token for username/password, and sends etcd's ``hasleader``
metadata on every call so that a member cut off from the quorum refuses requests
and cancels watches instead of serving stale data (the Go client's
``WithRequireLeader``). ``watch_range`` gives each watch its own gRPC stream, read
directly (``WatchStream``), since aetcd's shared watch stream does not recover from
a failure and costs a callback and a queue hop per event. Calls carry no
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

__all__ = ["WatchStream", "open_client"]

REQUIRE_LEADER = ("hasleader", "true")


class WatchStream:
    """One ``watch_range``'s gRPC stream: iterate it for batches of etcd events.

    Each item is the ``events`` of one watch response (protobuf ``mvccpb.Event``s,
    in revision order; progress notifications are skipped). Iteration raises aetcd's
    ``RevisionCompactedError`` when the start revision is compacted,
    ``ConnectionError`` when the server cancels the watch (no leader, for example),
    gRPC's error when the stream fails, and ends when the server ends the stream.
    ``cancel()`` hangs up (no wait). One reader at a time.
    """

    def __init__(self, call: Any, compacted: type[Exception]) -> None:
        import grpc

        self._call = call
        self._compacted = compacted
        self._eof = grpc.aio.EOF

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> Any:
        while True:
            response = await self._call.read()
            if response is self._eof:
                raise StopAsyncIteration
            if response.compact_revision:
                raise self._compacted(response.compact_revision)
            if response.canceled:
                raise _WatchCanceled(response.cancel_reason or "watch canceled by etcd")
            if response.events:
                return response.events

    async def cancel(self) -> None:
        self._call.cancel()


class _WatchCanceled(ConnectionError):
    """etcd canceled a watch (its ``cancel_reason`` is the message): watch again."""


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
            self._watcher = None  # aetcd's shared watch stream: unused (see watch_range)
            self._connected.set()

        async def watch_range(
            self, key: bytes, range_end: bytes, start_revision: int
        ) -> WatchStream:
            """A watch of ``[key, range_end)`` from ``start_revision`` on its own stream,
            once etcd confirmed it (no deadline: the caller bounds the wait).

            Not aetcd's shared ``Watcher``: it never recovers once its stream failed,
            and it hands events one by one through a callback, a lock and a queue;
            here the watch's gRPC stream is read directly, a response at a time.
            """
            await self.connect()
            call = rpc.WatchStub(self.channel).Watch(metadata=self.metadata)
            stream = WatchStream(call, aetcd.RevisionCompactedError)
            try:
                await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                    key=key, range_end=range_end, start_revision=start_revision)))
                created = await call.read()
                if created is grpc.aio.EOF:
                    raise _WatchCanceled("watch stream ended before the watch was created")
                if created.compact_revision:
                    raise aetcd.RevisionCompactedError(created.compact_revision)
                if created.canceled or not created.created:
                    raise _WatchCanceled(created.cancel_reason or "watch not created")
            except BaseException:
                call.cancel()
                raise
            return stream

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
