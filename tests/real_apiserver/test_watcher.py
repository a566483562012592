"""Watcher and SingleWatcher against the genuine kube-apiserver.

A ``Watcher`` fills a ``MemoryStore`` or a ``CachedStore`` (objects fetched through
the API on access) keyed by namespace and a label; after each scenario the store
equals a fresh LIST, ``on_change``'s ``ChangeStats`` add up to exactly the writes
made, ``on_sync_complete`` ran once, and ``ignore_fields`` removed the
``managedFields`` the real server always fills in. Counting is exact only with the
real server's event stream in mind: a pod's DELETE is a MODIFIED (the
``deletionTimestamp`` mark) then a DELETED, and relabelling an object out of (into)
a label-selected watch is a DELETED (ADDED).

The ``api`` tests run scenarios of ``tests/test_watcher.py`` (written against
kubemirror's own server) against both servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import pytest_asyncio

from kubemirror import errors, listwatch, watcher
from kubemirror.client import KubeClient, ListOptions, resource_path
from kubemirror.envtest import EnvTest
from kubemirror.stores import CachedStore, IndexedStore, MemoryStore
from kubemirror.types import GroupVersionResource, Obj
from kubemirror.watcher import ChangeStats, SingleWatcherConfig, StoreType, WatcherConfig
from tests.objects import FakeClock
from tests.polling import eventually
from tests.real_apiserver.conftest import (
    CONFIGMAPS,
    PODS,
    REAL,
    ServerUnderTest,
    configmap,
    create_namespace,
    pod,
    unique,
)
from tests.real_apiserver.test_informer import (
    FORCE_DELETE,
    RUN_LABEL,
    changing,
    gvr_for,
    mutate,
    new_object,
    rv,
    server_objects,
    update,
    widget_resource,
    without_managed_fields,
)
from tests.watch_recorder import Recorder, names

APP = "metadata.labels['app']"
STORE_TYPES = [StoreType.MEMORY, StoreType.CACHED]
ENDPOINT_SLICES = GroupVersionResource("discovery.k8s.io", "v1", "endpointslices")


@pytest_asyncio.fixture
async def widgets(real_env: EnvTest, real_client: KubeClient) -> GroupVersionResource:
    return await widget_resource(real_env, real_client)


def refs_of(store: IndexedStore) -> dict[str, str]:
    return {f"{r.namespace}/{r.name}": r.resource_version for r in store.refs()}


async def assert_store_equals_server(
    w: watcher.Watcher, client: KubeClient, gvr: GroupVersionResource, selector: str
) -> dict[str, dict[str, Any]]:
    """Wait until the store's references equal the server's LIST, then compare every
    bucket and object (read through the store: a cached store fetches them with GET)."""
    served = await server_objects(client, gvr, None, selector)
    versions = {k: rv(o) for k, o in served.items()}
    await eventually(lambda: refs_of(w.store) == versions, within=15,
                     what="the store's references equal the server's LIST")
    store = w.store
    buckets: dict[tuple[str, str], list[str]] = {}
    for o in served.values():
        meta = o["metadata"]
        assert meta["managedFields"]  # the real server fills them in
        buckets.setdefault((meta["namespace"], meta["labels"].get("app", "")), []).append(
            meta["name"])
    for (ns, app), members in buckets.items():
        stored = await store.aget(ns, app)
        assert names(stored) == sorted(members), (ns, app)
        for obj in stored:
            assert "managedFields" not in obj["metadata"]
            assert obj == without_managed_fields(served[f"{ns}/{obj['metadata']['name']}"])
    assert sum(len(m) for m in buckets.values()) == store.size
    assert names(await store.alist()) == names(sorted(
        served.values(), key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])))
    return served


# -- Watcher mirrors every kind, with exact ChangeStats --------------------------------------------


@pytest.mark.parametrize("kind", ["pods", "configmaps", "widgets"])
@pytest.mark.parametrize("store_type", STORE_TYPES, ids=["memory", "cached"])
async def test_watcher_mirrors_the_real_server(
    real_client: KubeClient, namespace: str, request: pytest.FixtureRequest,
    store_type: StoreType, kind: str,
) -> None:
    gvr = await gvr_for(kind, request)
    client = real_client
    namespaces = [namespace, await create_namespace(client)]
    run = unique("run")
    selector = f"{RUN_LABEL}={run}"

    def labels(app: str | None) -> dict[str, str]:
        return {RUN_LABEL: run, **({"app": app} if app else {})}

    def where(i: int) -> str:
        return namespaces[i % 2]

    apps = ["web", "db", None]
    for i in range(20):
        await client.create(gvr, new_object(gvr, f"o-{i:02}", labels(apps[i % 3]), i), where(i))
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(
        gvr=gvr, label_selector=selector, index_by=["metadata.namespace", APP],
        ignore_fields=["metadata.managedFields"], store_type=store_type,
        debounce_interval=0.05, on_change=rec.on_change(),
        on_sync_complete=rec.on_sync_complete(),
    )
    async with watcher.Watcher(cfg, client, page_size=7) as w:
        assert isinstance(w.store, CachedStore if store_type is StoreType.CACHED else MemoryStore)
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert rec.calls == [("sync", 20)]
        assert w.initial_count == 20
        await assert_store_equals_server(w, client, gvr, selector)
        for i in range(3):
            await client.create(gvr, new_object(gvr, f"n-{i}", labels("web"), i), where(i))
        for i in range(3):
            await update(client, gvr, where(i), f"o-{i:02}", changing(gvr, i))

        def move(obj: dict[str, Any]) -> None:  # o-03 is app=web: to another bucket
            obj["metadata"]["labels"]["app"] = "db"

        await update(client, gvr, where(3), "o-03", move)
        await client.delete(gvr, "o-04", where(4))
        await client.delete(gvr, "o-05", where(5))

        def relabel(value: str) -> Callable[[dict[str, Any]], None]:
            return lambda obj: obj["metadata"]["labels"].__setitem__(RUN_LABEL, value)

        await update(client, gvr, where(6), "o-06", relabel("gone"))  # out of the selection
        await client.create(gvr, new_object(gvr, "outsider", {"app": "web"}), namespace)
        await update(client, gvr, namespace, "outsider", relabel(run))  # into it
        # each pod delete is a MODIFIED (deletionTimestamp) then a DELETED
        marks = 2 if gvr == PODS else 0
        expected = ChangeStats(created=3 + 1, modified=3 + 1 + marks, deleted=2 + 1)
        served = await assert_store_equals_server(w, client, gvr, selector)
        await eventually(lambda: rec.total() == expected, what=f"changes add up to {expected}")
        assert names(await w.store.aget(where(3), "db")).count("o-03") == 1
        assert "o-03" not in names(await w.store.aget(where(3), "web"))
    assert rec.total() == expected  # nothing more flushed on stop
    assert rec.syncs() == [20]
    assert rec.calls[0] == ("sync", 20)
    assert all(not s.is_empty and not s.is_initial_sync for s in rec.changes())
    assert f"{namespace}/outsider" in served
    assert len(served) == 20 + 3 - 2 - 1 + 1
    assert w.rejected == 0
    assert w.reflector.stats.errors == 0


@pytest.mark.parametrize("store_type", STORE_TYPES, ids=["memory", "cached"])
async def test_watcher_counts_a_graceful_pod_deletion(
    real_client: KubeClient, namespace: str, store_type: StoreType
) -> None:
    """No kubelet: DELETE marks a bound pod (one modification) and it stays in the store,
    with its deletionTimestamp; a forced delete (grace 0) removes it (one deletion)."""
    client = real_client
    await client.create(PODS, pod("bound", node="node-a"), namespace)
    await client.create(PODS, pod("free"), namespace)
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(gvr=PODS, namespace=namespace,
                        index_by=["metadata.namespace", "metadata.name"],
                        ignore_fields=["metadata.managedFields"], store_type=store_type,
                        debounce_interval=0.0, on_change=rec.on_change(),
                        on_sync_complete=rec.on_sync_complete())
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert rec.syncs() == [2]
        marked = await client.delete(PODS, "bound", namespace)
        await eventually(lambda: rec.total() == ChangeStats(modified=1))
        (stored,) = await w.store.aget(namespace, "bound")
        assert stored["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
        assert stored["metadata"]["deletionGracePeriodSeconds"] == 30
        assert rv(stored) == rv(marked)
        await client.request("DELETE", resource_path(PODS, namespace, "bound"), body=FORCE_DELETE)
        await eventually(lambda: rec.total() == ChangeStats(modified=2, deleted=1))
        assert w.store.ref(namespace, "bound") is None
        await client.delete(PODS, "free", namespace)
        await eventually(lambda: rec.total() == ChangeStats(modified=3, deleted=2))
        assert w.store.size == 0
        assert (await client.list(PODS, namespace, ListOptions())).items == []
    assert rec.total() == ChangeStats(modified=3, deleted=2)


async def test_index_by_service_label_on_real_endpoint_slices(
    real_client: KubeClient, namespace: str
) -> None:
    """tests/test_watcher.py serves EndpointSlices as a CRD; the real server has them."""
    client = real_client

    def endpoint_slice(name: str, service: str | None) -> dict[str, Any]:
        labels = {"kubernetes.io/service-name": service} if service else {}
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "labels": labels}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"]}]}

    for name, service in [("a-2", "a"), ("a-1", "a"), ("b-1", "b"), ("orphan", None)]:
        await client.create(ENDPOINT_SLICES, endpoint_slice(name, service), namespace)
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(gvr=ENDPOINT_SLICES, namespace=namespace,
                        index_by=["metadata.labels['kubernetes.io/service-name']"],
                        on_change=rec.on_change(), on_sync_complete=rec.on_sync_complete(),
                        debounce_interval=0.0)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(w.store.get("a")) == ["a-1", "a-2"]
        assert names(w.store.get("b")) == ["b-1"]
        assert names(w.store.get("")) == ["orphan"]
        moved = await client.get(ENDPOINT_SLICES, "a-1", namespace)
        moved["metadata"]["labels"]["kubernetes.io/service-name"] = "b"
        await client.replace(ENDPOINT_SLICES, moved, namespace)
        await eventually(lambda: len(w.store.get("b")) == 2)
        assert names(w.store.get("a")) == ["a-2"]
    assert rec.calls == [("sync", 4), ("change", ChangeStats(modified=1))]


async def test_single_watcher_follows_a_custom_resource(
    real_client: KubeClient, namespace: str, widgets: GroupVersionResource
) -> None:
    """Field selector metadata.name on a custom resource; spec and /status changes are
    changes, a no-op PUT is none (same resourceVersion), a delete reports the last state."""
    client = real_client
    await client.create(widgets, new_object(widgets, "w", {}, 1), namespace)
    await client.create(widgets, new_object(widgets, "other", {}, 2), namespace)
    events: list[tuple[str, Obj | None]] = []

    async def on_change(obj: Obj | None) -> None:
        events.append(("change", obj))

    async def on_sync_complete(obj: Obj | None) -> None:
        events.append(("sync", obj))

    cfg = SingleWatcherConfig(gvr=widgets, namespace=namespace, name="w",
                              on_change=on_change, on_sync_complete=on_sync_complete)
    async with watcher.SingleWatcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert [(k, o and o["spec"]) for k, o in events] == [("sync", {"size": 1})]
        spec = await update(client, widgets, namespace, "w", lambda o: mutate(widgets, o, 5))
        await update(client, widgets, namespace, "other", lambda o: mutate(widgets, o, 6))
        await eventually(lambda: len(events) == 2)
        assert events[1][1] == spec
        assert spec["metadata"]["generation"] == 2
        noop = await client.replace(widgets, spec, namespace)
        assert rv(noop) == rv(spec)
        status_path = resource_path(widgets, namespace, "w") + "/status"
        status = await client.request("PUT", status_path, body=dict(spec, status={"ok": True}))
        await eventually(lambda: len(events) == 3)
        assert events[2][1] == status  # the no-op PUT made no change in between
        assert status["metadata"]["generation"] == 2
        await client.delete(widgets, "w", namespace)
        await eventually(lambda: len(events) == 4)
        assert w.current is None
        last = events[3][1]
        assert last is not None
        assert last["status"] == {"ok": True}
    assert [k for k, _ in events] == ["sync", "change", "change", "change"]


# -- parity: tests/test_watcher.py's scenarios against both servers --------------------------------


@pytest.mark.parametrize("store_type", STORE_TYPES, ids=["memory", "cached"])
async def test_watcher_change_stats_on_both_servers(
    api: ServerUnderTest, store_type: StoreType
) -> None:
    client, ns = api.client, api.namespace
    for i in range(10):
        await client.create(CONFIGMAPS, configmap(f"c-{i}", labels={"app": "web"}), ns)
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(gvr=CONFIGMAPS, namespace=ns, label_selector="app",
                        index_by=["metadata.namespace", APP],
                        ignore_fields=["metadata.managedFields"], store_type=store_type,
                        debounce_interval=0.02, on_change=rec.on_change(),
                        on_sync_complete=rec.on_sync_complete())
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        await client.create(CONFIGMAPS, configmap("c-new", labels={"app": "db"}), ns)
        for i in range(3):
            await update(client, CONFIGMAPS, ns, f"c-{i}", changing(CONFIGMAPS, i))
        await client.delete(CONFIGMAPS, "c-9", ns)
        await update(client, CONFIGMAPS, ns, "c-8",
                     lambda o: o["metadata"]["labels"].pop("app"))  # out of the selection
        expected = ChangeStats(created=1, modified=3, deleted=2)
        await eventually(lambda: rec.total() == expected, what=f"changes add up to {expected}")
        served = await server_objects(client, CONFIGMAPS, ns, "app")
        assert refs_of(w.store) == {k: rv(o) for k, o in served.items()}
        assert names(await w.store.aget(ns, "db")) == ["c-new"]
        for obj in await w.store.aget(ns):
            assert obj == without_managed_fields(served[f"{ns}/{obj['metadata']['name']}"])
            assert "managedFields" not in obj["metadata"]
    assert rec.syncs() == [10]
    assert rec.total() == expected
    assert all(("managedFields" in o["metadata"]) is (api.kind == REAL) for o in served.values())


async def test_ignore_fields_strips_managed_fields_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    for i in range(3):
        await client.create(PODS, pod(f"web-{i}", labels={"app": "web"}), ns)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace", "metadata.name"],
                        ignore_fields=["metadata.managedFields"],
                        on_change=Recorder(asynchronous=True).on_change())
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        pods = w.store.list()
        assert len(pods) == 3
        for p in pods:
            assert "managedFields" not in p["metadata"]
            assert p["metadata"]["labels"] == {"app": "web"}
            assert p["spec"]["containers"]
        served = await client.get(PODS, "web-0", ns)
        # only the real server keeps server-side-apply bookkeeping
        assert bool(served["metadata"].get("managedFields")) is (api.kind == REAL)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-callbacks", "async-callbacks"])
async def test_sync_complete_once_and_before_changes_on_both_servers(
    api: ServerUnderTest, asynchronous: bool
) -> None:
    client, ns = api.client, api.namespace
    for i in range(3):
        await client.create(PODS, pod(f"p-{i}"), ns)
    rec = Recorder(asynchronous)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace", "metadata.name"],
                        on_change=rec.on_change(), on_sync_complete=rec.on_sync_complete(),
                        debounce_interval=0.0)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert w.has_synced()
        assert rec.calls == [("sync", 3)]
        await client.create(PODS, pod("p-3"), ns)
        await eventually(lambda: len(rec.calls) == 2)
    assert rec.calls[1] == ("change", ChangeStats(created=1))
    assert rec.syncs() == [3]


async def test_call_on_change_during_sync_reports_initial_load_first_on_both_servers(
    api: ServerUnderTest,
) -> None:
    client, ns = api.client, api.namespace
    for i in range(4):
        await client.create(PODS, pod(f"p-{i}"), ns)
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace", "metadata.name"],
                        on_change=rec.on_change(), on_sync_complete=rec.on_sync_complete(),
                        call_on_change_during_sync=True)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert w.initial_count == 4
    assert rec.calls == [("change", ChangeStats(created=4, is_initial_sync=True)), ("sync", 4)]


async def test_debounce_aggregates_a_burst_into_one_trailing_call_on_both_servers(
    api: ServerUnderTest,
) -> None:
    """Interval 60 s: the first change at once (leading edge), the burst held back and
    delivered as one summed call on stop. The real server's pod delete is two events."""
    client, ns = api.client, api.namespace
    await client.create(PODS, pod("keep"), ns)
    await client.create(PODS, pod("doomed"), ns)
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace", "metadata.name"],
                        on_change=rec.on_change(), on_sync_complete=rec.on_sync_complete(),
                        debounce_interval=60.0)
    w = watcher.Watcher(cfg, client)
    w.start()
    await asyncio.wait_for(w.wait_for_sync(), 10)
    await client.create(PODS, pod("first"), ns)
    await eventually(lambda: len(rec.changes()) == 1)
    assert rec.changes() == [ChangeStats(created=1)]
    for i in range(4):
        await client.create(PODS, pod(f"burst-{i}"), ns)
    keep = await client.get(PODS, "keep", ns)
    keep["metadata"]["labels"] = {"app": "changed"}
    await client.replace(PODS, keep, ns)
    await client.delete(PODS, "doomed", ns)
    await eventually(
        lambda: w.store.size == 6 and w.store.ref(ns, "doomed") is None
        and w.store.get(ns, "keep")[0]["metadata"]["labels"] == {"app": "changed"}
    )
    assert len(rec.changes()) == 1  # still inside the 60 s refractory period
    await w.stop()
    marked = 1 if api.kind == REAL else 0
    assert rec.changes() == [ChangeStats(created=1),
                             ChangeStats(created=4, modified=1 + marked, deleted=1)]


