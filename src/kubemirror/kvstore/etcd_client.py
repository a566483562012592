"""One aetcd client connection to one etcd member, with TLS, auth and leader checks.

Part of the kvstore layer, under ``EtcdBackend``. aetcd 1.0.0 dials one plaintext
``host:port``; ``open_client`` returns an ``aetcd.Client`` whose ``connect()`` dials
with TLS (CA bundle, optional client certificate) when the config asks for it,
fetches an auth token for username/password, and sends etcd's ``hasleader``
metadata on every call so that a member cut off from the quorum refuses requests
and cancels watches instead of serving stale data (the Go client's
``WithRequireLeader``). ``revive_watcher()`` works around aetcd's watch stream not
restarting after a failure. Failover between members is the backend's job.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from kubemirror.kvstore import etcd_config

__all__ = ["open_client"]

REQUIRE_LEADER = ("hasleader", "true")


@functools.cache
def _client_class(aetcd: Any) -> type[Any]:
    """A subclass of ``aetcd.Client`` (built once, as aetcd is imported lazily)."""
    import grpc
    from aetcd import rpc

    class _Client(aetcd.Client):  # type: ignore[misc]
        _is_connecting: bool
        _connected: asyncio.Event
        def __init__(
            self,
            endpoint: etcd_config.EtcdEndpoint,
            credentials: grpc.ChannelCredentials | None,
            username: str | None,
            password: str | None,
            timeout: float,
            options: dict[str, Any],
        ) -> None:
            super().__init__(
                host=endpoint.host, port=endpoint.port, username=username, password=password,
                timeout=timeout, options=options,
            )
            self._credentials = credentials

        async def connect(self) -> None:
            if self._connected.is_set():
                return
            if self._is_connecting:
                await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
                return
            self._is_connecting = True
            try:
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
                            timeout=self._timeout,
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
                self._watcher = self._new_watcher()
                self._connected.set()
            finally:
                self._is_connecting = False

        def _new_watcher(self) -> Any:
            return aetcd.watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )

        def revive_watcher(self) -> None:
            """Replace the watch stream multiplexer if its stream task died.

            aetcd 1.0.0's ``Watcher`` never restarts its stream after the stream task
            failed (it awaits itself while tearing down and keeps the dead task), so
            every later watch would time out. Call before creating a watch.
            """
            handler = getattr(self._watcher, "_request_handler", None)
            if handler is not None and handler.done():
                self._watcher = self._new_watcher()

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
    timeout: float,
    options: dict[str, Any],
) -> Any:
    """A new, not yet connected client for ``endpoint`` (connects on first use).

    ``credentials`` comes from ``channel_credentials(config)`` (shared by all the
    clients of a backend). Close the client with ``await client.close()``.
    """
    cls = _client_class(aetcd)
    return cls(endpoint, credentials, config.username, config.password, timeout, dict(options))
