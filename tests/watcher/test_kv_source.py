"""``KVSource``, ``KVLister`` and ``KVReflector``, and watchers configured with a ``KVSource``.

The key/value mapping is tested as pure functions (with a hypothesis round trip);
everything else runs on the embedded memory kvstore and on a real etcd (the
``backend`` fixture), except where a test says it needs only one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import hypothesis.strategies as st
import orjson
import pytest
from hypothesis import given, settings

from kubemirror import errors, keys
from kubemirror.client import ListOptions
from kubemirror.kvstore import backend as kv_backend
from kubemirror.kvstore import etcd, etcd_server, memory
from kubemirror.stores import IndexedStore
from kubemirror.types import GroupVersionResource, Obj
from kubemirror.watcher import (
    ChangeStats,
    KVLister,
    KVReflector,
    KVSource,
    SingleWatcher,
    SingleWatcherConfig,
    StoreType,
    ValueFormat,
    Watcher,
    WatcherConfig,
)
from tests.kvstore.conftest import _require_etcd
from tests.polling import eventually

PODS = GroupVersionResource("", "v1", "pods")


def noop(store: IndexedStore, stats: ChangeStats) -> None:
    """An on_change that does nothing."""


# -- the key/value mapping (pure) ------------------------------------------------------------


def test_key_parts_are_namespace_and_name_and_the_key_decides() -> None:
    source = KVSource("agents")
    value = orjson.dumps({"metadata": {"name": "other", "namespace": "elsewhere",
                                       "labels": {"app": "web"}}, "ip": "10.0.0.1"})
    obj = source.to_object("agents/eu/zone-a/node-1", value, 42)
    assert obj == {"metadata": {"name": "node-1", "namespace": "eu/zone-a",
                                "labels": {"app": "web"}, "resourceVersion": "42"},
                   "ip": "10.0.0.1"}
    top = source.to_object("agents/node-2", value, 7)["metadata"]
    assert (top["name"], "namespace" in top) == ("node-2", False)  # no namespace part
    assert source.to_object("agents/a/n", b"[1, 2]", 3) == {
        "metadata": {"name": "n", "namespace": "a", "resourceVersion": "3"}, "value": [1, 2]}


def test_raw_values_are_kept_as_bytes() -> None:
    source = KVSource("/cilium/state/ip/v1/", ValueFormat.RAW)
    assert source.root == "/cilium/state/ip/v1/"
    obj = source.to_object("/cilium/state/ip/v1/default/10.0.0.5", b"\xff\x00", 9)
    assert obj == {"metadata": {"name": "10.0.0.5", "namespace": "default",
                                "resourceVersion": "9"}, "value": b"\xff\x00"}


def test_a_value_that_is_not_json_names_its_key_and_revision() -> None:
    with pytest.raises(errors.MalformedValueError) as info:
        KVSource("agents").to_object("agents/a/b", b"{not json", 5)
    assert (info.value.key, info.value.revision) == ("agents/a/b", 5)
    assert "not JSON" in info.value.reason
    assert "'agents/a/b' at revision 5" in str(info.value)


@pytest.mark.parametrize(
    ("prefix", "root"),
    [("agents", "agents/"), ("agents/", "agents/"), ("/registry/pods", "/registry/pods/"),
     ("", ""), ("/", "/")],
    ids=["bare", "slash", "leading-slash", "everything", "root"],
)
def test_the_prefix_implies_a_trailing_slash(prefix: str, root: str) -> None:
    source = KVSource(prefix)
    assert source.root == root
    assert source.key_prefix("ns") == f"{root}ns/"
    assert source.key_of("ns", "n") == f"{root}ns/n"


_part = st.text(st.characters(exclude_characters="/", exclude_categories=["Cs"]),
                min_size=1, max_size=8)


@given(prefix=st.lists(_part, max_size=3).map("/".join),
       namespace=st.lists(_part, max_size=3).map("/".join), name=_part)
def test_key_of_and_split_key_round_trip(prefix: str, namespace: str, name: str) -> None:
    source = KVSource(prefix)
    key = source.key_of(namespace, name)
    assert key.startswith(source.root)
    assert source.split_key(key) == (namespace, name)
    tombstone = source.tombstone(key)
    assert tombstone.key == (f"{namespace}/{name}" if namespace else name)


# -- configuration ---------------------------------------------------------------------------


def kv_config(**kw: Any) -> WatcherConfig:
    base: dict[str, Any] = {"source": KVSource("agents"), "index_by": ["metadata.name"],
                            "on_change": noop}
    base.update(kw)
    return WatcherConfig(**base)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"source": "agents/"}, "source"),
        ({"source": KVSource(3)}, "source.prefix"),  # type: ignore[arg-type]
        ({"source": KVSource("a//b")}, "source.prefix"),
        ({"source": KVSource("a", "json")}, "source.values"),  # type: ignore[arg-type]
        ({"gvr": PODS}, "gvr"),
        ({"namespace": "/eu"}, "namespace"),
        ({"namespace": "eu//a"}, "namespace"),
        ({"source": None}, "gvr"),  # the Kubernetes source needs its resource
    ],
    ids=["not-a-source", "prefix-type", "empty-part", "values-type", "gvr-too",
         "namespace-edge-slash", "namespace-empty-part", "no-source-no-gvr"],
)
def test_validate_names_the_field(changes: dict[str, Any], field: str) -> None:
    config = kv_config(**changes)
    config.set_defaults()
    with pytest.raises(errors.ConfigError) as info:
        config.validate()
    assert info.value.field == field


def test_a_kv_namespace_may_have_several_parts() -> None:
    config = kv_config(namespace="eu/zone-a")
    config.set_defaults()
    config.validate()
    single = SingleWatcherConfig(source=KVSource("agents"), name="node-1", on_change=print)
    single.validate()  # no namespace: a key right under the prefix


async def test_each_source_is_read_through_its_own_kind_of_connection() -> None:
    async with memory.MemoryBackend() as backend:
        with pytest.raises(errors.ConfigError, match=r"WatcherConfig\.source") as info:
            Watcher(WatcherConfig(gvr=PODS, index_by=["metadata.name"], on_change=noop), backend)
        assert info.value.field == "source"
        lister = KVLister(backend, KVSource("x"))
        with pytest.raises(errors.ConfigError, match="kvstore Backend") as info:
            Watcher(kv_config(), lister)  # type: ignore[arg-type]
        assert info.value.field == "source"
        with pytest.raises(errors.ConfigError, match="kvstore Backend"):
            SingleWatcher(SingleWatcherConfig(source=KVSource("x"), name="n", on_change=print),
                          lister)  # type: ignore[arg-type]


# -- against the memory kvstore and a real etcd ----------------------------------------------


@pytest.fixture(scope="module")
def module_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[etcd_server.EtcdServer]:
    binary = _require_etcd()
    server = etcd_server.EtcdServer(tmp_path_factory.mktemp("etcd-kv-source"), binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[kv_backend.Backend]:
    """A backend session (each test writes under its own ``prefix``)."""
    made: kv_backend.Backend
    if request.param == "memory":
        made = memory.MemoryBackend()
    else:
        server: etcd_server.EtcdServer = request.getfixturevalue("module_etcd")
        made = etcd.EtcdBackend(server.endpoint)
    async with made:
        yield made


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def agent(labels: dict[str, str] | None = None, **fields: Any) -> bytes:
    return orjson.dumps({"metadata": {"labels": labels or {}}, **fields})


async def test_lister_lists_the_current_truth_with_its_revision(
    backend: kv_backend.Backend, prefix: str
) -> None:
    await backend.update(f"{prefix}/eu/a", agent({"app": "web"}))
    await backend.update(f"{prefix}/eu/b", agent({"app": "db"}))
    await backend.update(f"{prefix}/us/c", agent({"app": "web"}))
    await backend.update(f"{prefix}/eu/broken", b"{")
    lister = KVLister(backend, KVSource(prefix), "eu")
    listed = await lister.list(ListOptions())
    assert [o["metadata"]["name"] for o in listed.items] == ["a", "b"]  # broken: logged, left out
    revision = int(listed.resource_version)
    assert revision >= max(int(o["metadata"]["resourceVersion"]) for o in listed.items)
    selected = await lister.list(ListOptions(label_selector="app=web"))
    assert [o["metadata"]["name"] for o in selected.items] == ["a"]
    by_field = await lister.list(ListOptions(field_selector="metadata.name=b"))
    assert [o["metadata"]["name"] for o in by_field.items] == ["b"]
    exact = await lister.list(ListOptions(resource_version=str(revision),
                                          resource_version_match="Exact"))
    assert exact.resource_version == str(revision)
    await backend.update(f"{prefix}/eu/a", agent({"app": "api"}))
    with pytest.raises(errors.GoneError, match="keeps no history"):
        await lister.list(ListOptions(resource_version=str(revision),
                                      resource_version_match="Exact"))
    with pytest.raises(errors.BadRequestError, match="integer"):
        await lister.list(ListOptions(resource_version="a.b.c"))


class Calls:
    def __init__(self) -> None:
        self.changes: list[ChangeStats] = []
        self.synced: list[int] = []

    async def on_change(self, store: IndexedStore, stats: ChangeStats) -> None:
        self.changes.append(stats)

    async def on_sync_complete(self, store: IndexedStore, count: int) -> None:
        self.synced.append(count)

    def total(self) -> ChangeStats:
        return sum(self.changes, ChangeStats())


def names(objs: Any) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


async def test_watcher_indexes_json_values_and_keeps_a_bad_value_out(
    backend: kv_backend.Backend, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await backend.update(f"{prefix}/eu/a", agent({"app": "web"}, node="n1"))
    await backend.update(f"{prefix}/us/b", agent({"app": "web"}, node="n2"))
    calls = Calls()
    config = WatcherConfig(source=KVSource(prefix), index_by=["node"], debounce_interval=0,
                           on_change=calls.on_change, on_sync_complete=calls.on_sync_complete)
    async with Watcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert calls.synced == [2]
        assert names(w.store.get("n1")) == ["a"]
        await backend.update(f"{prefix}/eu/a", agent({"app": "web"}, node="n2"))
        await backend.update(f"{prefix}/eu/a", b"not json")  # logged; the last good value stays
        await backend.update(f"{prefix}/eu/c", agent(node="n1"))
        await eventually(lambda: names(w.store.get("n1")) == ["c"])
        assert names(w.store.get("n2")) == ["a", "b"]
        assert isinstance(w.reflector, KVReflector)
        assert w.reflector.stats.malformed_events == 1
        assert int(w.reflector.last_sync_resource_version) >= int(
            w.store.get("n1")[0]["metadata"]["resourceVersion"])
        await eventually(lambda: calls.total().total == 2)
    assert calls.total() == ChangeStats(created=1, modified=1)
    assert f"value of '{prefix}/eu/a' at revision" in caplog.text


async def test_raw_values_namespace_and_label_selection(
    backend: kv_backend.Backend, prefix: str
) -> None:
    await backend.update(f"{prefix}/eu/a", b"\x00\x01")
    await backend.update(f"{prefix}/us/b", b"2")
    config = WatcherConfig(source=KVSource(prefix, ValueFormat.RAW), namespace="eu",
                           index_by=["metadata.name"], on_change=noop)
    async with Watcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert [o["value"] for o in w.store.list()] == [b"\x00\x01"]  # only eu/
    selected = WatcherConfig(source=KVSource(prefix), label_selector="app=web",
                             index_by=["metadata.namespace"], debounce_interval=0,
                             on_change=noop)
    await backend.update(f"{prefix}/eu/c", agent({"app": "web"}))
    async with Watcher(selected, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)  # raw a and b: no labels, not selected
        assert names(w.store.list()) == ["c"]
        await backend.update(f"{prefix}/eu/c", agent({"app": "db"}))  # leaves the selection
        await eventually(lambda: w.store.size == 0)


async def test_cached_store_fetches_values_with_get(
    backend: kv_backend.Backend, prefix: str
) -> None:
    await backend.update(f"{prefix}/eu/a", agent({"app": "web"}, ip="10.0.0.1"))
    config = WatcherConfig(source=KVSource(prefix), store_type=StoreType.CACHED,
                           index_by=["metadata.labels['app']"], on_change=noop)
    async with Watcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        fetched = await w.store.aget("web")
        assert [o["ip"] for o in fetched] == ["10.0.0.1"]


async def test_single_watcher_follows_one_key(backend: kv_backend.Backend, prefix: str) -> None:
    seen: list[Obj | None] = []
    synced: list[Obj | None] = []
    config = SingleWatcherConfig(source=KVSource(prefix), namespace="eu", name="a",
                                 on_change=seen.append, on_sync_complete=synced.append)
    await backend.update(f"{prefix}/eu/ab", agent(v=0))  # shares the name's prefix
    async with SingleWatcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert synced == [None]
        await backend.update(f"{prefix}/eu/a", agent(v=1))
        await backend.update(f"{prefix}/eu/ab", agent(v=2))
        await backend.update(f"{prefix}/us/a", agent(v=3))
        await backend.update(f"{prefix}/eu/a", agent(v=4))
        await eventually(lambda: len(seen) == 2)
        await backend.delete(f"{prefix}/eu/a")
        await eventually(lambda: len(seen) == 3)
        assert w.current is None
    assert [o["v"] if o else None for o in seen] == [1, 4, 4]  # a delete: the last state seen


async def test_a_closed_backend_ends_the_mirror_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = memory.MemoryBackend()
    config = WatcherConfig(source=KVSource("x"), index_by=["metadata.name"], on_change=noop)
    async with Watcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        await backend.close()
        assert isinstance(w.reflector, KVReflector)
        await eventually(lambda: "backend was closed" in caplog.text)
    assert any(r.levelno == logging.ERROR and "reflector failed" in r.getMessage()
               for r in caplog.records)


# -- a property: the mirror equals the keyspace, and the stats count every change ------------


Op = tuple[str, str, int]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "delete", "garbage"]),
                          st.sampled_from(["a", "b", "c", "eu/d", "eu/e"]),
                          st.integers(0, 2)), max_size=25))
def test_mirror_equals_keyspace_and_stats_count_changes(ops: list[Op]) -> None:
    """On the memory kvstore, any sequence of writes, deletes and undecodable values
    leaves the store equal to the keyspace's decodable keys (app=1 unselected), and
    the ChangeStats add up to the changes a selected-state model sees."""

    async def scenario() -> None:
        keyspace = memory.MemoryKVServer()
        calls = Calls()
        config = WatcherConfig(source=KVSource("p"), label_selector="app!=1",
                               index_by=["metadata.namespace", "metadata.labels['app']"],
                               debounce_interval=0, on_change=calls.on_change)
        held: dict[str, int] = {}  # the model: selected key -> app
        expected = ChangeStats()
        async with memory.MemoryBackend(keyspace) as b, Watcher(config, b) as w:
            await asyncio.wait_for(w.wait_for_sync(), 10)
            for op, name, app in ops:
                key = f"p/{name}"
                was = name in held
                if op == "delete":
                    await b.delete(key)
                    held.pop(name, None)
                    expected += ChangeStats(deleted=int(was))
                elif op == "garbage":
                    await b.update(key, b"\x00garbage")  # kept at its last good value
                else:
                    await b.update(key, agent({"app": str(app)}))
                    now = app != 1
                    if now:
                        held[name] = app
                    else:
                        held.pop(name, None)
                    expected += ChangeStats(created=int(now and not was),
                                            modified=int(now and was),
                                            deleted=int(was and not now))
            await eventually(lambda: calls.total().total >= expected.total)
            stored = {keys.meta_namespace_key(o): int(o["metadata"]["labels"]["app"])
                      for o in w.store.list()}
            assert stored == held
            for name, app in held.items():
                namespace, _, short = name.rpartition("/")
                assert short in names(w.store.get(namespace, str(app)))
        assert calls.total() == expected

    asyncio.run(scenario())


async def test_request_relist_repairs_a_store_changed_behind_its_back(
    backend: kv_backend.Backend, prefix: str
) -> None:
    """What a drift repair does: a new listing replaces the store, as a diff."""
    await backend.update(f"{prefix}/eu/a", agent(v=1))
    await backend.update(f"{prefix}/eu/b", agent(v=1))
    calls = Calls()
    config = WatcherConfig(source=KVSource(prefix), index_by=["metadata.name"],
                           debounce_interval=0, on_change=calls.on_change)
    async with Watcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert isinstance(w.reflector, KVReflector)
        assert w.store.delete_by_name("eu", "a")  # lost behind the mirror's back
        listed = await w.reflector.lw.list(ListOptions())  # the truth, as a drift check reads it
        assert names(listed.items) == ["a", "b"] != names(w.store.list())
        w.reflector.request_relist()
        await eventually(lambda: names(w.store.list()) == ["a", "b"])
        await backend.update(f"{prefix}/eu/b", agent(v=2))  # and it follows on
        await eventually(lambda: [o["v"] for o in w.store.get("b")] == [2])
        assert (w.reflector.stats.lists, w.reflector.stats.relists) == (2, 1)
        await eventually(lambda: calls.total().total == 2)
    assert calls.total() == ChangeStats(created=1, modified=1)


async def test_check_drift_reports_a_key_lost_behind_the_mirrors_back(
    backend: kv_backend.Backend, prefix: str
) -> None:
    """Watcher.check_drift() works for a kvstore prefix: an exact listing at the mirror's
    revision names the one key the store lost, and a relist repairs it."""
    await backend.update(f"{prefix}/eu/a", agent(v=1))
    await backend.update(f"{prefix}/eu/b", agent(v=1))
    config = WatcherConfig(source=KVSource(prefix), index_by=["metadata.name"],
                           on_change=lambda store, stats: None)
    async with Watcher(config, backend) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert not (await w.check_drift()).drifted
        assert w.store.delete_by_name("eu", "a")
        report = await w.check_drift()
        assert report.exact
        assert [e.key for e in report.missing] == ["eu/a"]
        assert report.extra == report.stale == ()
        w.reflector.request_relist()
        await eventually(lambda: names(w.store.list()) == ["a", "b"])
        assert not (await w.check_drift()).drifted


class CancellationSwallowingBackend(memory.MemoryBackend):
    """FAULT INJECTION: after its listing, the stream swallows one cancellation, as
    aetcd's watch creation can (``asyncio.wait_for`` on Python 3.11 loses a
    cancellation that races the server's answer); a real etcd does it only rarely."""

    swallowed = 0

    async def list_and_watch(self, prefix: str) -> AsyncGenerator[kv_backend.KVEvent, None]:
        inner = super().list_and_watch(prefix)
        try:
            async for event in inner:
                yield event
                if event.type is kv_backend.KVEventType.LIST_DONE:
                    try:
                        await asyncio.sleep(3600)  # creating the watch...
                    except asyncio.CancelledError:
                        self.swallowed += 1  # ...and the cancellation is lost
        finally:
            await inner.aclose()


async def test_stopping_survives_a_lost_cancellation() -> None:
    async with CancellationSwallowingBackend() as backend:
        await backend.update("p/a", agent(v=1))
        config = WatcherConfig(source=KVSource("p"), index_by=["metadata.name"],
                               on_change=noop)
        w = Watcher(config, backend)
        w.start()
        await asyncio.wait_for(w.wait_for_sync(), 10)
        await asyncio.sleep(0)  # the stream is past LIST_DONE
        await asyncio.wait_for(w.stop(), 10)
        assert backend.swallowed == 1
        assert w.store.size == 1