async def test_label_selector_is_sent_to_the_server_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    await client.create(PODS, pod("web-1", labels={"app": "web"}), ns)
    await client.create(PODS, pod("db-1", labels={"app": "db"}), ns)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace"],
                        label_selector={"matchLabels": {"app": "web"}},
                        on_change=Recorder(asynchronous=True).on_change())
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(w.store.list()) == ["web-1"]
        # the server filters: a relabelled pod arrives and leaves through the watch
        await update(client, PODS, ns, "db-1",
                     lambda o: o["metadata"]["labels"].__setitem__("app", "web"))
        await eventually(lambda: names(w.store.list()) == ["db-1", "web-1"])
        await update(client, PODS, ns, "web-1",
                     lambda o: o["metadata"]["labels"].__setitem__("app", "db"))
        await eventually(lambda: names(w.store.list()) == ["db-1"])


async def test_cached_store_fetch_counts_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    for name in ("a", "b"):
        await client.create(PODS, pod(name), ns)
    gets: list[tuple[str, str]] = []

    async def fetch(namespace: str, name: str) -> Obj | None:
        gets.append((namespace, name))
        return await client.get(PODS, name, namespace)

    clock = FakeClock()
    rec = Recorder(asynchronous=True)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace", "metadata.name"],
                        on_change=rec.on_change(), store_type=StoreType.CACHED, cache_ttl=30.0,
                        ignore_fields=["metadata.managedFields"], debounce_interval=0.0)
    async with watcher.Watcher(cfg, client, fetch=fetch, clock=clock) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        store = w.store
        assert isinstance(store, CachedStore)
        assert (store.size, store.cache_size, gets) == (2, 0, [])
        pods = await store.aget(ns)
        assert names(pods) == ["a", "b"]
        assert all("managedFields" not in p["metadata"] for p in pods)
        assert len(gets) == 2
        await store.aget(ns, "a")
        assert len(gets) == 2  # hits make no API call
        clock.advance(31)
        await store.aget(ns, "a")
        assert len(gets) == 3  # expired: one GET
        b = await client.get(PODS, "b", ns)
        b["metadata"]["labels"] = {"v": "2"}
        await client.replace(PODS, b, ns)
        await eventually(lambda: len(rec.changes()) == 1)
        (fresh,) = await store.aget(ns, "b")  # the update invalidated the cached b
        assert fresh["metadata"]["labels"] == {"v": "2"}
        assert gets[-1] == (ns, "b")
        assert len(gets) == 4


