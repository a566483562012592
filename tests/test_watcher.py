"""Watcher, SingleWatcher, their configs, ChangeStats and the Debouncer.

The sans-I/O parts (configs, ChangeStats, Debouncer) are tested directly, the
debouncer on a fake clock. Watchers run against kubemirror's own API server over
real HTTP on 127.0.0.1 (the ``kube_api_server`` fixture) through ``KubeClient``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from kubemirror import cache, errors, keys, listwatch, paths, selectors, stores, watcher
from kubemirror.client import ClientConfig, KubeClient
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.stores import CachedStore, IndexedStore, MemoryStore
from kubemirror.testing import make_pod, new_storage
from kubemirror.types import GroupVersionResource, Obj
from kubemirror.watcher import (
    ChangeStats,
    Debouncer,
    SingleWatcherConfig,
    StoreType,
    WatcherConfig,
)
from kubemirror.watcher.watcher import _StoreWriter
from tests.objects import FakeClock
from tests.watch_recorder import Recorder, names

PODS = GroupVersionResource("", "v1", "pods")


def noop(store: IndexedStore, stats: ChangeStats) -> None:
    """An on_change that does nothing."""


# -- ChangeStats ---------------------------------------------------------------------------


def test_change_stats_total_empty_and_sum() -> None:
    a = ChangeStats(created=2, modified=1)
    b = ChangeStats(deleted=3, is_initial_sync=True)
    assert a.total == 3
    assert not a.is_empty
    assert ChangeStats().is_empty
    assert a + b == ChangeStats(2, 1, 3, True)
    assert a + ChangeStats() == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(a, "created", 5)  # noqa: B010 - the frozen dataclass must refuse it


# -- Debouncer -----------------------------------------------------------------------------


def test_debouncer_leading_edge_then_refractory_batch() -> None:
    clock = FakeClock()
    d = Debouncer(1.0, clock)
    assert d.deadline() is None
    assert d.pop_due() is None
    d.record(ChangeStats(created=1))
    assert d.deadline() == clock.now()  # quiet so far: due at once
    assert d.pop_due() == ChangeStats(created=1)
    d.record(ChangeStats(modified=1))
    clock.advance(0.3)
    d.record(ChangeStats(modified=2))
    assert d.pop_due() is None  # within the refractory period
    assert d.deadline() == pytest.approx(clock.now() + 0.7)
    clock.advance(0.7)
    assert d.pop_due() == ChangeStats(modified=3)
    assert d.pop_due() is None
    clock.advance(5)
    d.record(ChangeStats(deleted=1))
    assert d.pop_due() == ChangeStats(deleted=1)  # quiet again: at once


def test_debouncer_flush_and_empty_stats() -> None:
    clock = FakeClock()
    d = Debouncer(10.0, clock)
    d.record(ChangeStats())
    assert d.pending is None
    d.record(ChangeStats(created=1))
    d.pop_due()
    d.record(ChangeStats(created=4))
    assert d.pop_due() is None
    assert d.flush() == ChangeStats(created=4)
    assert d.flush() is None


def test_debouncer_rejects_negative_interval() -> None:
    with pytest.raises(errors.ConfigError) as info:
        Debouncer(-1.0)
    assert info.value.field == "debounce_interval"


@given(
    st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.integers(1, 5)), min_size=1, max_size=40
    ),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_debouncer_spacing_and_no_loss(events: list[tuple[float, int]], interval: float) -> None:
    """A driver polling at every event and deadline: calls are >= interval apart, and
    every recorded change is reported exactly once (the trailing call included)."""
    clock = FakeClock(0.0)
    d = Debouncer(interval, clock)
    fired: list[tuple[float, int]] = []

    def poll() -> None:
        stats = d.pop_due()
        if stats is not None:
            fired.append((clock.now(), stats.created))

    def run_until(t: float) -> None:
        """Fire every batch that falls due up to time ``t``, as a driver would."""
        while (deadline := d.deadline()) is not None and deadline <= t:
            clock.t = max(clock.t, deadline)
            poll()
        clock.t = t

    for gap, count in events:
        run_until(clock.t + gap)
        d.record(ChangeStats(created=count))
        poll()
    if (last := d.deadline()) is not None:
        run_until(last)
    assert sum(n for _, n in fired) == sum(n for _, n in events)
    times = [t for t, _ in fired]
    assert all(b - a >= interval - 1e-9 for a, b in itertools.pairwise(times))


# -- configuration -------------------------------------------------------------------------


def config(**kw: Any) -> WatcherConfig:
    base: dict[str, Any] = {"gvr": PODS, "index_by": ["metadata.namespace"], "on_change": noop}
    base.update(kw)
    return WatcherConfig(**base)


def test_defaults() -> None:
    c = config()
    c.set_defaults()
    c.validate()
    assert c.debounce_interval == watcher.DEFAULT_DEBOUNCE_INTERVAL == 0.1
    assert c.cache_ttl == watcher.DEFAULT_CACHE_TTL
    assert c.store_type is StoreType.MEMORY
    assert c.call_on_change_during_sync is False
    assert c.watch_namespace() == ""
    explicit = config(debounce_interval=0.0, cache_ttl=5.0, store_type="cached")
    explicit.set_defaults()
    explicit.validate()
    assert explicit.debounce_interval == 0.0
    assert explicit.store_type is StoreType.CACHED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gvr": None}, "gvr"),
        ({"gvr": GroupVersionResource("", "v1", "")}, "gvr.resource"),
        ({"gvr": GroupVersionResource("", "", "pods")}, "gvr.version"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
        ({"index_by": []}, "index_by"),
        ({"index_by": "metadata.name"}, "index_by"),
        ({"index_by": ["metadata.name", "metadata[labels"]}, "index_by[1]"),
        ({"ignore_fields": ["metadata..x"]}, "ignore_fields[0]"),
        ({"label_selector": "app in (a"}, "label_selector"),
        ({"label_selector": {"matchExpressions": [{"key": "a", "operator": "Bad"}]}},
         "label_selector"),
        ({"label_selector": 42}, "label_selector"),
        ({"store_type": "disk"}, "store_type"),
        ({"cache_ttl": 0}, "cache_ttl"),
        ({"cache_ttl": "1m"}, "cache_ttl"),
        ({"cache_max_size": 0}, "cache_max_size"),
        ({"debounce_interval": -1}, "debounce_interval"),
        ({"on_change": None}, "on_change"),
        ({"on_change": "not callable"}, "on_change"),
        ({"on_sync_complete": 3}, "on_sync_complete"),
        ({"call_on_change_during_sync": "yes"}, "call_on_change_during_sync"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)) if isinstance(v, dict)
    else str(v),
)
def test_validate_names_the_field(changes: dict[str, Any], field: str) -> None:
    c = config(**changes)
    c.set_defaults()
    with pytest.raises(errors.ConfigError) as info:
        c.validate()
    assert info.value.field is not None
    assert info.value.field.startswith(field)


def test_bad_index_path_error_quotes_expression_and_position() -> None:
    c = config(index_by=["metadata.labels['x"])
    c.set_defaults()
    with pytest.raises(errors.FieldPathError) as info:
        c.validate()
    assert info.value.expression == "metadata.labels['x"
    assert info.value.position is not None


def test_label_selector_forms() -> None:
    for form in ("app=web,tier!=db", {"matchLabels": {"app": "web"},
                                       "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                             "values": ["db"]}]},
                 selectors.LabelSelector.parse("app=web,tier notin (db)")):
        sel = config(label_selector=form).selector()
        assert sel.matches({"app": "web", "tier": "fe"})
        assert not sel.matches({"app": "web", "tier": "db"})
    assert config().selector().matches({})


def test_namespaced_watch_reads_the_service_account_file(tmp_path: Path) -> None:
    path = tmp_path / "namespace"
    path.write_text("team-a\n")
    c = config(namespace="ignored", namespaced_watch=True, namespace_file=path)
    c.set_defaults()
    c.validate()
    assert c.watch_namespace() == "team-a"
    missing = config(namespaced_watch=True, namespace_file=tmp_path / "absent")
    missing.set_defaults()
    with pytest.raises(errors.ConfigError, match="absent") as info:
        missing.validate()
    assert info.value.field == "namespaced_watch"
    assert config(namespaced_watch=False).watch_namespace() == ""


def test_default_namespace_file_is_the_service_account_mount() -> None:
    assert config().namespace_file == (
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gvr": None}, "gvr"),
        ({"namespace": ""}, "namespace"),
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"on_change": None}, "on_change"),
        ({"on_sync_complete": "x"}, "on_sync_complete"),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else str(v),
)
def test_single_config_validate(changes: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "gvr": PODS, "namespace": "default", "name": "cfg", "on_change": print,
    }
    base.update(changes)
    c = SingleWatcherConfig(**base)
    c.set_defaults()
    with pytest.raises(errors.ConfigError) as info:
        c.validate()
    assert info.value.field == field


# -- watchers over real HTTP -----------------------------------------------------------------

ENDPOINT_SLICES = GroupVersionResource("discovery.k8s.io", "v1", "endpointslices")
CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")
SERVICE_NAME = "metadata.labels['kubernetes.io/service-name']"


@pytest.fixture
def kube_storage() -> MemoryStorage:
    """The default storage plus EndpointSlices (discovery.k8s.io/v1), served like a CRD."""
    storage = new_storage()
    storage.new_resource_storage(ResourceInfo(ENDPOINT_SLICES, kind="EndpointSlice"))
    return storage


@pytest.fixture
async def client(kube_api_server: KubeApiServer) -> AsyncIterator[KubeClient]:
    async with KubeClient(ClientConfig(kube_api_server.url)) as c:
        yield c


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``predicate`` until true; fail after ``within`` seconds (a deadline, not a sleep)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


def endpoint_slice(name: str, service: str | None, ip: str = "10.0.0.1") -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": service} if service is not None else {}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip]}],
    }


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }


def watcher_config(rec: Recorder, **kw: Any) -> WatcherConfig:
    base: dict[str, Any] = {
        "gvr": PODS,
        "namespace": "default",
        "index_by": ["metadata.namespace", "metadata.name"],
        "on_change": rec.on_change(),
        "on_sync_complete": rec.on_sync_complete(),
    }
    base.update(kw)
    return WatcherConfig(**base)


async def test_index_by_service_label_gives_direct_lookup(client: KubeClient) -> None:
    for name, service in [("a-2", "a"), ("a-1", "a"), ("b-1", "b"), ("orphan", None)]:
        await client.create(ENDPOINT_SLICES, endpoint_slice(name, service), "default")
    rec = Recorder()
    cfg = watcher_config(rec, gvr=ENDPOINT_SLICES, index_by=[SERVICE_NAME])
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert isinstance(w.store, MemoryStore)
        assert names(w.store.get("a")) == ["a-1", "a-2"]
        assert w.store.get("a") is w.store.get("a")  # the bucket itself: no scan, no copy
        assert names(w.store.get("b")) == ["b-1"]
        assert names(w.store.get("")) == ["orphan"]  # no label: stored under ""
        await client.create(ENDPOINT_SLICES, endpoint_slice("b-2", "b"), "default")
        await wait_until(lambda: len(w.store.get("b")) == 2)
        moved = endpoint_slice("a-1", "b")
        moved["metadata"]["resourceVersion"] = w.store.get("a")[0]["metadata"]["resourceVersion"]
        await client.replace(ENDPOINT_SLICES, moved, "default")
        await wait_until(lambda: len(w.store.get("b")) == 3)
        assert names(w.store.get("a")) == ["a-2"]
        assert w.store.size == 5
    assert rec.calls[0] == ("sync", 4)


async def test_ignore_fields_strips_managed_fields(client: KubeClient) -> None:
    for i in range(3):
        await client.create(PODS, make_pod(f"web-{i}", labels={"app": "web"}), "default")
    rec = Recorder()
    cfg = watcher_config(rec, ignore_fields=["metadata.managedFields"])
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        pods = w.store.list()
        assert len(pods) == 3
        for pod in pods:
            assert "managedFields" not in pod["metadata"]
            assert pod["metadata"]["labels"] == {"app": "web"}
            assert pod["spec"]["containers"]
        served = await client.get(PODS, "web-0", "default")
        assert served["metadata"]["managedFields"]  # the API still has them


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-callbacks", "async-callbacks"])
async def test_sync_complete_once_and_before_changes(
    client: KubeClient, asynchronous: bool
) -> None:
    for i in range(3):
        await client.create(PODS, make_pod(f"p-{i}"), "default")
    rec = Recorder(asynchronous)
    cfg = watcher_config(rec, debounce_interval=0.0)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert w.has_synced()
        assert rec.calls == [("sync", 3)]  # initial load not reported through on_change
        await client.create(PODS, make_pod("p-3"), "default")
        await wait_until(lambda: len(rec.calls) == 2)
    assert rec.calls[1] == ("change", ChangeStats(created=1))
    assert [kind for kind, _ in rec.calls].count("sync") == 1


async def test_call_on_change_during_sync_reports_initial_load_first(client: KubeClient) -> None:
    for i in range(4):
        await client.create(PODS, make_pod(f"p-{i}"), "default")
    rec = Recorder()
    cfg = watcher_config(rec, call_on_change_during_sync=True)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert w.initial_count == 4
    assert rec.calls == [("change", ChangeStats(created=4, is_initial_sync=True)), ("sync", 4)]


async def test_debounce_aggregates_a_burst_into_one_trailing_call(client: KubeClient) -> None:
    """Interval 60 s: the first change is reported at once (leading edge); a burst inside
    the refractory period is held back, and delivered as one summed call on stop."""
    await client.create(PODS, make_pod("keep"), "default")
    await client.create(PODS, make_pod("doomed"), "default")
    rec = Recorder()
    w = watcher.Watcher(watcher_config(rec, debounce_interval=60.0), client)
    w.start()
    await asyncio.wait_for(w.wait_for_sync(), 10)
    await client.create(PODS, make_pod("first"), "default")
    await wait_until(lambda: len(rec.changes()) == 1)
    assert rec.changes() == [ChangeStats(created=1)]
    for i in range(4):
        await client.create(PODS, make_pod(f"burst-{i}"), "default")
    keep = await client.get(PODS, "keep", "default")
    keep["metadata"]["labels"] = {"app": "changed"}
    await client.replace(PODS, keep, "default")
    await client.delete(PODS, "doomed", "default")
    await wait_until(
        lambda: w.store.size == 6 and w.store.ref("default", "doomed") is None
        and w.store.get("default", "keep")[0]["metadata"]["labels"] == {"app": "changed"}
    )
    assert len(rec.changes()) == 1  # still inside the 60 s refractory period
    await w.stop()
    assert rec.changes() == [ChangeStats(created=1), ChangeStats(created=4, modified=1, deleted=1)]


async def test_debounce_with_a_tight_real_interval(client: KubeClient) -> None:
    """Interval 50 ms on the real clock: each batch arrives, calls are >= 50 ms apart,
    and the counts add up to exactly what was written."""
    stamps: list[float] = []
    stats_seen: list[ChangeStats] = []

    async def on_change(store: IndexedStore, stats: ChangeStats) -> None:
        # A coroutine runs on the loop as soon as the batch is popped (a sync callback
        # would start after a thread hop of variable length, blurring the spacing).
        stamps.append(time.monotonic())
        stats_seen.append(stats)

    cfg = WatcherConfig(
        gvr=PODS, index_by=["metadata.name"], on_change=on_change, debounce_interval=0.05
    )
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        for i in range(10):
            await client.create(PODS, make_pod(f"p-{i}"), "default")
        await wait_until(lambda: sum(s.created for s in stats_seen) == 10)
    assert all(b - a >= 0.05 - 0.005 for a, b in itertools.pairwise(stamps))
    assert sum(s.total for s in stats_seen) == 10


async def test_failing_callbacks_are_logged_and_the_watch_goes_on(
    client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def on_change(store: IndexedStore, stats: ChangeStats) -> None:
        seen.append(stats.total)
        raise RuntimeError("user bug")

    async def on_sync_complete(store: IndexedStore, count: int) -> None:
        raise ValueError("also a bug")

    cfg = WatcherConfig(
        gvr=PODS, index_by=["metadata.name"], on_change=on_change,
        on_sync_complete=on_sync_complete, debounce_interval=0.0,
    )
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        await client.create(PODS, make_pod("a"), "default")
        await wait_until(lambda: len(seen) == 1)
        await client.create(PODS, make_pod("b"), "default")
        await wait_until(lambda: sum(seen) == 2)
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("on_sync_complete" in m for m in messages)
    assert any("on_change" in m for m in messages)


async def test_cached_store_fetch_counts(client: KubeClient) -> None:
    for name in ("a", "b"):
        await client.create(PODS, make_pod(name), "default")
    gets: list[tuple[str, str]] = []

    async def fetch(namespace: str, name: str) -> Obj | None:
        gets.append((namespace, name))
        return await client.get(PODS, name, namespace)

    clock = FakeClock()
    rec = Recorder()
    cfg = watcher_config(
        rec, store_type=StoreType.CACHED, cache_ttl=30.0,
        ignore_fields=["metadata.managedFields"], debounce_interval=0.0,
    )
    async with watcher.Watcher(cfg, client, fetch=fetch, clock=clock) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        store = w.store
        assert isinstance(store, CachedStore)
        assert store.size == 2
        assert store.cache_size == 0
        assert gets == []
        pods = await store.aget("default")
        assert names(pods) == ["a", "b"]
        assert all("managedFields" not in p["metadata"] for p in pods)
        assert len(gets) == 2
        await store.aget("default", "a")
        assert len(gets) == 2  # hits make no API call
        clock.advance(31)
        await store.aget("default", "a")
        assert len(gets) == 3  # expired: one GET
        b = await client.get(PODS, "b", "default")
        b["metadata"]["labels"] = {"v": "2"}
        await client.replace(PODS, b, "default")
        await wait_until(lambda: len(rec.changes()) == 1)
        (fresh,) = await store.aget("default", "b")  # the update invalidated the cached b
        assert fresh["metadata"]["labels"] == {"v": "2"}
        assert gets[-1] == ("default", "b")
        assert len(gets) == 4


async def test_default_fetch_uses_the_client(client: KubeClient) -> None:
    await client.create(PODS, make_pod("a"), "default")
    cfg = watcher_config(Recorder(), store_type=StoreType.CACHED)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(await w.store.aget("default")) == ["a"]
        await client.delete(PODS, "a", "default")
        await wait_until(lambda: w.store.size == 0)


async def test_label_selector_is_sent_to_the_server(client: KubeClient) -> None:
    await client.create(PODS, make_pod("web-1", labels={"app": "web"}), "default")
    await client.create(PODS, make_pod("db-1", labels={"app": "db"}), "default")
    cfg = watcher_config(Recorder(), label_selector={"matchLabels": {"app": "web"}})
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(w.store.list()) == ["web-1"]


async def test_start_in_thread_for_plain_code(kube_api_server: KubeApiServer) -> None:
    """The thread facade, driven from a worker thread (the server runs on this loop)."""
    async with KubeClient(ClientConfig(kube_api_server.url)) as writer:
        await writer.create(PODS, make_pod("a"), "default")
        calls: list[Any] = []
        cfg = WatcherConfig(
            gvr=PODS, index_by=["metadata.name"], store_type=StoreType.CACHED,
            on_change=lambda store, stats: calls.append(stats),
            on_sync_complete=lambda store, count: calls.append(count),
        )
        own_client = KubeClient(ClientConfig(kube_api_server.url))
        w = watcher.Watcher(cfg, own_client)

        def plain_script() -> list[str]:
            with w.start_in_thread() as handle:
                assert handle.wait_for_sync(10)
                assert isinstance(w.store, CachedStore)
                return names(w.store.get("a", timeout=10))  # sync get fetches via the thread

        assert await asyncio.to_thread(plain_script) == ["a"]
        assert calls == [1]


async def test_single_watcher(client: KubeClient) -> None:
    await client.create(CONFIGMAPS, config_map("cfg", mode="a"), "default")
    await client.create(CONFIGMAPS, config_map("other"), "default")
    events: list[tuple[str, Obj | None]] = []

    async def on_change(obj: Obj | None) -> None:
        events.append(("change", obj))

    def on_sync_complete(obj: Obj | None) -> None:
        events.append(("sync", obj))

    cfg = SingleWatcherConfig(
        gvr=CONFIGMAPS, namespace="default", name="cfg",
        on_change=on_change, on_sync_complete=on_sync_complete,
    )
    async with watcher.SingleWatcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert [(k, o and o["data"]) for k, o in events] == [("sync", {"mode": "a"})]
        cfg_obj = await client.get(CONFIGMAPS, "cfg", "default")
        cfg_obj["data"] = {"mode": "b"}
        await client.replace(CONFIGMAPS, cfg_obj, "default")
        other = await client.get(CONFIGMAPS, "other", "default")
        other["data"] = {"x": "y"}
        await client.replace(CONFIGMAPS, other, "default")
        await wait_until(lambda: len(events) == 2)
        assert events[1][1] is not None
        assert events[1][1]["data"] == {"mode": "b"}
        await client.delete(CONFIGMAPS, "cfg", "default")
        await wait_until(lambda: len(events) == 3)
        assert w.current is None
        last = events[2][1]
        assert last is not None
        assert last["metadata"]["name"] == "cfg"
    assert [k for k, _ in events] == ["sync", "change", "change"]


async def test_single_watcher_sync_without_object(client: KubeClient) -> None:
    seen: list[Obj | None] = []
    cfg = SingleWatcherConfig(
        gvr=CONFIGMAPS, namespace="default", name="absent",
        on_change=seen.append, on_sync_complete=seen.append,
    )
    async with watcher.SingleWatcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert seen == [None]
        await client.create(CONFIGMAPS, config_map("absent", k="v"), "default")
        await wait_until(lambda: len(seen) == 2)
        assert w.current is not None
    assert seen[1] is not None
    assert seen[1]["data"] == {"k": "v"}


# -- the store writer (unit) -----------------------------------------------------------------


def test_store_writer_replace_diffs_by_resource_version() -> None:
    """A relist's replace yields creates, modifies and deletes; unchanged objects are skipped."""
    store = MemoryStore(1)
    reports: list[tuple[ChangeStats, bool]] = []
    writer = _StoreWriter(
        store, (paths.FieldPath.compile("metadata.name"),),
        lambda s, r: reports.append((s, r)), "test"
    )

    def pod(name: str, rv: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}

    writer.replace([pod("a", "1"), pod("b", "1"), pod("c", "1")], "1")
    assert reports[-1] == (ChangeStats(created=3), True)
    writer.replace([pod("a", "1"), pod("b", "2"), pod("d", "3")], "3")
    assert reports[-1] == (ChangeStats(created=1, modified=1, deleted=1), True)
    assert names(store.list()) == ["a", "b", "d"]
    writer.update(pod("a", "1"))
    assert reports[-1] == (ChangeStats(), False)
    writer.delete(pod("zz", "9"))
    assert reports[-1] == (ChangeStats(), False)
    writer.add({"metadata": {"namespace": "ns"}})  # no name: logged and counted
    assert writer.rejected == 1
    writer.delete(keys.DeletedFinalStateUnknown("ns/a", None))
    assert reports[-1] == (ChangeStats(deleted=1), False)
    assert sorted(writer.list_keys()) == ["ns/b", "ns/d"]


