"""WatchStoreManager on both backends: immediate, and gated by synced canaries."""

from __future__ import annotations

import asyncio

import pytest

from kubemirror import errors
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import sync_store, watch_store_manager

from .conftest import Harness, eventually


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
