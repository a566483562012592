"""One Watcher API over Kubernetes and etcd: the same ``WatcherConfig``, only the source differs.

One contract, run over every source: ``pods`` of a genuine kube-apiserver (its
etcd compacted by the test), ``agents/`` on a real etcd v3.7 (``EtcdBackend``) and
``agents/`` on the embedded memory kvstore (``MemoryBackend``). The same logical
sequence of creates, updates and deletes (including objects moving into and out
of the label selection and between index buckets, and changes made while the
mirror's watch is lost and the history it would resume from is compacted away)
must give the same store contents, the same index lookups and the same
``ChangeStats`` in every phase (initial sync, live, after the lost watch). The
expected values come from a model of the sequence, not from any source.

Fault injection, said plainly: the Kubernetes mirror reads through
``GatedListWatch`` (the real ``ListWatch``, whose watches the server ends after
1 s, held back while the gate is closed) and the etcd mirror through a
``TcpProxy`` that can cut its connections; a healthy server never loses a
client's watch on demand. The memory keyspace is in-process: its subscription
cannot be lost and it keeps no history to compact, so ``LosableMemoryBackend``
breaks its stream instead, and the ``KVReflector`` lists again.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from kubemirror import errors
from kubemirror.client import KubeClient, ListOptions, transport
from kubemirror.envtest import Assets, EnvTest
from kubemirror.kvstore import backend as kv_backend
from kubemirror.kvstore import etcd, etcd_server, memory
from kubemirror.listwatch import EventStream, ListPage, ListWatch
from kubemirror.reflector import Reflector
from kubemirror.stores import IndexedStore
from kubemirror.types import GroupVersionResource
from kubemirror.watcher import ChangeStats, KVReflector, KVSource, Watcher, WatcherConfig
from tests.kvstore.conftest import _require_etcd
from tests.polling import eventually
from tests.real_apiserver.test_reflector import compact_etcd
from tests.tcpproxy import TcpProxy

PODS = GroupVersionResource("", "v1", "pods")
SELECTOR = "app!=db"
INDEX_BY = ["metadata.namespace", "metadata.labels['app']"]

Labels = dict[str, str]


# -- the model -------------------------------------------------------------------------------


def visible(objects: dict[str, Labels]) -> dict[str, Labels]:
    """What a mirror selecting ``SELECTOR`` holds of ``objects``."""
    return {name: labels for name, labels in objects.items() if labels.get("app") != "db"}


def seen_stats(objects: dict[str, Labels], steps: list[Step]) -> ChangeStats:
    """What a mirror that sees every step of ``steps`` reports.

    A delete is two writes, as kube-apiserver does it for a pod (also with grace
    period 0) and writes it to its own etcd: ``metadata.deletionTimestamp`` is set
    (modified), then the object is removed (deleted).
    """
    stats = ChangeStats()
    state = dict(objects)
    for op, name, labels in steps:
        was = name in visible(state)
        if op == "delete":
            if was:
                stats += ChangeStats(modified=1, deleted=1)
            del state[name]
            continue
        assert labels is not None
        state[name] = labels
        now = name in visible(state)
        stats += ChangeStats(created=int(now and not was), modified=int(now and was),
                             deleted=int(was and not now))
    return stats


def relisted_stats(before: dict[str, Labels], after: dict[str, Labels]) -> ChangeStats:
    """What a mirror reports when a relist finds ``after`` where it held ``before``."""
    old, new = visible(before), visible(after)
    return ChangeStats(
        created=len(new.keys() - old.keys()),
        modified=sum(1 for k in new.keys() & old.keys() if new[k] != old[k]),
        deleted=len(old.keys() - new.keys()),
    )


Step = tuple[str, str, Labels | None]
"""``("put", name, labels)`` (create or replace) or ``("delete", name, None)``."""

BEFORE: list[Step] = [
    ("put", "a", {"app": "web"}),
    ("put", "b", {"app": "web"}),
    ("put", "c", {"app": "api"}),
    ("put", "x", {"app": "db"}),  # not selected
]
LIVE: list[Step] = [
    ("put", "d", {"app": "web"}),
    ("put", "a", {"app": "api"}),  # moves between index buckets
    ("delete", "b", None),
    ("put", "x", {"app": "web"}),  # enters the selection: created
    ("put", "c", {"app": "db"}),  # leaves the selection: deleted
]
WHILE_AWAY: list[Step] = [
    ("delete", "d", None),  # a delete the watch never sees
    ("put", "a", {"app": "web", "tier": "fe"}),
    ("put", "e", {"app": "web"}),
    ("put", "x", {"app": "db"}),  # leaves the selection unseen
]


def apply(objects: dict[str, Labels], steps: list[Step]) -> dict[str, Labels]:
    after = dict(objects)
    for op, name, labels in steps:
        if op == "put":
            assert labels is not None
            after[name] = labels
        else:
            del after[name]
    return after


def pod(name: str, labels: Labels) -> dict[str, Any]:
    """The object written: a Pod to the API server, its JSON to the kvstore."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels),
                     "managedFields": [{"manager": "contract-test", "operation": "Update"}]},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }


