"""A throw-away multi-member etcd cluster on loopback for tests and benchmarks.

Part of the kvstore layer, over ``EtcdServer``. ``EtcdCluster`` runs ``size``
``etcd`` processes joined by ``--initial-cluster`` on 127.0.0.1 (plain-HTTP peer
traffic; the client listeners optionally TLS), waits until every member is healthy,
finds the leader (from each member's ``/metrics``), and lets a test kill (-9),
stop and restart single members to produce leader changes and partitions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from kubemirror import errors, lifecycle
from kubemirror.kvstore import etcd_config, etcd_server

__all__ = ["EtcdCluster"]


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = etcd_server.free_port()
        if port not in ports:
            ports.append(port)
    return ports


class EtcdCluster(lifecycle.BlockingService):
    """``size`` etcd members forming one cluster, each in a child process.

    Member ``i`` is named ``m{i}`` and keeps its data under ``work_dir/m{i}``; ports are
    fixed at construction. ``tls`` is handed to every member. The blocking methods
    (``start``, ``kill``, ``restart``, ``wait_leader``...) have ``a``-twins that run
    in a worker thread. Not thread-safe: drive it from one thread or event loop.
    """

    def __init__(
        self,
        size: int = 3,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        binary: str | None = None,
        tls: etcd_server.EtcdServerTLS | None = None,
        heartbeat_interval_ms: int = 10,
        election_timeout_ms: int = 100,
        start_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if size < 1:
            raise errors.ConfigError("must be at least 1", field="size", expression=str(size))
        self._owns_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(
            tempfile.mkdtemp(prefix="kubemirror-etcd-cluster-")
        )
        self.tls = tls
        self.start_timeout = start_timeout
        ports = _distinct_free_ports(2 * size)
        self.members = [
            etcd_server.EtcdServer(
                self.work_dir / f"m{i}", binary=binary, name=f"m{i}", tls=tls,
                client_port=ports[2 * i], peer_port=ports[2 * i + 1],
                heartbeat_interval_ms=heartbeat_interval_ms,
                election_timeout_ms=election_timeout_ms, start_timeout=start_timeout,
                extra_args=extra_args,
            )
            for i in range(size)
        ]
        used = set(ports)
        for member in self.members:
            while member.metrics_port in used:
                member.metrics_port = etcd_server.free_port()
            used.add(member.metrics_port)
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.initial_cluster = initial

    # -- addresses -------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL (``http://`` or ``https://``), in member order."""
        return [m.client_url for m in self.members]

    def client_config(
        self,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> etcd_config.EtcdClientConfig:
        """An ``EtcdClientConfig`` naming every member (client TLS files are the caller's)."""
        return etcd_config.EtcdClientConfig.from_endpoints(
            self.endpoints, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
            username=username, password=password,
        )

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Spawn every member, then wait until all are healthy (and so a leader exists)."""
        for member in self.members:
            member.spawn()
        for member in self.members:
            member.wait_healthy()

    def leader(self) -> etcd_server.EtcdServer | None:
        """The member that is raft leader now, or None (during an election)."""
        for member in self.members:
            if member.running and member.is_leader():
                return member
        return None

    def wait_leader(self, timeout: float = 10.0) -> etcd_server.EtcdServer:
        """Block until a running member is leader; ``KVStoreError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.leader()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise errors.KVStoreError(f"no etcd leader after {timeout}s")
            time.sleep(0.02)

    def kill(self, member: etcd_server.EtcdServer) -> None:
        """SIGKILL one member; its data stays for ``restart``."""
        member.kill()

    def restart(self, member: etcd_server.EtcdServer) -> None:
        """Start a killed or stopped member again on its data and ports; wait until healthy."""
        member.restart()

    def cpu_seconds(self) -> float:
        """CPU seconds used by the running members' processes, summed."""
        return sum(m.cpu_seconds() for m in self.members)

    def cleanup(self) -> None:
        """Kill every member and remove ``work_dir`` if this object created it."""
        for member in self.members:
            member.kill()
        if self._owns_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def stop(self) -> None:
        """Kill every member (the data stays for ``restart``)."""
        for member in self.members:
            member.kill()

    def close(self) -> None:
        """What leaving ``with``/``async with`` does: ``cleanup()``."""
        self.cleanup()

    # -- asyncio twins (astart, astop, with and async with: BlockingService) ----

    async def await_leader(self) -> etcd_server.EtcdServer:
        """``wait_leader()`` (10 s) without blocking the event loop."""
        return await asyncio.to_thread(self.wait_leader)

    async def arestart(self, member: etcd_server.EtcdServer) -> None:
        """``restart(member)`` without blocking the event loop."""
        await asyncio.to_thread(self.restart, member)

    def __repr__(self) -> str:
        running = sum(m.running for m in self.members)
        return f"EtcdCluster({len(self.members)} members, {running} running, {self.work_dir})"