async def test_default_fetch_uses_the_client_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    await client.create(PODS, pod("a"), ns)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace", "metadata.name"],
                        on_change=Recorder(asynchronous=True).on_change(),
                        store_type=StoreType.CACHED)
    async with watcher.Watcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(await w.store.aget(ns)) == ["a"]
        await client.delete(PODS, "a", ns)
        await eventually(lambda: w.store.size == 0)


async def test_any_lister_watcher_as_source_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    await client.create(PODS, pod("a"), ns)
    lw = listwatch.ListWatch(client, PODS, ns)
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace"],
                        on_change=Recorder(asynchronous=True).on_change(),
                        store_type=StoreType.CACHED)
    with pytest.raises(errors.ConfigError) as info:
        watcher.Watcher(cfg, lw)
    assert info.value.field == "fetch"
    cfg = WatcherConfig(gvr=PODS, namespace=ns, index_by=["metadata.namespace"],
                        on_change=Recorder(asynchronous=True).on_change())
    async with watcher.Watcher(cfg, lw) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert names(w.store.get(ns)) == ["a"]


async def test_single_watcher_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    await client.create(CONFIGMAPS, configmap("cfg", {"mode": "a"}), ns)
    await client.create(CONFIGMAPS, configmap("other"), ns)
    events: list[tuple[str, Obj | None]] = []

    async def on_change(obj: Obj | None) -> None:
        events.append(("change", obj))

    def on_sync_complete(obj: Obj | None) -> None:
        events.append(("sync", obj))

    cfg = SingleWatcherConfig(gvr=CONFIGMAPS, namespace=ns, name="cfg",
                              on_change=on_change, on_sync_complete=on_sync_complete)
    async with watcher.SingleWatcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert [(k, o and o["data"]) for k, o in events] == [("sync", {"mode": "a"})]
        await update(client, CONFIGMAPS, ns, "cfg", lambda o: o.__setitem__("data", {"mode": "b"}))
        await update(client, CONFIGMAPS, ns, "other", lambda o: o.__setitem__("data", {"x": "y"}))
        await eventually(lambda: len(events) == 2)
        assert events[1][1] is not None
        assert events[1][1]["data"] == {"mode": "b"}
        await client.delete(CONFIGMAPS, "cfg", ns)
        await eventually(lambda: len(events) == 3)
        assert w.current is None
        last = events[2][1]
        assert last is not None
        assert last["metadata"]["name"] == "cfg"
    assert [k for k, _ in events] == ["sync", "change", "change"]


async def test_single_watcher_sync_without_object_on_both_servers(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    seen: list[Obj | None] = []
    cfg = SingleWatcherConfig(gvr=CONFIGMAPS, namespace=ns, name="absent",
                              on_change=seen.append, on_sync_complete=seen.append)
    async with watcher.SingleWatcher(cfg, client) as w:
        await asyncio.wait_for(w.wait_for_sync(), 10)
        assert seen == [None]
        await client.create(CONFIGMAPS, configmap("absent", {"k": "v"}), ns)
        await eventually(lambda: len(seen) == 2)
        assert w.current is not None
    assert seen[1] is not None
    assert seen[1]["data"] == {"k": "v"}

