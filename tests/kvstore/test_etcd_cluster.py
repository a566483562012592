"""The kvstore on a real 3-member etcd cluster with TLS client certificates.

Three ``etcd`` processes (``EtcdCluster``) on loopback serve their client ports with
certificates generated here and require client certificates. Collaborators (each an
``EtcdBackend`` naming every member, a ``WorkqueueSyncStore`` with a synced canary,
and a ``RestartableWatchStore`` on the shared prefixes) write under load while the
leader is killed (-9) and restarted, and while one member is stopped for longer than
the lease TTL. Afterwards every view equals etcd's, no acknowledged write is lost,
and each watcher saw every value of every key exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aetcd
import pytest

from kubemirror import errors
from kubemirror.kvstore import (
    etcd,
    etcd_client,
    etcd_cluster,
    etcd_config,
    etcd_server,
    key,
    sync_store,
    watch_store,
)
from tests.certs import Pki, make_pki

from .conftest import _require_etcd, eventually

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

LOAD, NODES = "load", "nodes"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("etcd-pki"))


@pytest.fixture
def cluster(tmp_path: Path, pki: Pki) -> Iterator[etcd_cluster.EtcdCluster]:
    """A fresh 3-member cluster, TLS with client-certificate auth on the client ports."""
    binary = _require_etcd()
    tls = etcd_server.EtcdServerTLS(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key))
    made = etcd_cluster.EtcdCluster(
        3, tmp_path / "cluster", binary=binary, tls=tls,
        heartbeat_interval_ms=25, election_timeout_ms=250,
    )
    made.start()
    try:
        yield made
    finally:
        made.cleanup()


def client_config(
    cluster: etcd_cluster.EtcdCluster, pki: Pki, members: list[etcd_server.EtcdServer] | None = None
) -> etcd_config.EtcdClientConfig:
    return etcd_config.EtcdClientConfig.from_endpoints(
        [m.client_url for m in (members or cluster.members)],
        ca_file=str(pki.ca_cert), cert_file=str(pki.client_cert), key_file=str(pki.client_key),
    )


@contextlib.asynccontextmanager
async def raw_client(config: etcd_config.EtcdClientConfig) -> AsyncIterator[object]:
    """A plain aetcd client on the first endpoint (TLS as configured), for inspection."""
    client = etcd_client.open_client(
        aetcd, config, config.endpoints[0], etcd_client.channel_credentials(config),
        options={},
    )
    try:
        yield client
    finally:
        await client.close()


async def lease_of(config: etcd_config.EtcdClientConfig, path: str) -> int | None:
    """The lease id etcd has for ``path`` (0 without one), None if absent."""
    async with raw_client(config) as client:
        got = await client.get(path.encode())  # type: ignore[attr-defined]
        return None if got is None else int(got.lease)


@dataclass
class History:
    """An observer keeping, per key name, every value it was told, and the deletes."""

    values: dict[str, list[bytes]] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)

    def on_update(self, k: key.Key) -> None:
        self.values.setdefault(k.get_key_name(), []).append(k.marshal())

    def on_delete(self, k: key.NamedKey) -> None:
        self.deletes.append(k.get_key_name())


@dataclass
class Collaborator:
    """One agent: a backend session, a sync store with a canary, watches on both prefixes."""

    name: str
    backend: etcd.EtcdBackend
    nodes: sync_store.WorkqueueSyncStore
    load_history: History = field(default_factory=History)
    node_history: History = field(default_factory=History)
    canary_written: int = 0
    acked: dict[str, int] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, config: etcd_config.EtcdClientConfig, ttl: float) -> Collaborator:
        session = etcd.EtcdBackend(config, lease_ttl=ttl, name=name, retry_timeout=2.0,
                                  request_timeout=1.0)
        return cls(name, session, sync_store.WorkqueueSyncStore(name, session, NODES))

    async def start(self) -> None:
        self.load_watch = watch_store.RestartableWatchStore(
            self.name, key.kv_pair_creator, self.load_history)
        self.node_watch = watch_store.RestartableWatchStore(
            self.name, key.kv_pair_creator, self.node_history)
        loop = asyncio.get_running_loop()
        self.tasks += [
            loop.create_task(self.load_watch.watch(self.backend, LOAD)),
            loop.create_task(self.node_watch.watch(self.backend, NODES)),
        ]
        self.nodes.start()
        self.nodes.upsert_key(key.KVPair(self.name, b"node of " + self.name.encode()))
        self.nodes.synced(self._canary)

    def _canary(self) -> None:
        self.canary_written += 1

    async def write_load(self, keys: int, stop: asyncio.Event) -> None:
        """Keep writing 1, 2, 3... to each of ``keys`` keys, one write at a time.

        A write counts as acknowledged when ``update_if_different`` returned; an
        unavailable error repeats the same value (idempotent, and the compare makes
        a retry of an applied write a no-op, so no value is written twice).
        """
        loop = asyncio.get_running_loop()
        counters = dict.fromkeys(range(keys), 0)
        while not stop.is_set():
            for j in counters:
                counters[j] += 1
                path = f"{LOAD}/{self.name}-{j}"
                value = str(counters[j]).encode()
                while True:
                    try:
                        await self.backend.update_if_different(path, value, lease=True)
                        break
                    except errors.KVStoreUnavailableError:
                        continue
                self.acked[path] = counters[j]
                self.ack_times.append(loop.time())

    def load_view(self) -> dict[str, bytes]:
        return {f"{LOAD}/{n}": k.marshal() for n, k in self.load_watch.keys().items()}

    def node_view(self) -> dict[str, bytes]:
        return {f"{NODES}/{n}": k.marshal() for n, k in self.node_watch.keys().items()}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.nodes.stop()
        await self.backend.close()


async def etcd_state(config: etcd_config.EtcdClientConfig, prefix: str) -> dict[str, bytes]:
    async with etcd.EtcdBackend(config, name="inspector") as inspector:
        return await inspector.list_prefix(prefix + "/")


async def started(collaborators: list[Collaborator]) -> None:
    for c in collaborators:
        await c.start()
    for c in collaborators:
        await eventually(lambda c=c: c.load_watch.synced and c.node_watch.synced  # type: ignore[misc]
                         and c.canary_written == 1, within=30, message=c.name)


def longest_gap(times: list[float], start: float) -> float:
    """The longest time without an acknowledged write, from ``start`` on."""
    later = sorted(t for t in times if t >= start)
    points = [start, *later]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


def assert_every_value_seen_once_in_order(c: Collaborator, final: dict[str, bytes]) -> None:
    for path, value in final.items():
        name, last = path[len(LOAD) + 1:], int(value)
        seen = [int(v) for v in c.load_history.values.get(name, [])]
        assert seen == list(range(1, last + 1)), f"{c.name} saw {name}: {seen[-10:]}.. of {last}"


async def test_tls_requires_a_client_certificate_signed_by_the_ca(
    cluster: etcd_cluster.EtcdCluster, pki: Pki, tmp_path: Path
) -> None:
    good = client_config(cluster, pki)
    async with etcd.EtcdBackend(good) as session:
        await session.update("tls/probe", b"1")
        assert await session.get("tls/probe") == b"1"
    no_cert = etcd_config.EtcdClientConfig.from_endpoints(cluster.endpoints,
                                                          ca_file=str(pki.ca_cert))
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    foreign = etcd_config.EtcdClientConfig.from_endpoints(
        cluster.endpoints, ca_file=str(pki.ca_cert), cert_file=str(other.client_cert),
        key_file=str(other.client_key),
    )
    for config in (no_cert, foreign):
        async with etcd.EtcdBackend(config, retry_timeout=0.5, request_timeout=1.0) as session:
            with pytest.raises(errors.KVStoreError):
                await session.get("tls/probe")


async def test_leader_killed_under_write_load_loses_nothing(
    cluster: etcd_cluster.EtcdCluster, pki: Pki
) -> None:
    config = client_config(cluster, pki)
    collaborators = [Collaborator.create(f"c{i}", config, ttl=5.0) for i in range(4)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    writers: list[asyncio.Task[None]] = []
    try:
        await started(collaborators)
        leader = await cluster.await_leader()
        # Sessions start on a random member: make sure one of them is on the leader, so
        # the kill forces a failover (with 4 sessions on 3 members, 1 run in 5 has none).
        for _ in range(30):
            if any(c.backend.endpoint == leader.endpoint for c in collaborators):
                break
            await collaborators[0].close()
            collaborators[0] = Collaborator.create("c0", config, ttl=5.0)
            await started(collaborators[:1])
        on_leader = [c for c in collaborators if c.backend.endpoint == leader.endpoint]
        assert on_leader, "no session started on the leader in 30 tries"
        writers = [loop.create_task(c.write_load(3, stop)) for c in collaborators]

        def acked() -> int:
            return sum(len(c.ack_times) for c in collaborators)

        await eventually(lambda: acked() >= 200, within=30)
        assert await cluster.await_leader() is leader, "leadership moved before the kill"
        killed_at, acked_before = loop.time(), acked()
        cluster.kill(leader)
        await eventually(lambda: acked() >= acked_before + 200, within=30)
        new_leader = await cluster.await_leader()
        assert new_leader is not leader
        await cluster.arestart(leader)
        restarted = acked()
        await eventually(lambda: acked() >= restarted + 200, within=30)
        stop.set()
        await asyncio.gather(*writers)
        stopped_at = loop.time()

        expected = {path: str(value).encode() for c in collaborators
                    for path, value in c.acked.items()}
        assert await etcd_state(config, LOAD) == expected  # no acknowledged write lost
        for c in collaborators:
            await eventually(lambda c=c: c.load_view() == expected, within=30,  # type: ignore[misc]
                             message=c.name)
        converged = loop.time() - stopped_at
        for c in collaborators:
            assert_every_value_seen_once_in_order(c, expected)
            assert c.canary_written == 1
            assert c.node_history.deletes == []
        nodes = await etcd_state(config, NODES)
        assert all(c.node_view() == nodes for c in collaborators)
        for c in collaborators:
            assert await lease_of(config, c.nodes.synced_key) == c.backend.lease_id
        assert all(c.backend.failovers >= 1 for c in on_leader)  # they moved to a live member
        outage = longest_gap([t for c in collaborators for t in c.ack_times], killed_at)
        print(
            f"\nleader kill: {acked()} acked writes by {len(collaborators)} collaborators, "
            f"longest write outage {outage:.3f}s, views converged {converged:.3f}s after the "
            f"last write, lost=0, failovers={[c.backend.failovers for c in collaborators]}"
        )
    finally:
        stop.set()
        for c in collaborators:
            await c.close()


@pytest.mark.parametrize("how", ["killed", "frozen"])
async def test_member_stopped_longer_than_the_lease_ttl(
    cluster: etcd_cluster.EtcdCluster, pki: Pki, how: str
) -> None:
    """Sessions naming every member keep their lease through the partition; a session
    pinned to the stopped member finds its lease expired on return, and its sync store
    writes its keys and its synced canary again under a new lease (as Cilium's does:
    the canary comes back, the synced callbacks do not run twice). The member is either
    killed (connections refused) or frozen with SIGSTOP (connections open, silent)."""
    config = client_config(cluster, pki)
    ttl = 3.0
    roaming = [Collaborator.create(f"c{i}", config, ttl=ttl) for i in range(3)]
    victim = next(m for m in cluster.members if m.endpoint == roaming[0].backend.endpoint)
    pinned = Collaborator.create("pinned", client_config(cluster, pki, [victim]), ttl=ttl)
    everyone = [*roaming, pinned]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    writers: list[asyncio.Task[None]] = []
    try:
        await started(everyone)
        leases = {c.name: c.backend.lease_id for c in everyone}
        writers = [loop.create_task(c.write_load(2, stop)) for c in roaming]
        await eventually(lambda: all(len(c.ack_times) > 20 for c in roaming), within=30)

        stopped_at = loop.time()
        if how == "killed":
            victim.kill()
        else:
            victim.pause()
        acked_during = sum(len(c.ack_times) for c in roaming)
        # The pinned session's lease expires in the cluster: the others see its keys go.
        await eventually(lambda: all("pinned" in c.node_history.deletes for c in roaming),
                         within=ttl * 3 + 10)
        await eventually(lambda: sum(len(c.ack_times) for c in roaming) > acked_during + 50,
                         within=30)
        acked_during = sum(len(c.ack_times) for c in roaming) - acked_during
        # The lease ran from the last keep-alive before the stop: stay down a full TTL.
        await asyncio.sleep(max(0.0, stopped_at + ttl + 0.2 - loop.time()))
        down_for = loop.time() - stopped_at
        assert down_for > ttl
        if how == "killed":
            await cluster.arestart(victim)
        else:
            victim.resume()
        back_at = loop.time()

        async def pinned_back_under_a_new_lease() -> bool:
            current = pinned.backend.lease_id
            if current in (None, leases["pinned"]):
                return False
            paths = (pinned.nodes.synced_key, pinned.nodes.key_path("pinned"))
            return [await lease_of(config, path) for path in paths] == [current, current]

        await eventually(pinned_back_under_a_new_lease, within=30)
        assert pinned.canary_written == 1  # synced callbacks run once; the canary is rewritten
        stop.set()
        await asyncio.gather(*writers)
        expected_nodes = await etcd_state(config, NODES)
        assert set(expected_nodes) == {f"{NODES}/{c.name}" for c in everyone}
        for c in everyone:
            await eventually(lambda c=c: c.node_view() == expected_nodes, within=30,  # type: ignore[misc]
                             message=c.name)
        converged = loop.time() - back_at
        expected_load = {path: str(v).encode() for c in roaming for path, v in c.acked.items()}
        assert await etcd_state(config, LOAD) == expected_load
        for c in everyone:
            await eventually(lambda c=c: c.load_view() == expected_load, within=30,  # type: ignore[misc]
                             message=c.name)
            assert_every_value_seen_once_in_order(c, expected_load)
        for c in roaming:
            assert c.backend.lease_id == leases[c.name]  # kept alive through another member
            assert c.canary_written == 1
            assert all(name != c.name for d in everyone for name in d.node_history.deletes)
        assert roaming[0].backend.failovers >= 1
        for c in everyone:
            assert await lease_of(config, c.nodes.synced_key) == c.backend.lease_id
            assert await lease_of(config, c.nodes.key_path(c.name)) == c.backend.lease_id
        print(
            f"\npartition ({how}): member down {down_for:.2f}s (lease TTL {ttl:.0f}s), "
            f"{acked_during} writes acked meanwhile, pinned session re-created its lease and "
            f"keys, views converged {converged:.3f}s after the member returned, lost=0"
        )
    finally:
        stop.set()
        for c in everyone:
            await c.close()


def saturate_loop(turn: float, total: float, stall: float) -> asyncio.Future[None]:
    """Make every event-loop turn take ``turn`` s for ``total`` s, one of them ``stall``
    s long halfway (as a long GC pause or a burst of decoding does); the returned
    future resolves when done. The loop is really blocked: no fake clock."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    end = time.monotonic() + total
    stall_at = time.monotonic() + total / 2

    def one_turn() -> None:
        nonlocal stall_at
        if time.monotonic() >= stall_at:
            time.sleep(stall)
            stall_at = float("inf")
        else:
            time.sleep(turn)
        if time.monotonic() < end:
            loop.call_soon(one_turn)
        else:
            done.set_result(None)

    loop.call_soon(one_turn)
    return done


