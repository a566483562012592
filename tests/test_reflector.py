"""Tests for kubemirror.reflector: Backoff (pure), Reflector edge cases, Poller.

Reflector edge cases run against ``tests.memory_lw``, an in-memory fault-injection
fake (see its docstring): it can expire a continue token on page 2 or corrupt the
3rd event of the 2nd watch exactly. End-to-end behaviour over real HTTP against
the project's API server, through a fault-injecting proxy, is in test_informer.py.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from kubemirror import bulk, errors
from kubemirror.listwatch import ListOptions
from kubemirror.reflector import Backoff, Poller, Reflector, is_initial_events_end
from tests.memory_lw import (
    OUTAGE_STEPS,
    DictStore,
    FaultStep,
    MemoryListerWatcher,
    MemoryServer,
    MemoryStream,
    WatchScript,
    apply_step,
    fault_sequences,
)
from tests.polling import eventually


def fast_backoff() -> Backoff:
    return Backoff(initial=0.001, cap=0.004, rng=random.Random(1))


def make(server: MemoryServer, **kwargs: Any) -> tuple[MemoryListerWatcher, DictStore, Reflector]:
    lw = MemoryListerWatcher(server, streaming=kwargs.pop("streaming", False))
    store = DictStore()
    kwargs.setdefault("backoff", fast_backoff())
    return lw, store, Reflector(lw, store, **kwargs)


def caught_up(server: MemoryServer, store: DictStore, refl: Reflector) -> bool:
    return refl.last_sync_resource_version == str(server.rv) and store.items == server.state()


def test_initial_events_end_detection() -> None:
    ann = {"k8s.io/initial-events-end": "true"}
    end: Any = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5",
                                                           "annotations": ann}}}
    plain: Any = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5"}}}
    added: Any = {"type": "ADDED", "object": {"metadata": {"annotations": ann}}}
    assert is_initial_events_end(end)
    assert not is_initial_events_end(plain)
    assert not is_initial_events_end(added)


# -- listing ----------------------------------------------------------------------------------


async def test_initial_list_is_paginated_at_one_resource_version() -> None:
    server = MemoryServer()
    for i in range(7):
        server.put(f"cm{i}", v=str(i))
    lw, store, refl = make(server, page_size=3)
    async with refl:
        # synced, and the first watch opened (stopping earlier would leave none to check)
        await eventually(lambda: refl.has_synced() and bool(lw.watch_calls))
        # writes after the first page must not leak into the snapshot
        assert store.items == {f"default/cm{i}": server.objects[f"default/cm{i}"] for i in range(7)}
    assert [c.limit for c in lw.list_calls] == [3, 3, 3]
    assert [bool(c.continue_token) for c in lw.list_calls] == [False, True, True]
    assert store.replace_rvs == ["7"]
    assert refl.last_sync_resource_version == "7"
    assert lw.watch_calls[0].resource_version == "7"
    assert lw.watch_calls[0].allow_watch_bookmarks


async def test_expired_continue_token_falls_back_to_one_unpaginated_list() -> None:
    server = MemoryServer()
    for i in range(5):
        server.put(f"cm{i}")
    lw, store, refl = make(server, page_size=2)
    lw.expire_continue = True
    async with refl:
        await eventually(lambda: refl.has_synced())
    assert [(c.limit, bool(c.continue_token)) for c in lw.list_calls] == [
        (2, False), (2, True), (0, False)]
    assert len(store.items) == 5


async def test_list_failures_back_off_and_retry() -> None:
    server = MemoryServer()
    server.put("a")
    lw, store, refl = make(server)
    lw.fail_on_list = 3
    async with refl:
        await eventually(lambda: refl.has_synced())
    assert len(lw.list_calls) == 4
    assert refl.stats.errors == 3
    assert "connection refused" in refl.stats.last_error
    assert store.items == server.state()


# -- watching ---------------------------------------------------------------------------------


async def test_watch_events_add_update_delete_and_bookmarks_only_move_the_rv() -> None:
    server = MemoryServer()
    server.put("a")
    lw, store, refl = make(server)
    async with refl:
        await eventually(lambda: refl.has_synced() and len(lw.streams) == 1)
        server.put("b")
        server.put("a", changed="yes")
        server.remove("b")
        await eventually(lambda: caught_up(server, store, refl))
        calls_before = list(store.calls)
        server.bookmark()
        server.rv += 5  # the bookmark RV may run ahead of any object
        server.bookmark()
        await eventually(lambda: refl.last_sync_resource_version == str(server.rv))
        assert store.calls == calls_before
    assert store.calls == ["replace", "add", "update", "delete"]
    assert refl.stats.bookmarks == 2
    assert refl.stats.events == 3


async def catch_up_through(
    script: WatchScript, *batches: str
) -> tuple[MemoryListerWatcher, Reflector]:
    """Run a reflector whose first watch follows ``script``: write the objects named in the
    i-th of ``batches`` once the i-th watch is open, wait until the store caught up with
    the server, stop."""
    server = MemoryServer()
    lw, store, refl = make(server)
    lw.watch_scripts.append(script)

    def watches_opened(count: int) -> Callable[[], bool]:
        return lambda: len(lw.streams) == count

    async with refl:
        for opened, batch in enumerate(batches, 1):
            await eventually(watches_opened(opened))
            for name in batch:
                server.put(name)
        await eventually(lambda: caught_up(server, store, refl))
    return lw, refl


async def test_watch_that_ends_is_resumed_from_the_last_resource_version() -> None:
    lw, _refl = await catch_up_through(WatchScript([(2, "end")]), "abc")
    assert [c.resource_version for c in lw.watch_calls[:2]] == ["0", "2"]
    assert len(lw.list_calls) == 1


@pytest.mark.parametrize("how", ["gone_on_open", "gone_event"])
async def test_410_relists_and_the_replace_drops_objects_deleted_meanwhile(how: str) -> None:
    server = MemoryServer()
    for name in ("a", "b", "c"):
        server.put(name)
    lw, store, refl = make(server)
    if how == "gone_event":
        lw.watch_scripts.append(WatchScript([(0, "end")]))
        lw.watch_scripts.append(WatchScript([(0, "gone_event")]))
    async with refl:
        await eventually(lambda: refl.has_synced() and len(lw.streams) >= 1)
        # the delete happens while the reflector cannot see it
        lw.gone_on_watch = 1 if how == "gone_on_open" else 0
        lw.streams[0].closed = True
        server.wake()
        server.remove("b")
        server.put("d")
        server.compact()
        await eventually(lambda: caught_up(server, store, refl))
    assert refl.stats.relists == 1
    assert len(lw.list_calls) == 2
    assert "default/b" not in store.items
    assert store.calls.count("replace") == 2


async def test_request_relist_ends_the_watch_and_lists_again() -> None:
    server = MemoryServer()
    for name in ("a", "b", "c"):
        server.put(name)
    lw, store, refl = make(server)
    async with refl:
        await eventually(lambda: caught_up(server, store, refl) and len(lw.streams) == 1)
        del store.items["default/b"]  # the store lost an object (a drift check found it)
        refl.request_relist()
        await eventually(lambda: len(lw.list_calls) == 2 and caught_up(server, store, refl))
        server.put("d")  # run() was not cancelled: it watches again afterwards
        await eventually(lambda: caught_up(server, store, refl))
    assert refl.stats.relists == 1
    assert refl.stats.errors == 0
    assert store.calls.count("replace") == 2
    assert lw.streams[0].closed


async def test_non_410_error_event_backs_off_and_rewatches_from_the_same_rv() -> None:
    lw, refl = await catch_up_through(WatchScript([(1, "error_event")]), "a", "b")
    assert refl.stats.errors == 1
    assert refl.stats.relists == 0
    assert lw.watch_calls[1].resource_version == "1"


async def test_malformed_line_is_counted_and_the_watch_resumes_without_loss() -> None:
    # the fake "loses" nothing: b is re-delivered by the next watch
    lw, refl = await catch_up_through(WatchScript([(1, "malformed")]), "ab")
    assert refl.stats.malformed_events == 1
    assert lw.watch_calls[1].resource_version == "1"
    assert len(lw.list_calls) == 1


async def test_watch_errors_never_tight_loop() -> None:
    """Every failed watch costs one backoff step; the delays grow until the cap."""
    server = MemoryServer()
    delays: list[float] = []

    class Recording(Backoff):
        def next(self) -> float:
            delays.append(super().next())
            return delays[-1]

    lw, _store, refl = make(server, backoff=Recording(0.001, 0.008, jitter=False))
    lw.fail_on_watch = 6
    async with refl:
        await eventually(lambda: len(lw.watch_calls) == 7)
    assert delays[:6] == [0.001, 0.002, 0.004, 0.008, 0.008, 0.008]
    assert refl.stats.errors == 6


async def test_transform_is_applied_before_storing_and_a_failing_one_is_not_fatal() -> None:
    server = MemoryServer()
    server.put("a", secret="x")
    server.put("bad")

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"]["name"] == "bad":
            raise ValueError("cannot transform")
        obj = dict(obj)
        obj.pop("data", None)
        return obj

    lw, store, refl = make(server, transform=strip)
    async with refl:
        await eventually(lambda: refl.has_synced() and len(lw.streams) == 1)
        server.put("c", secret="y")
        await eventually(lambda: "default/c" in store.items)
    assert "data" not in store.items["default/a"]
    assert "data" not in store.items["default/c"]
    assert store.items["default/bad"]["metadata"]["name"] == "bad"
    assert refl.stats.errors == 1


# -- streaming list ---------------------------------------------------------------------------


async def test_streaming_list_replaces_at_the_end_bookmark_then_keeps_watching() -> None:
    server = MemoryServer()
    for name in ("a", "b"):
        server.put(name)
    lw, store, refl = make(server, streaming=True, streaming_list=True)
    async with refl:
        await eventually(lambda: refl.has_synced())
        server.put("c")
        await eventually(lambda: caught_up(server, store, refl))
    assert lw.list_calls == []
    first = lw.watch_calls[0]
    assert first.send_initial_events
    assert first.resource_version_match == "NotOlderThan"
    assert store.calls == ["replace", "add"]
    assert len(lw.watch_calls) == 1


async def test_streaming_list_falls_back_to_list_when_the_server_refuses_it() -> None:
    server = MemoryServer()
    server.put("a")
    lw, store, refl = make(server, streaming=False, streaming_list=True)
    async with refl:
        await eventually(lambda: refl.has_synced())
    assert len(lw.list_calls) == 1
    assert not refl.streaming_list
    assert store.items == server.state()


async def test_streaming_list_cut_before_the_bookmark_is_retried() -> None:
    server = MemoryServer()
    for name in ("a", "b", "c"):
        server.put(name)
    lw, store, refl = make(server, streaming=True, streaming_list=True)
    lw.watch_scripts.append(WatchScript([(2, "transport_error")]))
    async with refl:
        await eventually(lambda: caught_up(server, store, refl))
    assert store.calls == ["replace"]
    assert refl.stats.errors == 1


# -- resync, lifecycle, property --------------------------------------------------------------


async def test_periodic_resync_calls_store_resync() -> None:
    server = MemoryServer()
    _lw, store, refl = make(server, resync_period=0.005)
    async with refl:
        await eventually(lambda: store.resyncs >= 3)


async def test_run_returns_promptly_when_stop_is_set_and_leaves_no_task() -> None:
    server = MemoryServer()
    lw, _store, refl = make(server)
    stop = asyncio.Event()
    task = asyncio.create_task(refl.run(stop))
    await eventually(lambda: len(lw.streams) == 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert task.done()
    assert task.exception() is None


async def test_cancelling_run_cancels_cleanly() -> None:
    server = MemoryServer()
    lw, _store, refl = make(server)
    task = asyncio.create_task(refl.run())
    await eventually(lambda: len(lw.streams) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("streaming", [False, True], ids=["list-then-watch", "streaming-list"])
async def test_a_watch_opened_as_run_is_cancelled_is_closed(streaming: bool) -> None:
    """The cancel lands when the watch call returns, before the task consuming the
    stream has taken a step: that task never runs its body, yet the stream (a
    connection, over HTTP) must be closed, not left to the garbage collector."""
    server = MemoryServer()
    server.put("a")
    lw, _store, refl = make(server, streaming=streaming, streaming_list=streaming)
    opened = lw.watch
    runner: asyncio.Task[None] | None = None

    async def watch_then_cancel(opts: ListOptions) -> MemoryStream:
        stream = await opened(opts)
        if bool(opts.send_initial_events) == streaming and runner is not None:
            runner.cancel()
        return stream

    lw.watch = watch_then_cancel  # type: ignore[method-assign]
    runner = asyncio.create_task(refl.run())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 5)
    assert lw.streams
    assert all(stream.closed for stream in lw.streams)


async def test_freeze_gc_after_sync_freezes_the_mirrored_objects_once() -> None:
    server = MemoryServer()
    for i in range(5):
        server.put(f"cm{i}")
    _lw, _store, refl = make(server, freeze_gc_after_sync=True)
    gc.unfreeze()
    try:
        async with refl:
            await eventually(lambda: refl.has_synced())
            frozen = gc.get_freeze_count()
            assert frozen > 0
            assert gc.isenabled()
    finally:
        gc.unfreeze()


async def test_lists_pause_the_gc_even_when_failing_and_release_memory_after_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    releases: list[bool] = []
    monkeypatch.setattr(bulk, "release_freed_memory", lambda: releases.append(True))
    server = MemoryServer()
    server.put("a")
    lw, _store, refl = make(server)
    states: list[bool] = []
    original = lw.list

    async def spying_list(opts: Any) -> Any:
        states.append(gc.isenabled())
        if len(states) == 1:
            raise errors.TransportError("first page fails")
        return await original(opts)

    lw.list = spying_list  # type: ignore[method-assign]
    async with refl:
        await eventually(lambda: refl.has_synced())
    assert states == [False, False]
    assert gc.isenabled()
    assert len(releases) == 1  # after the list that succeeded


async def test_start_is_idempotent_and_stop_without_start_is_a_no_op() -> None:
    server = MemoryServer()
    lw, _store, refl = make(server)
    await refl.stop()
    task = refl.start()
    assert refl.start() is task
    await eventually(lambda: len(lw.streams) == 1)
    await refl.stop()
    assert task.done()
    assert not task.cancelled()


def test_bad_parameters_are_config_errors() -> None:
    lw = MemoryListerWatcher(MemoryServer())
    with pytest.raises(errors.ConfigError, match="page_size"):
        Reflector(lw, DictStore(), page_size=-1)
    with pytest.raises(errors.ConfigError, match="period"):
        Poller(lambda: asyncio.sleep(0, []), 0, DictStore())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_sequences("compact", "bookmark", "drop", "gone", "malformed", "disconnect",
                       "reconnect"))
@example(OUTAGE_STEPS)
def test_store_converges_to_the_server_state_under_any_fault_sequence(
    steps: list[FaultStep],
) -> None:
    """Writes interleaved with outages, compactions, dropped watches, 410s and corrupt lines."""

    async def scenario() -> None:
        server = MemoryServer()
        lw, store, refl = make(server, page_size=2)
        async with refl:
            await eventually(lambda: refl.has_synced())
            for op, name in steps:
                apply_step(server, lw, op, name)
                await asyncio.sleep(0)
            lw.reconnect()
            await eventually(lambda: caught_up(server, store, refl), what="store == server")

    asyncio.run(scenario())


# -- Poller -----------------------------------------------------------------------------------


async def test_poller_replaces_the_store_every_period_and_survives_errors() -> None:
    results: list[Any] = [
        [{"metadata": {"name": "a", "resourceVersion": "1"}}],
        RuntimeError("api down"),
        [{"metadata": {"name": "b", "resourceVersion": "2"}}],
    ]
    calls = 0

    async def get() -> list[Any]:
        nonlocal calls
        result = results[min(calls, len(results) - 1)]
        calls += 1
        if isinstance(result, Exception):
            raise result
        return list(result)

    store = DictStore()
    poller = Poller(get, 0.002, store)
    async with poller:
        await eventually(lambda: poller.polls >= 2)
    assert poller.errors == 1
    assert list(store.items) == ["b"]
