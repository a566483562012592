"""Tests for kubemirror.informer against the project's API server over real HTTP.

Faults come from ``tests.faultproxy`` between the informer and the server: cut
watches, truncated and corrupted lines, delays, forced 410s and outages long enough
for the server's event window to expire. After every scenario the informer's
indexer equals the server's state, and replaying the handler calls onto a dict
gives the same state (no lost delete, no stale object, no impossible call).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings

from kubemirror import cache, errors, keys
from kubemirror.client import ClientConfig, KubeClient, ListOptions
from kubemirror.informer import (
    MIRROR_IGNORE_FIELDS,
    STORE_COMPACT,
    STORE_DICT,
    PrometheusMetrics,
    SharedInformer,
)
from kubemirror.listwatch import ListWatch
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.reflector import Backoff
from kubemirror.testing import PODS, make_pod
from tests.faultproxy import LineFault, is_continue_list, is_watch
from tests.memory_lw import (
    OUTAGE_STEPS,
    FaultStep,
    MemoryListerWatcher,
    MemoryServer,
    apply_step,
    fault_sequences,
)
from tests.polling import eventually
from tests.proxied_server import Env, create, proxied_env


@pytest_asyncio.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with proxied_env(getattr(request, "param", 100_000)) as made:
        yield made


def fast_informer(env: Env, **kwargs: Any) -> SharedInformer:
    kwargs.setdefault("backoff", Backoff(initial=0.005, cap=0.05))
    kwargs.setdefault("page_size", 7)
    return SharedInformer(ListWatch(env.client, PODS, "default"), **kwargs)


class Replay:
    """Applies handler calls to a dict, failing on any call impossible for a consistent stream."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.problems: list[str] = []
        self.calls = 0

    def on_add(self, obj: Any) -> None:
        self.calls += 1
        key = keys.meta_namespace_key(obj)
        if key in self.state:
            self.problems.append(f"add of existing {key}")
        self.state[key] = obj

    def on_update(self, old: Any, new: Any) -> None:
        self.calls += 1
        key = keys.meta_namespace_key(new)
        last = self.state.get(key)
        # A compact store hands out a fresh partial view of the old object: equal, not same.
        if last is not old and not (isinstance(old, cache.RawObject) and last == old):
            self.problems.append(f"update of {key} with an old object that is not the last one")
        self.state[key] = new

    def on_delete(self, obj: Any) -> None:
        self.calls += 1
        key = keys.meta_namespace_key(obj)
        if key not in self.state:
            self.problems.append(f"delete of unknown {key}")
        self.state.pop(key, None)

    def versions(self) -> dict[str, str]:
        return {k: v["metadata"]["resourceVersion"] for k, v in self.state.items()}


async def server_versions(env: Env) -> dict[str, str]:
    page = await env.writer.list(PODS, "default", ListOptions())
    return {keys.meta_namespace_key(o): o["metadata"]["resourceVersion"] for o in page.items}


def indexer_versions(informer: SharedInformer) -> dict[str, str]:
    return {keys.meta_namespace_key(o): o["metadata"]["resourceVersion"]
            for o in informer.get_indexer().list()}


async def converged(env: Env, informer: SharedInformer, replay: Replay) -> None:
    expected = await server_versions(env)
    await eventually(lambda: indexer_versions(informer) == expected
                     and replay.versions() == expected, within=15,
                     what="indexer and handler replay equal the server state")
    assert replay.problems == []


async def touch(env: Env, name: str, value: str) -> None:
    obj = await env.writer.get(PODS, name, "default")
    obj["metadata"].setdefault("labels", {})["touched"] = value
    await env.writer.replace(PODS, obj, "default")


async def churn(env: Env, round_: int) -> None:
    """Creates, updates and deletes a few pods."""
    await create(env, f"new-{round_}-a", f"new-{round_}-b")
    await touch(env, f"new-{round_}-a", str(round_))
    await env.writer.delete(PODS, f"new-{round_}-b", "default")


# -- fault scenarios --------------------------------------------------------------------------


async def drop_mid_stream(env: Env, informer: SharedInformer) -> None:
    for r in range(3):
        env.proxy.watch_faults.append([LineFault(2, "drop")])
        env.proxy.drop_watches()
        await churn(env, r)


async def truncate_line(env: Env, informer: SharedInformer) -> None:
    env.proxy.watch_faults.append([LineFault(1, "truncate")])
    env.proxy.drop_watches()
    await churn(env, 0)
    await churn(env, 1)


