"""RestartableWatchStore and WatchStoreManager on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from prometheus_client import CollectorRegistry, Gauge

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import sync_store, watch_store, watch_store_manager

from .conftest import Harness, Recorder, eventually


class Node:
    """A JSON key: rejects values that are not JSON objects."""

    def __init__(self) -> None:
        self.name = ""
        self.data: dict[str, object] = {}

    def get_key_name(self) -> str:
        return self.name

    def marshal(self) -> bytes:
        return json.dumps(self.data).encode()

    def unmarshal(self, key: str, data: bytes) -> None:
        decoded = json.loads(data)
        if not isinstance(decoded, dict):
            raise ValueError("not an object")
        self.name, self.data = key, decoded


def node_creator() -> key_mod.Key:
    return Node()


class Watching:
    """Runs ``store.watch`` in a task until ``stop``."""

    def __init__(self, store: watch_store.RestartableWatchStore, b: backend_mod.Backend,
                 prefix: str) -> None:
        self.task = asyncio.get_running_loop().create_task(store.watch(b, prefix))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_watch_reports_list_then_changes(kv: Harness) -> None:
    writer = kv.admin
    await writer.update("nodes/a", b'{"ip": 1}')
    await writer.update("nodes/b", b'{"ip": 2}')
    await writer.update("nodesx/sibling", b"{}")
    rec = Recorder()
    synced: list[int] = []
    registry = CollectorRegistry()
    gauge = Gauge("entries", "kvstore entries", registry=registry)
    store = watch_store.RestartableWatchStore(
        "c1", node_creator, rec, on_sync=[lambda: synced.append(len(rec.state))],
        entries_gauge=gauge,
    )
    watching = Watching(store, kv.new_backend(), "nodes")  # trailing "/" added
    try:
        await eventually(lambda: store.synced)
        assert synced == [2]
        assert sorted(rec.updates()) == ["a", "b"]
        assert registry.get_sample_value("entries") == 2
        await writer.update("nodes/c", b'{"ip": 3}')
        await writer.delete("nodes/a")
        await eventually(lambda: rec.deletes() == ["a"] and "c" in rec.state)
        assert store.num_entries() == 2
        assert registry.get_sample_value("entries") == 2
        assert set(store.keys()) == {"b", "c"}
        with pytest.raises(errors.KVStoreStateError):
            await store.watch(kv.new_backend(), "other")
        with pytest.raises(errors.KVStoreStateError):
            await store.drain()
    finally:
        await watching.stop()
    assert not store.watching
    assert not store.synced


async def test_restart_emits_deletions_for_keys_gone_meanwhile(kv: Harness) -> None:
    writer = kv.admin
    for name in "abcd":
        await writer.update(f"r/{name}", b'{"v": 0}')
    rec = Recorder()
    synced: list[str] = []
    store = watch_store.RestartableWatchStore(
        "c1", node_creator, rec, on_sync=[lambda: synced.append("once")]
    )
    first = Watching(store, kv.new_backend(), "r/")
    await eventually(lambda: store.synced)
    await first.stop()
    # While nobody watches: two keys vanish, one changes, one appears.
    await writer.delete("r/a")
    await writer.delete("r/b")
    await writer.update("r/c", b'{"v": 1}')
    await writer.update("r/e", b'{"v": 1}')
    assert rec.deletes() == []
    second = Watching(store, kv.new_backend(), "r/")
    try:
        await eventually(lambda: store.synced)
        assert sorted(rec.deletes()) == ["a", "b"]
        assert rec.state == {"c": b'{"v": 1}', "d": b'{"v": 0}', "e": b'{"v": 1}'}
        assert store.num_entries() == 3
        assert synced == ["once"]  # on-sync callbacks run after the first listing only
    finally:
        await second.stop()


async def test_drain_reports_every_key_deleted(kv: Harness) -> None:
    await kv.admin.update("d/a", b"{}")
    await kv.admin.update("d/b", b"{}")
    rec = Recorder()
    store = watch_store.RestartableWatchStore("c1", node_creator, rec)
    watching = Watching(store, kv.new_backend(), "d")
    await eventually(lambda: store.synced)
    await watching.stop()
    await store.drain()
    assert sorted(rec.deletes()) == ["a", "b"]
    assert store.num_entries() == 0


async def test_bad_values_and_failing_observers_do_not_stop_the_watch(
    kv: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    class Flaky:
        async def on_update(self, k: key_mod.Key) -> None:
            await asyncio.sleep(0)
            if k.get_key_name() == "boom":
                raise RuntimeError("observer bug")
            seen.append(k.get_key_name())

        def on_delete(self, k: key_mod.NamedKey) -> None:
            seen.append("-" + k.get_key_name())

    await kv.admin.update("f/good", b"{}")
    await kv.admin.update("f/bad", b"[not json")
    store = watch_store.RestartableWatchStore("c1", node_creator, Flaky())
    watching = Watching(store, kv.new_backend(), "f")
    try:
        await eventually(lambda: store.synced)
        await kv.admin.update("f/boom", b"{}")
        await kv.admin.update("f/bad", b"[]")  # valid JSON, but rejected by unmarshal
        await kv.admin.update("f/after", b"{}")
        await kv.admin.delete("f/good")
        await eventually(lambda: seen == ["good", "after", "-good"], message=lambda: str(seen))
        assert store.num_entries() == 2  # boom (kept despite the observer) and after
        assert "cannot unmarshal 'bad'" in caplog.text
        assert "observer on_update failed for key 'boom'" in caplog.text
    finally:
        await watching.stop()


async def test_manager_immediate_starts_everything(kv: Harness) -> None:
    started: list[str] = []
    mgr = watch_store_manager.WatchStoreManager.immediate("c1")

    def make(name: str) -> watch_store_manager.WSMFunc:
        async def run() -> None:
            started.append(name)
            await asyncio.Event().wait()

        return run

    mgr.register("a/", make("a"))
    mgr.register("b", make("b"))
    stop = asyncio.Event()
    runner = asyncio.create_task(mgr.run(stop))
    await mgr.wait_started("a")
    await mgr.wait_started("b")
    await eventually(lambda: sorted(started) == ["a", "b"])
    with pytest.raises(errors.KVStoreStateError):
        mgr.register("c", make("c"))
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_manager_sync_waits_for_each_canary(kv: Harness) -> None:
    source = kv.new_backend()
    started: list[str] = []

    def make(name: str) -> watch_store_manager.WSMFunc:
        async def run() -> None:
            started.append(name)

        return run

    mgr = watch_store_manager.WatchStoreManager.sync(kv.new_backend(), "c1")
    assert mgr.waits_for_sync
    mgr.register("state/nodes/v1", make("nodes"))
    mgr.register("state/services/v1", make("services"))
    async with mgr:
        nodes = sync_store.WorkqueueSyncStore("c1", source, "state/nodes/v1")
        services = sync_store.WorkqueueSyncStore("c1", source, "state/services/v1")
        other = sync_store.WorkqueueSyncStore("c2", source, "state/services/v1")
        async with nodes, services, other:
            nodes.upsert_key(key_mod.KVPair("n1", b"{}"))
            nodes.synced()
            other.synced()  # another cluster's canary: not ours
            await mgr.wait_started("state/nodes/v1")
            assert started == ["nodes"]
            assert mgr.started_prefixes() == ["state/nodes/v1"]
            services.synced()
            await mgr.wait_started("state/services/v1")
            await eventually(lambda: started == ["nodes", "services"])
