"""CachedStore: fetch counts, LRU and TTL on a fake clock, single flight, errors, sync access.

``fetch`` is the store's seam to the API; here it reads a dict and counts calls
(and, where a test says so, fails or waits on an event to stage concurrency).
The real API path is covered by tests/test_watcher.py.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kubemirror import errors
from kubemirror.stores import CachedStore
from kubemirror.types import Obj
from tests.objects import FakeClock, obj


class Api:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def fetch(self, namespace: str, name: str) -> Obj | None:
        self.calls[(namespace, name)] += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.objects.get((namespace, name))

    def put(self, store: CachedStore, o: Obj, keys: list[str]) -> None:
        self.objects[(o["metadata"].get("namespace", ""), o["metadata"]["name"])] = o
        store.update(o, keys)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(
    api: Api,
    clock: FakeClock,
    *,
    ttl: float = 10.0,
    max_size: int = 256,
    ignore_fields: tuple[str, ...] | list[str] = (),
    loop: asyncio.AbstractEventLoop | None = None,
) -> CachedStore:
    return CachedStore(
        1, api.fetch, ttl=ttl, max_size=max_size, clock=clock, ignore_fields=ignore_fields,
        loop=loop,
    )


async def test_hit_makes_no_fetch_and_ttl_expiry_makes_one(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    assert store.cache_size == 0  # writes keep references only
    assert [o["metadata"]["name"] for o in await store.aget("k")] == ["a"]
    assert api.total == 1
    assert store.cache_size == 1
    clock.advance(9.9)
    await store.aget("k")
    assert api.total == 1  # hit, and the TTL restarts from here
    clock.advance(9.9)
    await store.aget("k")
    assert api.total == 1
    clock.advance(10.0)
    await store.aget("k")
    assert api.total == 2


async def test_lru_bound_evicts_least_recently_used(api: Api, clock: FakeClock) -> None:
    store = make(api, clock, max_size=2)
    for name in "abc":
        api.put(store, obj(name, "default"), [name])
    await store.aget("a")
    await store.aget("b")
    await store.aget("a")  # a is now most recent
    await store.aget("c")  # evicts b
    assert store.cache_size == 2
    before = api.total
    await store.aget("a")
    await store.aget("c")
    assert api.total == before
    await store.aget("b")
    assert api.total == before + 1


async def test_evict_expired(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    for name in "abc":
        api.put(store, obj(name, "default"), ["k"])
    await store.aget("k")
    clock.advance(5)
    api.put(store, obj("d", "default"), ["k2"])
    await store.aget("k2")
    clock.advance(5)
    assert store.evict_expired() == 3
    assert store.cache_size == 1
    assert store.evict_expired() == 0


async def test_update_with_new_version_invalidates_same_version_keeps(
    api: Api, clock: FakeClock
) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default", rv="1", data={"v": 1}), ["k"])
    await store.aget("k")
    api.put(store, obj("a", "default", rv="1", data={"v": 1}), ["k"])  # a resync: same version
    await store.aget("k")
    assert api.total == 1
    api.put(store, obj("a", "default", rv="2", data={"v": 2}), ["k"])
    assert store.cache_size == 0
    assert (await store.aget("k"))[0]["data"] == {"v": 2}
    assert api.total == 2


async def test_delete_invalidates(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    api.put(store, obj("b", "default"), ["j"])
    await store.aget("k")
    await store.aget("j")
    assert store.delete_by_name("default", "a")
    assert store.delete("j") == 1
    assert store.cache_size == 0
    assert await store.aget("k") == ()
    store.clear()
    assert store.size == 0


async def test_fetch_error_surfaces_and_never_poisons(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    api.fail = ConnectionError("boom")
    with pytest.raises(errors.FetchError) as info:
        await store.aget("k")
    assert isinstance(info.value, errors.StoreError)
    assert (info.value.namespace, info.value.name) == ("default", "a")
    assert info.value.keys == ("k",)
    assert isinstance(info.value.cause, ConnectionError)
    assert store.cache_size == 0
    api.fail = None
    assert len(await store.aget("k")) == 1
    assert api.total == 2


async def test_object_gone_from_api_is_left_out(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    api.put(store, obj("b", "default"), ["k"])
    del api.objects[("default", "a")]  # deleted ahead of the watch event
    assert [o["metadata"]["name"] for o in await store.aget("k")] == ["b"]
    assert store.cache_size == 1
    api.fail = errors.NotFoundError({"code": 404, "reason": "NotFound"})
    store.evict_expired()
    clock.advance(100)
    assert await store.aget("k") == ()


async def test_concurrent_misses_fetch_once(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    api.gate = asyncio.Event()
    readers = [asyncio.create_task(store.aget("k")) for _ in range(5)]
    await api.entered.wait()  # every reader was scheduled before the fetch task ran
    api.gate.set()
    results = await asyncio.gather(*readers)
    assert api.total == 1
    assert all(r == results[0] for r in results)


async def test_cancelled_reader_does_not_cancel_the_shared_fetch(
    api: Api, clock: FakeClock
) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    api.gate = asyncio.Event()
    first = asyncio.create_task(store.aget("k"))
    second = asyncio.create_task(store.aget("k"))
    await api.entered.wait()
    first.cancel()
    api.gate.set()
    assert len(await second) == 1
    assert first.cancelled()
    assert api.total == 1
    assert store.cache_size == 1


async def test_update_during_fetch_makes_result_uncacheable(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default", rv="1"), ["k"])
    api.gate = asyncio.Event()
    reader = asyncio.create_task(store.aget("k"))
    await api.entered.wait()
    store.update(obj("a", "default", rv="2"), ["k"])  # the fetch in flight may return version 1
    api.gate.set()
    await reader
    assert store.cache_size == 0
    api.gate = None
    await store.aget("k")
    assert api.total == 2


async def test_ignore_fields_applied_to_fetched_objects(api: Api, clock: FakeClock) -> None:
    store = make(api, clock, ignore_fields=["metadata.managedFields"])
    o = obj("a", "default")
    o["metadata"]["managedFields"] = [{"manager": "m"}]
    api.put(store, o, ["k"])
    (got,) = await store.aget("k")
    assert "managedFields" not in got["metadata"]
    assert o["metadata"]["managedFields"] == [{"manager": "m"}]


async def test_get_by_name(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    got = await store.aget_by_name("default", "a")
    assert got is not None
    assert got["metadata"]["name"] == "a"
    assert await store.aget_by_name("default", "zz") is None
    assert store.get_by_name("default", "a") is got  # a hit needs no loop


@pytest.mark.parametrize(
    ("ttl", "max_size", "field"),
    [(0.0, 10, "cache_ttl"), (1.0, 0, "max_size")],
    ids=["ttl", "max_size"],
)
def test_bad_settings(ttl: float, max_size: int, field: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        CachedStore(1, Api().fetch, ttl=ttl, max_size=max_size)
    assert info.value.field == field


def test_sync_get_without_loop_serves_nothing_but_hits(api: Api, clock: FakeClock) -> None:
    store = make(api, clock)
    api.put(store, obj("a", "default"), ["k"])
    with pytest.raises(errors.StoreError, match="no event loop"):
        store.get("k")
    assert store.get("missing") == ()


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(_drain(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


async def _drain() -> None:
    """Let tasks a test left behind (a timed-out fetch) finish before the loop closes."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current]
    if pending:
        await asyncio.wait(pending, timeout=5)


