"""RestartableWatchStore on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from prometheus_client import CollectorRegistry, Gauge

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import watch_store

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


async def test_known_keys_cost_the_garbage_collector_nothing(kv: Harness) -> None:
    """The store keeps bytes per key (untracked by the GC), not a Key object each:
    mirroring 2,000 keys adds no tracked objects in proportion; a deletion still
    hands the observer the last good value, and a bad update does not replace it."""
    import gc

    deleted: list[tuple[str, object]] = []

    class Keep:
        def on_update(self, k: key_mod.Key) -> None:
            return None

        def on_delete(self, k: key_mod.NamedKey) -> None:
            assert isinstance(k, Node)
            deleted.append((k.get_key_name(), k.data))

    count = 2000
    await kv.admin.update_many({f"g/k{i}": json.dumps({"i": i}).encode() for i in range(count)})
    store = watch_store.RestartableWatchStore("c1", node_creator, Keep())
    gc.collect()
    tracked_before = len(gc.get_objects())
    watching = Watching(store, kv.new_backend(), "g")
    try:
        await eventually(lambda: store.synced and store.num_entries() == count)
        gc.collect()
        assert len(gc.get_objects()) - tracked_before < count // 4
        await kv.admin.update("g/k7", b"[not json")  # kept: {"i": 7}
        await kv.admin.delete("g/k7")
        await eventually(lambda: deleted == [("k7", {"i": 7})], message=lambda: str(deleted))
        keys = store.keys()
        assert len(keys) == count - 1
        assert isinstance(keys["k8"], Node)
        assert keys["k8"].data == {"i": 8}
    finally:
        await watching.stop()