async def corrupt_lines(env: Env, informer: SharedInformer) -> None:
    env.proxy.watch_faults.append([LineFault(0, "corrupt")])
    env.proxy.watch_faults.append([LineFault(1, "corrupt")])
    env.proxy.drop_watches()
    await churn(env, 0)
    await churn(env, 1)
    await eventually(lambda: informer.reflector.stats.malformed_events >= 1)


async def delayed_lines(env: Env, informer: SharedInformer) -> None:
    env.proxy.watch_faults.append([LineFault(i, "delay", 0.02) for i in range(4)])
    env.proxy.drop_watches()
    await churn(env, 0)


async def forced_410_on_watch(env: Env, informer: SharedInformer) -> None:
    env.proxy.force(is_watch, 410)
    env.proxy.drop_watches()
    await churn(env, 0)
    await eventually(lambda: informer.reflector.stats.relists >= 1)
    await churn(env, 1)


async def outage_past_the_event_window(env: Env, informer: SharedInformer) -> None:
    env.proxy.outage()
    await churn(env, 0)
    for i in range(5):
        await env.writer.delete(PODS, f"pod-{i}", "default")
    await churn(env, 1)
    env.proxy.restore()
    await eventually(lambda: informer.reflector.stats.relists >= 1)


async def expired_continue_token(env: Env, informer: SharedInformer) -> None:
    env.proxy.force(is_continue_list, 410)
    env.proxy.force(is_watch, 410)
    env.proxy.drop_watches()
    await churn(env, 0)
    await eventually(lambda: informer.reflector.stats.relists >= 1)


Scenario = Callable[[Env, SharedInformer], Awaitable[None]]
SCENARIOS: list[Scenario] = [drop_mid_stream, truncate_line, corrupt_lines, delayed_lines,
                             forced_410_on_watch, outage_past_the_event_window,
                             expired_continue_token]


