"""WatchCache through the storages' watches: window, cut-off, selectors, bookmarks, initial
events (run against MemoryStorage and PostgresStorage: fixtures ``storage`` and
``any_pods``), wake-ups from threads, shared encodings (memory). Fixtures come from
conftest.py."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.watch_cache import INITIAL_EVENTS_END_ANNOTATION, StorageEvent, Watch
from kubemirror.testing import PODS, make_pod, new_storage
from kubemirror.types import GroupVersionResource

if TYPE_CHECKING:
    from tests.multicluster.conftest import AnyResourceStorage, AnyStorage


async def take(watch: Watch, n: int) -> list[StorageEvent]:
    out: list[StorageEvent] = []
    async with asyncio.timeout(5):
        async for event in watch:
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_watch_from_empty_version_replays_state_then_streams(
    any_pods: AnyResourceStorage,
) -> None:
    await any_pods.acreate("a", make_pod("x"))
    watch = await any_pods.awatch()
    await any_pods.acreate("b", make_pod("y"))
    events = await take(watch, 2)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "x"),
        ("ADDED", "y"),
    ]
    assert events[1].line().startswith(b'{"type":"ADDED","object":{')
    watch.stop()
    assert any_pods.watcher_count == 0


async def test_watch_from_version_sees_exactly_later_events(any_pods: AnyResourceStorage) -> None:
    await any_pods.acreate("a", make_pod("x"))
    mark = (await any_pods.alist()).resource_version
    await any_pods.aupdate("a", make_pod("x", phase="Failed"))
    await any_pods.acreate("b", make_pod("y"))
    await any_pods.adelete("a", make_pod("x"))
    async with await any_pods.awatch(ListOptions(resource_version=mark)) as watch:
        events = await take(watch, 3)
    assert [(e.type, e.cluster) for e in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    indexes = [e.index for e in events]
    assert indexes == sorted(indexes)
    assert indexes[0] == 2


async def test_watch_older_than_window_is_gone(any_pods: AnyResourceStorage) -> None:
    for i in range(100):
        await any_pods.acreate("a", make_pod(f"p{i}"))
    with pytest.raises(errors.GoneError):
        await any_pods.awatch(ListOptions(resource_version="p.3"))
    with pytest.raises(errors.ApiError) as future:
        await any_pods.awatch(ListOptions(resource_version="p.1000"))
    assert future.value.code == 504
    (await any_pods.awatch(ListOptions(resource_version="p.60"))).stop()


async def test_slow_watcher_is_cut_off_and_can_resume(storage: AnyStorage) -> None:
    storage.max_watch_lag = 10
    pods = storage.resource_storage(PODS)
    watch = await pods.awatch(ListOptions(resource_version=storage.resource_version))
    await pods.acreate("a", make_pod("first"))
    [first] = await take(watch, 1)
    for i in range(20):
        await pods.acreate("a", make_pod(f"p{i}"))
    rest = [e async for e in watch]
    assert watch.cut_off
    assert rest == []
    async with await pods.awatch(ListOptions(resource_version=watch.resource_version)) as resumed:
        events = await take(resumed, 20)
    assert [e.object["metadata"]["name"] for e in events] == [f"p{i}" for i in range(20)]
    assert first.object["metadata"]["name"] == "first"


async def test_selector_transitions_become_added_and_deleted(
    any_pods: AnyResourceStorage,
) -> None:
    watch = await any_pods.awatch(ListOptions(resource_version="p.0", label_selector="app=web"))
    await any_pods.acreate("a", make_pod("x", labels={"app": "db"}))
    await any_pods.aupdate("a", make_pod("x", labels={"app": "web"}))
    await any_pods.aupdate("a", make_pod("x", labels={"app": "web", "v": "2"}))
    await any_pods.aupdate("a", make_pod("x", labels={"app": "db"}))
    await any_pods.adelete("a", make_pod("x"))
    await any_pods.acreate("a", make_pod("sentinel", labels={"app": "web"}))
    events = await take(watch, 4)
    watch.stop()
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED", "ADDED"]


async def test_send_initial_events_ends_with_annotated_bookmark(
    any_pods: AnyResourceStorage,
) -> None:
    await any_pods.acreate("a", make_pod("x"))
    await any_pods.acreate("b", make_pod("y"))
    opts = ListOptions(
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
    )
    async with await any_pods.awatch(opts) as watch:
        events = await take(watch, 3)
    assert [e.type for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    meta = events[2].object["metadata"]
    assert meta["annotations"] == {INITIAL_EVENTS_END_ANNOTATION: "true"}
    assert meta["resourceVersion"] == "p.2"
    with pytest.raises(errors.InvalidError):  # 422, as kube-apiserver
        await any_pods.awatch(ListOptions(send_initial_events=True, allow_watch_bookmarks=True))


async def test_idle_watch_with_bookmarks_gets_one(storage: AnyStorage) -> None:
    storage.bookmark_interval = 0.01
    pods = storage.resource_storage(PODS)
    await storage.resource_storage(GroupVersionResource("", "v1", "configmaps")).acreate(
        "a", {"metadata": {"name": "c", "namespace": "n"}}
    )
    options = ListOptions(resource_version="p.0", allow_watch_bookmarks=True)
    async with await pods.awatch(options) as w:
        [bookmark] = await take(w, 1)
    assert bookmark.type == "BOOKMARK"
    assert bookmark.object["metadata"]["resourceVersion"] == "p.1"


async def test_json_cluster_versions_resume_per_cluster(any_pods: AnyResourceStorage) -> None:
    await any_pods.acreate("a", make_pod("old", resource_version="5"))
    await any_pods.acreate("a", make_pod("new", resource_version="7"))
    await any_pods.acreate("b", make_pod("other", resource_version="1"))
    watch = await any_pods.awatch(ListOptions(resource_version='{"a": "5"}'))
    await any_pods.acreate("b", make_pod("later", resource_version="2"))
    events = await take(watch, 2)
    watch.stop()
    assert [e.object["metadata"]["name"] for e in events] == ["new", "later"]


async def test_stop_wakes_a_waiting_iterator(any_pods: AnyResourceStorage) -> None:
    watch = await any_pods.awatch(ListOptions(resource_version="p.0"))

    async def drain() -> list[StorageEvent]:
        return [e async for e in watch]

    task = asyncio.create_task(drain())
    await asyncio.sleep(0)
    watch.stop()
    assert await asyncio.wait_for(task, 5) == []


async def test_writes_from_threads_wake_watchers() -> None:
    mem = new_storage(prefix="p", event_window=1000)
    mem.prepare_cluster("a")
    mem.prepare_cluster("b")
    pods = mem.resource_storage(PODS)
    watch = pods.watch(ListOptions(resource_version="p.0"))

    def writer(cluster: str) -> None:
        for i in range(50):
            pods.create(cluster, make_pod(f"{cluster}-{i}"))

    threads = [threading.Thread(target=writer, args=(c,)) for c in ("a", "b")]
    for t in threads:
        t.start()
    events = await take(watch, 100)
    for t in threads:
        t.join()
    watch.stop()
    assert [e.index for e in events] == list(range(1, 101))
    per_cluster = [e.object["metadata"]["name"] for e in events if e.cluster == "a"]
    assert per_cluster == [f"a-{i}" for i in range(50)]


async def test_thousands_of_watchers_share_one_encoding() -> None:
    mem = new_storage(prefix="p", event_window=1000)
    mem.prepare_cluster("a")
    pods = mem.resource_storage(PODS)
    watches = [pods.watch(ListOptions(resource_version="p.0")) for _ in range(2000)]
    for i in range(10):
        pods.create("a", make_pod(f"p{i}"))
    batches = await asyncio.gather(*(w.next_batch() for w in watches))
    for w in watches:
        w.stop()
    assert all(len(batch) == 10 for batch in batches)
    first = batches[0]
    assert all(batch[i] is first[i] for batch in batches for i in range(10)), "events shared"
    assert all(batch[3].line() is first[3].line() for batch in batches)
    assert pods.watcher_count == 0


_writes = st.lists(
    st.tuples(
        st.sampled_from(("create", "update", "delete")),
        st.sampled_from(("a", "b")),
        st.sampled_from(("x", "y", "z")),
        st.integers(min_value=0, max_value=2),  # writer task that performs it
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(_writes, st.data())
def test_every_watch_sees_exactly_the_events_after_its_version(
    writes: list[tuple[str, str, str, int]], data: st.DataObject
) -> None:
    asyncio.run(_watch_scenario(writes, data))


async def _watch_scenario(writes: list[tuple[str, str, str, int]], data: st.DataObject) -> None:
    mem = new_storage(prefix="w", event_window=1000)
    for cluster in ("a", "b", "c"):
        mem.prepare_cluster(cluster)
    pods = mem.resource_storage(PODS)
    log: list[tuple[int, str, str, str]] = []  # (index, type, cluster, name)
    starts: list[int] = [0]

    async def writer(number: int) -> None:
        for i, (op, cluster, name, who) in enumerate(writes):
            if who != number:
                continue
            await asyncio.sleep(0)  # interleave the writer tasks
            obj = make_pod(name, "n", resource_version=str(i))
            try:
                if op == "create":
                    stored = pods.create(cluster, obj)
                elif op == "update":
                    stored = pods.update(cluster, obj)
                else:
                    stored = pods.delete(cluster, obj)
            except (errors.ConflictError, errors.NotFoundError):
                continue
            index = rvs.parse_memory_resource_version(stored["metadata"]["resourceVersion"])[1]
            kind = {"create": "ADDED", "update": "MODIFIED", "delete": "DELETED"}[op]
            log.append((index, kind, cluster, name))
            starts.append(mem.index)

    await asyncio.gather(*(writer(n) for n in range(3)))
    log.sort()
    assert [entry[0] for entry in log] == list(range(1, len(log) + 1)), "indexes are dense"
    for start in data.draw(st.lists(st.sampled_from(starts), min_size=1, max_size=3)):
        expected = [e for e in log if e[0] > start]
        watch = pods.watch(ListOptions(resource_version=rvs.to_list_resource_version("w", start)))
        got: list[tuple[int, str, str, str]] = []
        while len(got) < len(expected):
            async with asyncio.timeout(5):
                event = await watch.__anext__()
            got.append((event.index, event.type, event.cluster, event.object["metadata"]["name"]))
        watch.stop()
        assert got == expected