async def session_off_the_leader(
    cluster: etcd_cluster.EtcdCluster, config: etcd_config.EtcdClientConfig, **options: float
) -> tuple[etcd.EtcdBackend, etcd_server.EtcdServer]:
    """A new session whose first member (chosen at random, not yet dialled) is a follower."""
    leader = await cluster.await_leader()
    for attempt in range(50):
        session = etcd.EtcdBackend(config, name=f"s{attempt}", **options)
        if session.endpoint != leader.endpoint:
            return session, next(m for m in cluster.members if m.endpoint == session.endpoint)
        await session.close()
    raise AssertionError("50 sessions in a row started on the leader")


async def test_a_busy_event_loop_causes_no_failover_a_killed_member_does(
    cluster: etcd_cluster.EtcdCluster, pki: Pki
) -> None:
    """Requests (writes, lease keep-alives every second, a watch opened meanwhile) whose
    answers wait behind a saturated event loop (0.2 s turns, one 1.5 s stall; the
    request timeout is 0.5 s) are not failures of the member; killing the member is."""
    config = client_config(cluster, pki)
    session, member = await session_off_the_leader(
        cluster, config, lease_ttl=3.0, request_timeout=0.5, retry_timeout=10.0)
    loop = asyncio.get_running_loop()
    seen: list[dict[str, bytes]] = [{}, {}]

    async def follow(view: dict[str, bytes]) -> None:
        async for event in session.list_and_watch("busy/"):
            if event.key:
                view[event.key] = event.value

    tasks = [loop.create_task(follow(seen[0]))]
    try:
        await session.update("busy/k0", b"0", lease=True)
        await eventually(lambda: "busy/k0" in seen[0])
        lease_id = session.lease_id
        busy = saturate_loop(turn=0.2, total=5.0, stall=1.5)
        tasks.append(loop.create_task(follow(seen[1])))  # a watch created on the busy loop
        written = 1
        while not busy.done():
            await session.update(f"busy/k{written}", str(written).encode(), lease=True)
            written += 1
        assert written > 2
        assert session.failovers == 0
        assert session.lease_id == lease_id  # kept alive throughout
        expected = {f"busy/k{i}": str(i).encode() for i in range(written)}
        for view in seen:
            await eventually(lambda view=view: view == expected,  # type: ignore[misc]
                             message=lambda view=view: f"{view} != {expected}")  # type: ignore[misc]

        cluster.kill(member)
        await session.update("busy/after-kill", b"x", lease=True)
        assert session.failovers >= 1
        assert session.endpoint != member.endpoint
        for view in seen:  # both watches resumed on another member
            await eventually(lambda view=view: "busy/after-kill" in view)  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()


async def test_a_member_slow_to_accept_a_new_connection_causes_no_failover(
    cluster: etcd_cluster.EtcdCluster, pki: Pki
) -> None:
    """A member that takes 0.5 s to answer a new connection's handshake (frozen with
    SIGSTOP for that long: a real etcd, briefly late) is waited for within the request
    timeout, as hundreds of sessions opened at once on a busy machine need; before,
    gRPC gave up each connection attempt after 100 ms and the session failed over."""
    config = client_config(cluster, pki)
    session, member = await session_off_the_leader(
        cluster, config, request_timeout=5.0, retry_timeout=10.0)
    loop = asyncio.get_running_loop()
    try:
        member.pause()
        resumed = loop.call_later(0.5, member.resume)
        started = loop.time()
        await session.update("slow/k", b"v")
        assert loop.time() - started >= 0.45  # it did wait for the frozen member
        assert session.failovers == 0
        assert session.endpoint == member.endpoint
    finally:
        resumed.cancel()
        member.resume()
        await session.close()


def test_cluster_needs_a_member() -> None:
    with pytest.raises(errors.ConfigError, match="size"):
        etcd_cluster.EtcdCluster(0, binary="/bin/true")