@pytest.mark.parametrize("env", [10], indirect=True, ids=["window-10"])
@pytest.mark.parametrize("streaming", [False, True], ids=["list", "streaming-list"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
@pytest.mark.parametrize("store", [STORE_DICT, STORE_COMPACT])
async def test_informer_converges_after_faults(env: Env, scenario: Scenario,
                                               streaming: bool, store: str) -> None:
    await create(env, *(f"pod-{i}" for i in range(20)))
    replay = Replay()
    informer = fast_informer(env, streaming_list=streaming, store=store)
    informer.add_event_handler(replay)
    async with informer:
        assert await informer.wait_for_sync(10)
        await converged(env, informer, replay)
        await eventually(lambda: env.proxy.open_watches == 1, what="the informer is watching")
        await scenario(env, informer)
        await churn(env, 99)
        await converged(env, informer, replay)
    assert informer.reflector.streaming_list == streaming  # the server streams lists
    if scenario is expired_continue_token and not streaming:
        assert any("continue=" in r for r in env.proxy.stats.requests)


# -- handlers ---------------------------------------------------------------------------------


async def test_late_handler_first_receives_the_current_contents(env: Env) -> None:
    await create(env, "a", "b", "c")
    informer = fast_informer(env)
    async with informer:
        assert await informer.wait_for_sync(10)
        late = Replay()
        reg = informer.add_event_handler(late)
        await eventually(lambda: reg.has_synced())
        assert sorted(late.state) == ["default/a", "default/b", "default/c"]
        await create(env, "d")
        await eventually(lambda: "default/d" in late.state)


async def test_removed_handler_receives_nothing_more(env: Env) -> None:
    kept, removed = Replay(), Replay()
    informer = fast_informer(env)
    informer.add_event_handler(kept)
    reg = informer.add_event_handler(removed)
    async with informer:
        await create(env, "a")
        await eventually(lambda: len(removed.state) == 1)
        await informer.remove_event_handler(reg)
        await create(env, "b")
        await eventually(lambda: len(kept.state) == 2)
    assert list(removed.state) == ["default/a"]


async def test_poller_mirrors_an_api_it_polls(env: Env) -> None:
    """``Poller`` over a real LIST call, replacing an Indexer's content each period."""
    from kubemirror.cache import Indexer
    from kubemirror.reflector import Poller

    await create(env, "a", "b")

    async def get() -> list[Any]:
        return list((await env.writer.list(PODS, "default", ListOptions())).items)

    store = Indexer()
    async with Poller(get, 0.01, store) as poller:
        await eventually(lambda: len(store) == 2)
        await env.writer.delete(PODS, "a", "default")
        await eventually(lambda: store.list_keys() == ["default/b"])
    assert poller.errors == 0


async def test_raising_handler_is_logged_and_others_still_receive(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    good = Replay()

    def bad(obj: Any) -> None:
        raise ValueError("handler bug")

    informer = fast_informer(env)
    bad_reg = informer.add_event_handler(on_add=bad)
    informer.add_event_handler(good)
    with caplog.at_level(logging.ERROR, logger="kubemirror.informer"):
        async with informer:
            await create(env, "x", "y")
            await eventually(lambda: len(good.state) == 2)
            await eventually(lambda: bad_reg.errors == 2)
    assert any("default/x" in r.getMessage() and "bad" in r.getMessage()
               for r in caplog.records)


async def test_slow_async_handler_does_not_block_the_pop_loop_or_other_handlers(
    env: Env,
) -> None:
    release = asyncio.Event()
    slow_seen: list[str] = []

    async def slow(obj: Any) -> None:
        slow_seen.append(obj["metadata"]["name"])
        await release.wait()

    fast = Replay()
    informer = fast_informer(env)
    slow_reg = informer.add_event_handler(on_add=slow)
    informer.add_event_handler(fast)
    async with informer:
        assert await informer.wait_for_sync(10)
        await create(env, *(f"p{i}" for i in range(10)))
        await eventually(lambda: len(fast.state) == 10)
        assert len(informer.get_indexer()) == 10
        assert slow_seen == ["p0"]
        assert slow_reg.pending == 9
        release.set()
        await eventually(lambda: len(slow_seen) == 10)


async def test_plain_handler_sees_each_watch_event_before_the_next_is_applied(
    env: Env,
) -> None:
    """Watch events reach a plain function at once (inline), so the stored object is
    still the one it is handed, however many events share a chunk; an async handler
    keeps its own queue and sees them later, in the same order."""
    await create(env, "hot")
    seen: list[tuple[str, bool]] = []
    async_seen: list[str] = []

    def on_update(old: Any, new: Any) -> None:
        stored = informer.get_indexer().get(new)
        seen.append((new["metadata"]["labels"]["n"], stored is new))

    async def on_update_async(old: Any, new: Any) -> None:
        async_seen.append(new["metadata"]["labels"]["n"])

    informer = fast_informer(env)
    informer.add_event_handler(on_update=on_update)
    informer.add_event_handler(on_update=on_update_async)
    async with informer:
        assert await informer.wait_for_sync(10)
        storage = env.server.storage
        assert isinstance(storage, MemoryStorage)
        pods = storage.resource_storage(PODS)
        for n in range(40):  # one burst, no await between: the server sends it in few chunks
            pods.upsert("default", make_pod("hot", labels={"n": str(n)}))
        await eventually(lambda: len(seen) == 40 and len(async_seen) == 40)
    assert [n for n, _ in seen] == [str(n) for n in range(40)]
    assert all(current for _, current in seen)
    assert async_seen == [str(n) for n in range(40)]


async def test_plain_handler_returning_an_awaitable_is_awaited(env: Env) -> None:
    await create(env, "a")
    done: list[str] = []

    async def finish(name: str) -> None:
        await asyncio.sleep(0)
        done.append(name)

    informer = fast_informer(env)
    reg = informer.add_event_handler(on_update=lambda old, new: finish(new["metadata"]["name"]))
    async with informer:
        assert await informer.wait_for_sync(10)
        await touch(env, "a", "1")
        await eventually(lambda: done == ["a"])
        await eventually(lambda: reg.pending == 0)
    assert reg.errors == 0


async def test_transform_strips_fields_before_storing(env: Env) -> None:
    await create(env, "a")

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"].pop("managedFields", None)
        return obj

    informer = fast_informer(env, transform=strip)
    async with informer:
        assert await informer.wait_for_sync(10)
        await create(env, "b")
        await eventually(lambda: len(informer.get_indexer()) == 2)
    for obj in informer.get_indexer().list():
        assert "managedFields" not in obj["metadata"]


@pytest.mark.parametrize("store", [STORE_DICT, STORE_COMPACT])
async def test_ignore_fields_preset_strips_managed_fields(env: Env, store: str) -> None:
    await create(env, "a")
    informer = fast_informer(env, store=store, ignore_fields=MIRROR_IGNORE_FIELDS)
    async with informer:
        assert await informer.wait_for_sync(10)
        await create(env, "b")
        await eventually(lambda: len(informer.get_indexer()) == 2)
    server = await env.writer.get(PODS, "a", "default")
    assert "managedFields" in server["metadata"]
    for obj in informer.get_indexer().list():
        assert "managedFields" not in obj["metadata"]
        assert obj["spec"] == server["spec"]


@pytest.mark.parametrize(("store", "stripped"), [(STORE_DICT, False), (STORE_COMPACT, True)],
                         ids=["dict-keeps-everything", "compact-strips-managed-fields"])
async def test_default_ignore_fields_depend_on_the_store_and_are_logged(
    env: Env, store: str, stripped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    await create(env, "a")
    informer = fast_informer(env, store=store)
    with caplog.at_level(logging.INFO, logger="kubemirror.informer"):
        async with informer:
            assert await informer.wait_for_sync(10)
    obj = informer.get_indexer().get_by_key("default/a")
    assert obj is not None
    assert ("managedFields" in obj["metadata"]) is not stripped
    assert ("not storing metadata.managedFields" in caplog.text) is stripped


async def test_compact_store_keeps_bytes_indexes_views_and_hands_out_raw_objects(
    env: Env,
) -> None:
    await create(env, "a", "b")
    added: list[Any] = []
    informer = fast_informer(env, store=STORE_COMPACT, view_paths=["status.phase"],
                             indexers={"phase": lambda o: [o["status"]["phase"]]},
                             ignore_fields=())  # every byte kept
    informer.add_event_handler(on_add=added.append)
    async with informer:
        assert await informer.wait_for_sync(10)
        await create(env, "c")
        await eventually(lambda: len(added) == 3)
        indexer = informer.get_indexer()
        assert isinstance(indexer, cache.CompactIndexer)
        assert sorted(indexer.index_keys("phase", "Running")) == [
            "default/a", "default/b", "default/c"]
        for obj in added:
            assert isinstance(obj, cache.RawObject)
            assert "spec" not in obj  # the partial view
            assert obj.decode() == indexer.get_by_key(keys.meta_namespace_key(obj))
        server = await env.writer.get(PODS, "c", "default")
        assert indexer.get_by_key("default/c") == server


def test_bad_store_options_are_config_errors(env: Env) -> None:
    with pytest.raises(errors.ConfigError, match="store"):
        fast_informer(env, store="lmdb")
    with pytest.raises(errors.ConfigError, match=r"spec\.nodeName"):
        fast_informer(env, store=STORE_COMPACT, ignore_fields=["spec.nodeName"])
    with pytest.raises(errors.ConfigError, match="transform"):
        fast_informer(env, store=STORE_COMPACT, transform=lambda o: o)


async def test_resync_period_redelivers_objects_as_updates(env: Env) -> None:
    await create(env, "a")
    updates: list[tuple[Any, Any]] = []
    informer = fast_informer(env, resync_period=0.05)
    informer.add_event_handler(on_update=lambda old, new: updates.append((old, new)))
    async with informer:
        await eventually(lambda: len(updates) >= 2)
    assert all(old is new for old, new in updates)


async def test_wait_for_sync_times_out_while_the_server_is_unreachable(env: Env) -> None:
    env.proxy.outage()
    informer = fast_informer(env)
    async with informer:
        assert not await informer.wait_for_sync(0.2)
        assert not informer.has_synced()
        env.proxy.restore()
        assert await informer.wait_for_sync(10)


async def test_indexers_and_prometheus_metrics(env: Env) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    await create(env, "a", "b")
    by_phase = {"phase": lambda o: [o.get("status", {}).get("phase", "")]}
    informer = fast_informer(env, indexers=by_phase, metrics=PrometheusMetrics(registry),
                             name="pods")

    def failing(obj: Any) -> None:
        raise RuntimeError("counted")

    failing_reg = informer.add_event_handler(on_add=failing)
    async with informer:
        assert await informer.wait_for_sync(10)
        await create(env, "c")
        await eventually(lambda: len(informer.get_indexer()) == 3)
        assert len(informer.get_indexer().by_index("phase", "Running")) == 3
        await eventually(lambda: (registry.get_sample_value(
            "kubemirror_events_total", {"resource": "pods"}) or 0) >= 1)
        await eventually(lambda: failing_reg.errors == 3)
    assert registry.get_sample_value("kubemirror_store_size", {"resource": "pods"}) >= 2
    assert registry.get_sample_value("kubemirror_errors_total", {"resource": "pods"}) == 3
    assert registry.get_sample_value("kubemirror_lists_total", {"resource": "pods"}) == 1


async def test_start_in_thread_serves_plain_scripts(env: Env) -> None:
    """The sync facade runs the informer in its own thread and loop (own client too)."""
    await create(env, "a", "b")
    client = KubeClient(ClientConfig(env.server.url))
    informer = SharedInformer(ListWatch(client, PODS, "default"))
    seen: list[str] = []
    lock = threading.Lock()

    def run_script() -> None:
        with informer.start_in_thread(closing=[client]) as handle:
            assert handle.wait_for_sync(10)
            assert len(handle.indexer) == 2

            def on_add(obj: Any) -> None:
                with lock:
                    seen.append(obj["metadata"]["name"])

            handle.add_event_handler(on_add=on_add)
        assert handle.error is None

    await asyncio.to_thread(run_script)
    assert sorted(seen) == ["a", "b"]


# -- property: handler calls replay to the server state under any fault sequence ---------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_sequences("compact", "drop", "malformed", "disconnect", "reconnect", "resync"))
@example(OUTAGE_STEPS)
def test_handler_replay_equals_the_source_under_any_fault_sequence(
    steps: list[FaultStep],
) -> None:
    """In-memory fault-injection fake (tests.memory_lw) for exact fault placement; the HTTP
    scenarios above cover the same property against the real server."""

    async def scenario() -> None:
        server = MemoryServer()
        server.put("seed")
        lw = MemoryListerWatcher(server)
        replay = Replay()
        informer = SharedInformer(lw, backoff=Backoff(initial=0.001, cap=0.004), page_size=2,
                                  name="memory")
        informer.add_event_handler(replay)
        async with informer:
            assert await informer.wait_for_sync(5)
            for op, name in steps:
                if op == "resync":
                    informer.reflector.store.resync()
                else:
                    apply_step(server, lw, op, name)
                await asyncio.sleep(0)
            lw.reconnect()
            expected = {k: v["metadata"]["resourceVersion"] for k, v in server.objects.items()}
            await eventually(lambda: indexer_versions(informer) == expected
                             and replay.versions() == expected, what="converged")
        assert replay.problems == []

    asyncio.run(scenario())


# -- the mutation detector --------------------------------------------------------------------


@pytest.mark.mutates_stored_objects
@pytest.mark.parametrize("kind", ["on_add", "on_update"])
async def test_a_handler_mutating_a_received_pod_raises_mutation_error(
    env: Env, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    await create(env, "web-0")
    calls: list[str] = []

    async def mutate(*objs: Any) -> None:
        calls.append(kind)
        objs[-1]["metadata"].setdefault("labels", {})["patched"] = "in-place"

    informer = fast_informer(env, mutation_detector=True)
    registration = informer.add_event_handler(**{kind: mutate})
    async with informer:
        assert await informer.wait_for_sync(10)
        if kind == "on_update":
            await touch(env, "web-0", "1")
        await eventually(lambda: registration.errors == 1, what="the handler failed")
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    error = failures[0].exc_info[1] if failures and failures[0].exc_info else None
    assert isinstance(error, errors.MutationError)
    assert error.key == "default/web-0"
    assert error.path.startswith("metadata.labels")
    assert f"mutate.{kind}" in error.where
    assert calls == [kind]


async def test_the_detector_is_off_by_default_and_costs_no_wrapper(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEMIRROR_MUTATION_DETECTOR", raising=False)
    informer = fast_informer(env)
    assert type(informer.get_indexer()) is cache.Indexer
    assert informer.mutation_detector is None

    def on_add(obj: Any) -> None:
        pass

    assert informer.add_event_handler(on_add=on_add).callbacks[0] is on_add


@pytest.mark.mutates_stored_objects
async def test_a_strict_informer_read_raises_after_a_mutation(env: Env) -> None:
    await create(env, "web-0")
    informer = fast_informer(env, mutation_detector=cache.MutationDetectorOptions(
        check_every=0, strict=True))
    async with informer:
        assert await informer.wait_for_sync(10)
        pod = informer.get_indexer().get_by_key("default/web-0")
        assert pod is not None
        pod["metadata"]["labels"] = {"changed": "yes"}
        with pytest.raises(errors.MutationError, match=r"metadata\.labels"):
            informer.get_indexer().get_by_key("default/web-0")