def test_sync_get_from_another_thread_uses_the_bound_loop(
    api: Api, clock: FakeClock, loop_thread: asyncio.AbstractEventLoop
) -> None:
    store = make(api, clock, loop=loop_thread)
    api.put(store, obj("a", "default"), ["k"])
    api.put(store, obj("b", "default"), ["k"])
    assert [o["metadata"]["name"] for o in store.get("k", timeout=10)] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.list(timeout=10)] == ["a", "b"]
    assert api.total == 2
    got = store.get_by_name("default", "b", copy=True)
    assert isinstance(got, dict)


def test_sync_get_times_out(
    api: Api, clock: FakeClock, loop_thread: asyncio.AbstractEventLoop
) -> None:
    store = make(api, clock, loop=loop_thread)
    api.put(store, obj("a", "default"), ["k"])
    gate = asyncio.run_coroutine_threadsafe(_make_event(), loop_thread).result(5)
    api.gate = gate
    with pytest.raises(errors.StoreError, match="timed out"):
        store.get("k", timeout=0.05)
    loop_thread.call_soon_threadsafe(gate.set)


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


async def test_sync_get_on_the_loop_thread_refuses_to_deadlock(
    api: Api, clock: FakeClock
) -> None:
    store = make(api, clock, loop=asyncio.get_running_loop())
    api.put(store, obj("a", "default"), ["k"])
    with pytest.raises(errors.StoreError, match="deadlock"):
        store.get("k")
    await store.aget("k")
    assert len(store.get("k")) == 1  # a hit is fine anywhere


NAMES = st.sampled_from("abcdef")


class CachedStoreModel(RuleBasedStateMachine):
    """LRU + TTL against a model OrderedDict on a fake clock: fetch counts must match."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.api = Api()
        self.clock = FakeClock()
        self.store = CachedStore(1, self.api.fetch, ttl=5.0, max_size=3, clock=self.clock)
        self.model: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.versions: dict[str, int] = {}
        self.expected_fetches = 0

    def teardown(self) -> None:
        self.loop.close()

    @rule(name=NAMES, new_version=st.booleans())
    def write(self, name: str, new_version: bool) -> None:
        old = self.versions.get(name)
        version = (old or 0) + (1 if new_version or old is None else 0)
        self.versions[name] = version
        self.api.put(self.store, obj(name, "default", rv=str(version)), [name])
        if old != version:
            self.model.pop(name, None)

    @precondition(lambda self: bool(self.versions))
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.versions)))
        got = self.loop.run_until_complete(self.store.aget(name))
        assert [o["metadata"]["resourceVersion"] for o in got] == [str(self.versions[name])]
        now = self.clock.now()
        if name in self.model and self.model[name] > now:
            self.model.move_to_end(name)
        else:
            self.model.pop(name, None)
            self.expected_fetches += 1
        self.model[name] = now + 5.0
        while len(self.model) > 3:
            self.model.popitem(last=False)

    @precondition(lambda self: bool(self.versions))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.versions)))
        self.store.delete_by_name("default", name)
        del self.versions[name]
        self.model.pop(name, None)

    @rule(seconds=st.sampled_from([0.5, 2.0, 4.99, 5.0, 7.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def evict(self) -> None:
        now = self.clock.now()
        expired = [n for n, t in self.model.items() if t <= now]
        assert self.store.evict_expired() == len(expired)
        for n in expired:
            del self.model[n]

    @invariant()
    def counts_match(self) -> None:
        assert self.api.total == self.expected_fetches
        assert self.store.cache_size == len(self.model)
        assert self.store.size == len(self.versions)


TestCachedStoreModel = CachedStoreModel.TestCase
TestCachedStoreModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
