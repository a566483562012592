"""Everything together against a real etcd that crashes: nothing is lost.

Sync stores write while the server is killed (-9) and restarted, watch stores are
disconnected while keys vanish (deleted, or expired with a dead collaborator's
lease, then compacted away), and collaborator processes die. Afterwards every view
must equal the server's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import aetcd
import pytest

import kubemirror
from kubemirror.kvstore import etcd, etcd_server, key, sync_store, watch_store, workqueue
from kubemirror.kvstore.key import KVPair

from .conftest import Recorder, eventually

pytestmark = pytest.mark.etcd

SCRIPT = Path(__file__).with_name("collaborator.py")
SRC = str(Path(kubemirror.__file__).resolve().parents[1])


async def _listing(b: etcd.EtcdBackend, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) + 1:]: v for k, v in (await b.list_prefix(prefix + "/")).items()}


@pytest.mark.parametrize("batch_size", [1, 32], ids=["single", "batched"])
async def test_kill_and_restart_during_upserts_and_watch_converges(
    etcd_server_fn: etcd_server.EtcdServer, caplog: pytest.LogCaptureFixture, batch_size: int
) -> None:
    server = etcd_server_fn
    writer = etcd.EtcdBackend(server.endpoint, lease_ttl=5.0, retry_timeout=0.5)
    reader = etcd.EtcdBackend(server.endpoint)
    rec = Recorder()
    watcher = watch_store.RestartableWatchStore("c1", key.kv_pair_creator, rec)
    watching = asyncio.create_task(watcher.watch(reader, "f"))
    limiter = workqueue.ExponentialFailureRateLimiter(0.01, 0.2)
    store = sync_store.WorkqueueSyncStore(
        "c1", writer, "f", workers=4, rate_limiter=limiter, batch_size=batch_size
    )
    try:
        async with store:
            await eventually(lambda: watcher.synced)
            for i in range(900):
                store.upsert_key(KVPair(f"k{i % 150}", str(i).encode()))
                if i % 7 == 0:
                    store.delete_key(KVPair(f"k{(i * 3) % 150}"))
                if i in (300, 600):
                    assert store.pending_operations() > 0  # writes are in flight
                    server.kill()
                    await asyncio.sleep(0.6 if i == 300 else 0.0)  # longer than retry_timeout
                    await server.arestart()
                if i % 50 == 0:
                    await asyncio.sleep(0.01)  # let the workers write
            synced = asyncio.Event()
            store.synced(synced.set)
            await asyncio.wait_for(synced.wait(), 30)
            expected = store.desired_state()
            assert len(expected) > 50
            await eventually(lambda: _equals(writer, expected), within=30)
            await eventually(lambda: rec.state == expected, within=30,
                             message=lambda: f"{len(rec.state)} vs {len(expected)}")
            assert watcher.num_entries() == len(expected)
            assert "failed (retry" in caplog.text  # the outage did fail (and retry) writes
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await writer.close()
        await reader.close()


async def _equals(b: etcd.EtcdBackend, expected: dict[str, bytes]) -> bool:
    return await _listing(b, "f") == expected


async def test_restarted_watch_reports_keys_that_vanished_while_disconnected(
    etcd_server_fn: etcd_server.EtcdServer,
) -> None:
    """Keys deleted, or expired with a dead collaborator's lease, then compacted away."""
    server = etcd_server_fn
    admin = etcd.EtcdBackend(server.endpoint)
    mortal = etcd.EtcdBackend(server.endpoint, lease_ttl=1.0)
    rec = Recorder()
    watcher = watch_store.RestartableWatchStore("c1", key.kv_pair_creator, rec)
    try:
        async with sync_store.WorkqueueSyncStore("c1", mortal, "v") as store:
            for i in range(20):
                store.upsert_key(KVPair(f"leased{i}", b"1"))
            done = asyncio.Event()
            store.synced(done.set)
            await asyncio.wait_for(done.wait(), 10)
        for i in range(10):
            await admin.update(f"v/plain{i}", b"1")
        first_backend = etcd.EtcdBackend(server.endpoint)
        watching = asyncio.create_task(watcher.watch(first_backend, "v"))
        await eventually(lambda: watcher.synced and watcher.num_entries() == 30)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await first_backend.close()  # the watcher is disconnected from here on

        for i in range(5):
            await admin.delete(f"v/plain{i}")
        await mortal.close()  # the collaborator dies: its leased keys expire
        await eventually(lambda: _count_is(admin, "v/", 5), within=15)
        async with aetcd.Client(host=server.host, port=server.client_port) as client:
            status = await client.get(b"v/plain9")
            await client.compact(status.header.revision, physical=True)
        server.kill()
        await server.arestart()

        second_backend = etcd.EtcdBackend(server.endpoint)
        watching = asyncio.create_task(watcher.watch(second_backend, "v"))
        try:
            await eventually(lambda: watcher.synced)
            assert sorted(rec.state) == [f"plain{i}" for i in range(5, 10)]
            assert sorted(rec.deletes()) == sorted(
                [f"leased{i}" for i in range(20)] + [f"plain{i}" for i in range(5)]
            )
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await second_backend.close()
    finally:
        await admin.close()
        await mortal.close()


async def _count_is(b: etcd.EtcdBackend, prefix: str, expected: int) -> bool:
    return len(await b.list_prefix(prefix)) == expected


class Collaborator:
    """One ``collaborator.py`` process and the views it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.views: list[list[str]] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.views.append(json.loads(line))

    def describe(self) -> str:
        return f"{self.name} printed {self.views}"

    def sees(self, expected: list[str]) -> bool:
        return bool(self.views) and self.views[-1] == expected

    async def finish(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self.reader


async def test_collaborator_processes_share_keys_and_dead_ones_vanish(
    etcd_server_fn: etcd_server.EtcdServer,
) -> None:
    script = SCRIPT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    names = ["c0", "c1", "c2"]
    procs = [
        Collaborator(
            await asyncio.create_subprocess_exec(
                sys.executable, str(script), etcd_server_fn.endpoint, "agents", name, "1",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            ),
            name,
        )
        for name in names
    ]
    try:
        for proc in procs:
            await eventually(functools.partial(proc.sees, names), within=30, message=proc.describe)
        procs[2].proc.kill()  # crash: no goodbye, the lease expires
        await procs[2].finish()
        for proc in procs[:2]:
            await eventually(functools.partial(proc.sees, ["c0", "c1"]), within=15)
        assert procs[1].proc.stdin is not None
        procs[1].proc.stdin.close()  # graceful leave: close() deletes its key at once
        assert await asyncio.wait_for(procs[1].proc.wait(), 15) == 0
        await eventually(lambda: procs[0].sees(["c0"]), within=5)
    finally:
        for proc in procs:
            await proc.finish()