async def test_sync_callback_may_read_a_cached_store_with_misses(client: KubeClient) -> None:
    """Sync callbacks run in a worker thread, so a CachedStore's sync ``get`` can fetch
    through the watcher's loop instead of deadlocking it."""
    await client.create(PODS, make_pod("a"), "default")
    seen: list[list[str]] = []

    def on_sync_complete(store: IndexedStore, count: int) -> None:
        seen.append(names(store.get("default")))  # a miss: fetched over HTTP

    cfg = watcher_config(
        Recorder(), store_type=StoreType.CACHED, on_sync_complete=on_sync_complete
    )
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
    assert seen == [["a"]]


async def test_any_lister_watcher_as_source(client: KubeClient) -> None:
    await client.create(PODS, make_pod("a"), "default")
    lw = listwatch.ListWatch(client, PODS, "default")
    with pytest.raises(errors.ConfigError) as info:
        watcher.Watcher(watcher_config(Recorder(), store_type=StoreType.CACHED), lw)
    assert info.value.field == "fetch"
    async with watcher.Watcher(watcher_config(Recorder()), lw) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(w.store.get("default")) == ["a"]


# -- the mutation detector --------------------------------------------------------------------


@pytest.mark.mutates_stored_objects
async def test_on_change_mutating_a_stored_pod_is_found_by_the_periodic_check(
    client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.create(PODS, make_pod("web-0"), "default")

    def mutate(store: IndexedStore, count: int) -> None:
        for pod in store.list():
            pod["metadata"]["labels"]["patched"] = "in-place"

    config = watcher_config(Recorder(), on_sync_complete=mutate)
    w = watcher.Watcher(config, client, mutation_detector=True)
    assert isinstance(w.store, stores.MutationCheckingMemoryStore)
    async with w:
        await w.wait_for_sync()
        await wait_until(lambda: w.store.detector.mutations == 1)  # type: ignore[attr-defined]
    assert "'default/web-0' was mutated at metadata.labels.patched" in caplog.text


@pytest.mark.mutates_stored_objects
async def test_strict_watcher_store_read_raises_naming_the_pod(client: KubeClient) -> None:
    await client.create(PODS, make_pod("web-0"), "default")
    options = cache.MutationDetectorOptions(check_every=0, strict=True)
    w = watcher.Watcher(watcher_config(Recorder()), client, mutation_detector=options)
    async with w:
        await w.wait_for_sync()
        (pod,) = w.store.get("default", "web-0")
        pod["metadata"]["labels"]["tier"] = "x"
        with pytest.raises(errors.MutationError) as info:
            w.store.list()
    assert (info.value.key, info.value.path) == ("default/web-0", "metadata.labels.tier")


def test_watcher_without_detector_uses_the_plain_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEMIRROR_MUTATION_DETECTOR", raising=False)
    w = watcher.Watcher(watcher_config(Recorder()), listwatch.ListWatch(
        KubeClient(ClientConfig("http://127.0.0.1:1")), PODS, "default"))
    assert type(w.store) is MemoryStore


@pytest.mark.parametrize(
    "gvr",
    [GroupVersionResource("", "v1", "widgets"),
     GroupVersionResource("example.com", "v1", "widgets"),
     GroupVersionResource("apps", "v1", "widgets")],
    ids=["core-type-missing", "group-missing", "type-missing-in-a-served-group"],
)
async def test_a_resource_the_server_does_not_serve_fails_fast(
    gvr: GroupVersionResource, kube_api_server: KubeApiServer
) -> None:
    """As ``ListWatch.for_resource``: ``ResourceNotFoundError`` naming the resource, at once,
    instead of a reflector retrying a 404 forever."""
    config = WatcherConfig(gvr=gvr, index_by=["metadata.name"], on_change=lambda store, stats: None)
    async with KubeClient(ClientConfig(kube_api_server.url)) as client:
        mirror = watcher.Watcher(config, client)
        with pytest.raises(errors.ResourceNotFoundError, match="widgets"):
            async with mirror:
                await asyncio.wait_for(mirror.wait_for_sync(), 10)


async def test_a_served_resource_still_syncs_after_the_check(client: KubeClient) -> None:
    config = WatcherConfig(gvr=ENDPOINT_SLICES, index_by=[SERVICE_NAME],
                           on_change=lambda store, stats: None)
    async with watcher.Watcher(config, client) as mirror:
        await asyncio.wait_for(mirror.wait_for_sync(), 10)
        assert mirror.has_synced()