# -- the sources -----------------------------------------------------------------------------


class Side(abc.ABC):
    """One source under the contract: writes as a third party, and loses the mirror's watch."""

    namespace: str

    @abc.abstractmethod
    def watcher(self, config: WatcherConfig) -> Watcher:
        """A watcher of ``config`` with only the source filled in."""

    @abc.abstractmethod
    async def put(self, name: str, labels: Labels) -> None: ...

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Mark ``name`` deleted (``deletionTimestamp``), then remove it."""

    @abc.abstractmethod
    async def lose_watch(self) -> None:
        """Return once the mirror no longer receives changes."""

    @abc.abstractmethod
    async def compact_and_reconnect(self) -> None:
        """Compact the history the mirror would resume from, then let it reconnect."""

    @abc.abstractmethod
    def check_relisted(self, w: Watcher, caplog: pytest.LogCaptureFixture) -> None:
        """Assert the missed changes came from a relist (where the source has one)."""

    async def run(self, steps: list[Step]) -> None:
        for op, name, labels in steps:
            if op == "put":
                assert labels is not None
                await self.put(name, labels)
            else:
                await self.delete(name)


class GatedListWatch:
    """FAULT INJECTION over the real ``ListWatch``: the server ends each watch after 1 s
    (``timeoutSeconds=1``), and while ``gate`` is clear the next watch waits: the
    mirror is away for as long as the test needs."""

    def __init__(self, lw: ListWatch) -> None:
        self.lw = lw
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]:
        return await self.lw.list(opts)

    async def watch(self, opts: ListOptions) -> EventStream:
        if not self.gate.is_set():
            self.waiting += 1
            await self.gate.wait()
        return await self.lw.watch(dataclasses.replace(opts, timeout_seconds=1))


class KubeSide(Side):
    def __init__(self, env: EnvTest, client: KubeClient, namespace: str) -> None:
        self.env = env
        self.client = client
        self.namespace = namespace
        self.lw = GatedListWatch(ListWatch(client, PODS, namespace, label_selector=SELECTOR))

    def watcher(self, config: WatcherConfig) -> Watcher:
        return Watcher(dataclasses.replace(config, gvr=PODS), self.lw)

    async def put(self, name: str, labels: Labels) -> None:
        try:
            current = await self.client.get(PODS, name, self.namespace)
        except errors.NotFoundError:
            await self.client.create(PODS, pod(name, labels), self.namespace)
            return
        updated = dict(current)
        updated["metadata"] = {**current["metadata"], "labels": dict(labels)}
        await self.client.replace(PODS, updated, self.namespace)

    async def delete(self, name: str) -> None:
        # Grace period 0: an unscheduled pod is gone at once (the default grace period
        # first sets deletionTimestamp, a MODIFIED event no kvstore delete has).
        await self.client.request("DELETE", transport.resource_path(PODS, self.namespace, name),
                                  params={"gracePeriodSeconds": "0"})

    async def lose_watch(self) -> None:
        self.lw.gate.clear()
        await eventually(lambda: self.lw.waiting == 1, within=15, what="watch held back")

    async def compact_and_reconnect(self) -> None:
        await compact_etcd(self.env)
        self.lw.gate.set()

    def check_relisted(self, w: Watcher, caplog: pytest.LogCaptureFixture) -> None:
        assert isinstance(w.reflector, Reflector)
        assert w.reflector.stats.relists == 1  # a real 410 after the compaction


class KVSide(Side):
    def __init__(self, writer: kv_backend.Backend, reader: kv_backend.Backend) -> None:
        self.writer = writer
        self.reader = reader
        self.namespace = f"t-{uuid.uuid4().hex[:8]}"
        self.written: dict[str, dict[str, Any]] = {}

    def watcher(self, config: WatcherConfig) -> Watcher:
        return Watcher(dataclasses.replace(config, source=KVSource("agents/")), self.reader)

    def key(self, name: str) -> str:
        return f"agents/{self.namespace}/{name}"

    async def put(self, name: str, labels: Labels) -> None:
        self.written[name] = pod(name, labels)
        await self.writer.update(self.key(name), orjson.dumps(self.written[name]))

    async def delete(self, name: str) -> None:
        marked = self.written.pop(name)
        marked["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        await self.writer.update(self.key(name), orjson.dumps(marked))
        assert await self.writer.delete(self.key(name))


class LosableMemoryBackend(memory.MemoryBackend):
    """FAULT INJECTION: a ``MemoryBackend`` whose ``list_and_watch`` stream can be lost.

    The in-process subscription of the real one cannot be lost. After ``lose()``
    the stream delivers nothing more; after ``reconnect()`` it fails, as a broken
    connection would, so its consumer must list again.
    """

    def __init__(self, server: memory.MemoryKVServer) -> None:
        super().__init__(server)
        self.lost = False
        self.back = asyncio.Event()

    async def list_and_watch(self, prefix: str) -> AsyncGenerator[kv_backend.KVEvent, None]:
        inner = super().list_and_watch(prefix)
        try:
            async for event in inner:
                if self.lost:
                    await self.back.wait()
                    self.lost = False
                    raise ConnectionResetError("watch lost (fault injection)")
                yield event
        finally:
            await inner.aclose()


class MemorySide(KVSide):
    def __init__(self, writer: memory.MemoryBackend, reader: LosableMemoryBackend) -> None:
        super().__init__(writer, reader)
        self.losable = reader

    async def lose_watch(self) -> None:
        self.losable.lost = True

    async def compact_and_reconnect(self) -> None:
        self.losable.back.set()  # the keyspace keeps no history: nothing to compact

    def check_relisted(self, w: Watcher, caplog: pytest.LogCaptureFixture) -> None:
        assert isinstance(w.reflector, KVReflector)
        assert (w.reflector.stats.relists, w.reflector.stats.errors) == (1, 1)
        assert "watch lost (fault injection)" in caplog.text


class EtcdSide(KVSide):
    def __init__(self, server: etcd_server.EtcdServer, proxy: TcpProxy) -> None:
        super().__init__(etcd.EtcdBackend(server.endpoint), etcd.EtcdBackend(proxy.endpoint))
        self.server = server
        self.proxy = proxy

    async def lose_watch(self) -> None:
        self.proxy.cut()

    async def compact_and_reconnect(self) -> None:
        import aetcd

        async with aetcd.Client(host=self.server.host, port=self.server.client_port) as admin:
            head = await admin.get(f"agents/{self.namespace}/e".encode())
            await admin.compact(head.mod_revision, physical=True)
        self.proxy.restore()

    def check_relisted(self, w: Watcher, caplog: pytest.LogCaptureFixture) -> None:
        assert "compacted; relisting" in caplog.text  # EtcdBackend's relist, with its diff


@pytest.fixture(scope="module")
def uncached_env(envtest_assets: Assets) -> Iterator[EnvTest]:
    """A real server without watch cache, so compacting its etcd expires versions at once."""
    args = ("--watch-cache=false",
            "--feature-gates=APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false")
    with EnvTest(envtest_assets, apiserver_args=args) as env:
        yield env


@pytest.fixture(scope="module")
def contract_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[etcd_server.EtcdServer]:
    """A real etcd of this module's own (the test compacts it)."""
    binary = _require_etcd()
    server = etcd_server.EtcdServer(tmp_path_factory.mktemp("etcd-contract"), binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(
    params=[
        pytest.param("kube-apiserver", marks=pytest.mark.real_apiserver),
        pytest.param("etcd", marks=pytest.mark.etcd),
        "memory",
    ]
)
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    if request.param == "kube-apiserver":
        env: EnvTest = request.getfixturevalue("uncached_env")
        async with KubeClient(env.client_config) as client:
            namespace = f"t-{uuid.uuid4().hex[:8]}"
            await client.create(GroupVersionResource("", "v1", "namespaces"),
                                {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": namespace}})
            yield KubeSide(env, client, namespace)
    elif request.param == "etcd":
        server: etcd_server.EtcdServer = request.getfixturevalue("contract_etcd")
        async with TcpProxy(server.host, server.client_port) as proxy:
            etcd_side = EtcdSide(server, proxy)
            try:
                yield etcd_side
            finally:
                await etcd_side.reader.close()
                await etcd_side.writer.close()
    else:
        keyspace = memory.MemoryKVServer()
        async with memory.MemoryBackend(keyspace) as writer, \
                LosableMemoryBackend(keyspace) as reader:
            yield MemorySide(writer, reader)


# -- the contract ----------------------------------------------------------------------------


class Reports:
    """``on_change``/``on_sync_complete`` calls, by phase."""

    def __init__(self) -> None:
        self.phase = "sync"
        self.changes: dict[str, list[ChangeStats]] = {"sync": [], "live": [], "away": []}
        self.initial_counts: list[int] = []

    async def on_change(self, store: IndexedStore, stats: ChangeStats) -> None:
        self.changes[self.phase].append(stats)

    async def on_sync_complete(self, store: IndexedStore, count: int) -> None:
        self.initial_counts.append(count)
        self.phase = "live"

    def total(self, phase: str) -> ChangeStats:
        return sum(self.changes[phase], ChangeStats())


def contents(store: IndexedStore) -> dict[str, Labels]:
    """name -> labels of the stored objects (after checking what every object shares)."""
    held: dict[str, Labels] = {}
    for obj in store.list():
        meta = obj["metadata"]
        assert "managedFields" not in meta  # ignore_fields applies to every source
        assert meta["resourceVersion"]
        assert obj["spec"]["containers"][0]["image"] == "registry.example/app:1"
        held[meta["name"]] = dict(meta["labels"])
    return held


def check_store(w: Watcher, namespace: str, model: dict[str, Labels]) -> None:
    expected = visible(model)
    assert contents(w.store) == expected
    for app in ("web", "api", "db"):
        in_bucket = sorted(o["metadata"]["name"] for o in w.store.get(namespace, app))
        assert in_bucket == sorted(n for n, labels in expected.items() if labels["app"] == app)


async def reach(w: Watcher, phase: str, model: dict[str, Labels]) -> None:
    """Wait until the store holds (the selected part of) ``model``."""
    await eventually(lambda: contents(w.store) == visible(model), within=30,
                     what=f"store after {phase}: {contents(w.store)} vs {visible(model)}")


async def test_same_config_same_stats_and_store_over_every_source(
    side: Side, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubemirror")
    reports = Reports()
    config = WatcherConfig(
        namespace=side.namespace,
        label_selector=SELECTOR,
        index_by=INDEX_BY,
        ignore_fields=["metadata.managedFields"],
        debounce_interval=0.0,
        call_on_change_during_sync=True,
        on_change=reports.on_change,
        on_sync_complete=reports.on_sync_complete,
    )
    model = apply({}, BEFORE)
    await side.run(BEFORE)
    w = side.watcher(config)
    async with w:
        await asyncio.wait_for(w.wait_for_sync(), 30)
        check_store(w, side.namespace, model)
        assert reports.initial_counts == [len(visible(model))]
        assert reports.changes["sync"] == [
            dataclasses.replace(relisted_stats({}, model), is_initial_sync=True)
        ]

        live = seen_stats(model, LIVE)
        model = apply(model, LIVE)
        await side.run(LIVE)
        await reach(w, "live", model)
        await eventually(lambda: reports.total("live").total >= live.total, within=10,
                         what="live reports")
        check_store(w, side.namespace, model)

        await side.lose_watch()
        reports.phase = "away"
        before, model = model, apply(model, WHILE_AWAY)
        await side.run(WHILE_AWAY)
        await side.compact_and_reconnect()
        await reach(w, "away", model)
        away = relisted_stats(before, model)
        await eventually(lambda: reports.total("away").total >= away.total, within=10,
                         what="reports after the lost watch")
        check_store(w, side.namespace, model)
        side.check_relisted(w, caplog)
    assert reports.total("live") == live == ChangeStats(created=2, modified=2, deleted=2)
    assert reports.total("away") == away == ChangeStats(created=1, modified=1, deleted=2)
    assert reports.initial_counts == [3]
