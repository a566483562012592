"""SharedStore with several collaborators on one keyspace, on both backends."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import shared_store
from kubemirror.kvstore.key import KVPair

from .conftest import Harness, Recorder, eventually


def config(
    kv: Harness,
    *,
    backend: backend_mod.Backend | None = None,
    observer: key_mod.Observer | None = None,
    synchronization_interval: float = 300.0,
    shared_key_delete_delay: float = 0.0,
) -> shared_store.SharedStoreConfig:
    return shared_store.SharedStoreConfig(
        prefix="shared",
        key_creator=key_mod.kv_pair_creator,
        backend=backend or kv.new_backend(),
        observer=observer,
        synchronization_interval=synchronization_interval,
        shared_key_delete_delay=shared_key_delete_delay,
    )


def names(store: shared_store.SharedStore) -> list[str]:
    return sorted(store.shared_keys_map())


def names_are(store: shared_store.SharedStore, expected: list[str]) -> Callable[[], bool]:
    return lambda: names(store) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prefix": ""}, "prefix"),
        ({"prefix": "/"}, "prefix"),
        ({"key_creator": None}, "key_creator"),
        ({"synchronization_interval": 0}, "synchronization_interval"),
        ({"shared_key_delete_delay": -1}, "shared_key_delete_delay"),
        ({"list_timeout": -5}, "list_timeout"),
    ],
    ids=["empty-prefix", "slash-prefix", "no-key-creator", "zero-interval", "negative-delay",
         "negative-timeout"],
)
async def test_join_validates_config(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"prefix": "p", "key_creator": key_mod.kv_pair_creator}
    base.update(kwargs)
    cfg = shared_store.SharedStoreConfig(**base)  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigError) as info:
        await shared_store.SharedStore.join(cfg)
    assert info.value.field == field
    assert field in str(info.value)


async def test_join_loads_existing_keys_before_returning(kv: Harness) -> None:
    await kv.admin.update("shared/x", b"1")
    await kv.admin.update("shared/y", b"2")
    await kv.admin.update("sharedz/not-mine", b"3")
    rec = Recorder()
    store = await shared_store.SharedStore.join(config(kv, observer=rec))
    try:
        assert names(store) == ["x", "y"]
        assert rec.state == {"x": b"1", "y": b"2"}
        assert store.num_entries() == 2
        copy = store.shared_keys_map()
        copy.clear()
        assert store.num_entries() == 2  # a copy
    finally:
        await store.close()


async def test_collaborators_see_each_other(kv: Harness) -> None:
    recs = [Recorder() for _ in range(3)]
    stores = [await shared_store.SharedStore.join(config(kv, observer=r)) for r in recs]
    try:
        for i, store in enumerate(stores):
            await store.update_local_key_sync(KVPair(f"node{i}", f"ip{i}".encode()))
        for store in stores:
            await eventually(names_are(store, ["node0", "node1", "node2"]))
        assert all(r.state == {"node0": b"ip0", "node1": b"ip1", "node2": b"ip2"} for r in recs)
        # An owner changes its key.
        await stores[0].update_local_key_sync(KVPair("node0", b"ip0b"))
        await eventually(lambda: recs[2].state.get("node0") == b"ip0b")
        # An owner gives its key up.
        await stores[1].delete_local_key(KVPair("node1"))
        for rec in recs:
            await eventually(functools.partial(lambda r: "node1" not in r.state, rec))
        assert recs[0].deletes() == ["node1"]  # reported once, through the watch
    finally:
        for store in stores:
            await store.close()


async def test_local_key_deleted_by_someone_else_is_recreated(kv: Harness) -> None:
    store = await shared_store.SharedStore.join(config(kv))
    try:
        await store.update_local_key_sync(KVPair("mine", b"v"))
        assert store.local_keys_map()["mine"].marshal() == b"v"
        await kv.admin.delete("shared/mine")
        await eventually(lambda: _get(kv, "shared/mine", b"v"))
    finally:
        await store.close()


async def _get(kv: Harness, key: str, value: bytes) -> bool:
    return await kv.admin.get(key) == value


async def test_periodic_resync_repairs_overwritten_local_keys(kv: Harness) -> None:
    store = await shared_store.SharedStore.join(config(kv, synchronization_interval=0.1))
    try:
        await store.update_local_key_sync(KVPair("mine", b"v"))
        await kv.admin.update("shared/mine", b"tampered")
        await eventually(lambda: _get(kv, "shared/mine", b"v"))
    finally:
        await store.close()


async def test_close_removes_own_keys_release_keeps_them(kv: Harness) -> None:
    leaving_rec = Recorder()
    leaving = await shared_store.SharedStore.join(config(kv, observer=leaving_rec))
    releasing = await shared_store.SharedStore.join(config(kv))
    watcher_rec = Recorder()
    watcher = await shared_store.SharedStore.join(config(kv, observer=watcher_rec))
    try:
        await leaving.update_local_key_sync(KVPair("leaving", b"1"))
        await releasing.update_local_key_sync(KVPair("releasing", b"1"))
        await eventually(lambda: names(watcher) == ["leaving", "releasing"])
        await eventually(lambda: "leaving" in leaving_rec.state)
        await leaving.close()
        assert "leaving" in leaving_rec.deletes()
        await releasing.release()
        await eventually(lambda: names(watcher) == ["releasing"])
        assert watcher_rec.deletes() == ["leaving"]
        assert await kv.admin.get("shared/releasing") == b"1"
        with pytest.raises(errors.KVStoreClosedError):
            await leaving.update_local_key_sync(KVPair("again", b"1"))
    finally:
        await watcher.close()


async def test_dead_collaborator_keys_vanish_from_every_view(kv: Harness) -> None:
    """A collaborator whose session dies (no keep-alive) loses its keys everywhere."""
    dying_backend = kv.new_backend(lease_ttl=1.0)
    dying = await shared_store.SharedStore.join(config(kv, backend=dying_backend))
    views = [await shared_store.SharedStore.join(config(kv)) for _ in range(2)]
    try:
        await dying.update_local_key_sync(KVPair("dying", b"1"))
        await views[0].update_local_key_sync(KVPair("alive", b"1"))
        for view in views:
            await eventually(names_are(view, ["alive", "dying"]))
        await dying.release()
        await dying_backend.close()  # the process is gone: its lease will expire
        for view in views:
            await eventually(names_are(view, ["alive"]), within=15)
    finally:
        for view in views:
            await view.close()


async def test_revoked_lease_of_a_live_collaborator_is_repaired(kv: Harness) -> None:
    """Losing the lease while alive: the owner sees its keys deleted and rewrites them."""
    owner_backend = kv.new_backend(lease_ttl=30.0)
    owner = await shared_store.SharedStore.join(config(kv, backend=owner_backend))
    other_rec = Recorder()
    other = await shared_store.SharedStore.join(config(kv, observer=other_rec))
    try:
        await owner.update_local_key_sync(KVPair("k", b"1"))
        await eventually(lambda: names(other) == ["k"])
        first = owner_backend.lease_id
        assert first is not None
        await kv.revoke_lease(first)
        await eventually(lambda: other_rec.deletes() == ["k"])
        await eventually(lambda: names(other) == ["k"] and other_rec.events[-1][0] == "update")
        assert owner_backend.lease_id not in (None, first)
    finally:
        await owner.close()
        await other.close()


async def test_shared_key_delete_delay(kv: Harness) -> None:
    rec = Recorder()
    delayed = await shared_store.SharedStore.join(
        config(kv, observer=rec, shared_key_delete_delay=0.3)
    )
    try:
        await kv.admin.update("shared/flap", b"1")
        await kv.admin.update("shared/gone", b"1")
        await eventually(lambda: names(delayed) == ["flap", "gone"])
        loop = asyncio.get_running_loop()
        deleted_at = loop.time()
        await kv.admin.delete("shared/flap")
        await kv.admin.delete("shared/gone")
        await kv.admin.update("shared/flap", b"2")  # back within the delay: no deletion
        await eventually(lambda: rec.deletes() == ["gone"])
        assert loop.time() - deleted_at >= 0.3
        assert names(delayed) == ["flap"]
        assert rec.state == {"flap": b"2"}
    finally:
        await delayed.close()


async def test_update_key_sync_writes_without_owning(kv: Harness) -> None:
    store = await shared_store.SharedStore.join(config(kv))
    try:
        await store.update_key_sync(KVPair("once", b"1"), lease=False)
        assert await kv.admin.get("shared/once") == b"1"
        assert store.local_keys_map() == {}
        await kv.admin.delete("shared/once")
        await eventually(lambda: names(store) == [])
        assert await kv.admin.get("shared/once") is None  # not re-created
    finally:
        await store.close()


async def test_failed_local_update_is_not_kept(kv: Harness) -> None:
    store = await shared_store.SharedStore.join(config(kv))
    try:
        class Broken(KVPair):
            def marshal(self) -> bytes:
                raise ValueError("cannot encode")

            def deep_key_copy(self) -> Broken:
                return Broken(self.key, self.value)

        with pytest.raises(ValueError, match="cannot encode"):
            await store.update_local_key_sync(Broken("b", b""))
        assert store.local_keys_map() == {}
    finally:
        await store.close()


async def test_async_context_manager_and_run(kv: Harness) -> None:
    async with shared_store.SharedStore(config(kv)) as store:
        await store.update_local_key_sync(KVPair("ctx", b"1"))
    assert await kv.admin.get("shared/ctx") is None  # closed: own keys removed
    runner_store = shared_store.SharedStore(config(kv))
    stop = asyncio.Event()
    runner = asyncio.create_task(runner_store.run(stop))
    await eventually(lambda: runner_store.num_entries() == 0 and not runner.done())
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_default_backend_is_the_embedded_process_wide_keyspace() -> None:
    cfg = shared_store.SharedStoreConfig(
        prefix="embedded-test", key_creator=key_mod.kv_pair_creator
    )
    one = await shared_store.SharedStore.join(cfg)
    two = await shared_store.SharedStore.join(cfg)
    try:
        await one.update_local_key_sync(KVPair("one", b"1"))
        await eventually(lambda: names(two) == ["one"])
    finally:
        await one.close()
        await two.close()
