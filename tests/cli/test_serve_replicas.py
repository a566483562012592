"""Two ``kubemirror serve --storage postgresql://...`` replicas over one real PostgreSQL, with
a member cluster (the project's API server): kubectl sees the same objects and versions on
both, a watch moves between them without loss, and killing the replica that syncs the
member hands the sync to the other within seconds (the time is printed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import make_pod, seed
from tests.cli.conftest import KUBECTL, Running, Spawn, skip_without_kubectl

pytestmark = [pytest.mark.postgres, pytest.mark.kubectl, pytest.mark.slow, skip_without_kubectl]

_LEASE_SPACE = 0x6B6D7379  # kubemirror.multicluster.postgres.lease's first lock key


@pytest.fixture
def member(tmp_path: Path, kube_storage: MemoryStorage, kube_api_server: KubeApiServer) -> str:
    """The member cluster's kubeconfig, with 5 pods."""
    seed(kube_storage, [make_pod(f"web-{i}", "default", {"app": "web"}) for i in range(5)])
    return kube_api_server.write_kubeconfig(tmp_path / "member")


async def _replica(spawn: Spawn, member: str, dsn: str) -> tuple[Running, str]:
    running = await spawn(
        "serve", "--cluster", "east", "--resource", "pods", "--kubeconfig", member,
        "--port", "0", "--no-metrics", "--storage", dsn,
    )  # fmt: skip
    line = await running.line_matching(lambda text: text.startswith("kubemirror serve: "))
    return running, line.split()[2]


async def _kubectl_pods(url: str) -> dict[str, Any]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--server", url, "get", "pods", "-A", "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body: dict[str, Any] = json.loads(out)
    return body


def _versions(pods: dict[str, Any]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in pods["items"]}


async def _until_pods(url: str, names: set[str], within: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            pods = await _kubectl_pods(url)
            if set(_versions(pods)) == names:
                return pods
            await asyncio.sleep(0.1)


async def _watch_names(
    http: aiohttp.ClientSession, url: str, rv: str, count: int
) -> list[tuple[str, str]]:
    """The first ``count`` (name, resourceVersion) of a watch from ``rv``."""
    seen: list[tuple[str, str]] = []
    params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "false"}
    async with asyncio.timeout(30), http.get(f"{url}/api/v1/pods", params=params) as resp:
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            event = json.loads(raw)
            meta = event["object"]["metadata"]
            seen.append((meta["name"], meta["resourceVersion"]))
            if len(seen) == count:
                return seen
    raise AssertionError(f"the watch ended after {seen}")


async def _lease_holder_pid(dsn: str) -> int | None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s",
            (_LEASE_SPACE,),
        )
        row = await cur.fetchone()
    return int(str(row[0]).rsplit(" ", 1)[1]) if row else None


async def test_two_replicas_agree_move_a_watch_and_take_over(
    member: str, kube_storage: MemoryStorage, spawn: Spawn, postgres_dsn: str
) -> None:
    a, url_a = await _replica(spawn, member, postgres_dsn)
    b, url_b = await _replica(spawn, member, postgres_dsn)
    names = {f"web-{i}" for i in range(5)}
    on_a = await _until_pods(url_a, names)
    on_b = await _until_pods(url_b, names)
    assert _versions(on_a) == _versions(on_b), "same objects, same resourceVersions"

    # A watch from B's list version sees the first writes on B, then resumes on A.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url_b}/api/v1/pods") as resp:
            list_rv = (await resp.json())["metadata"]["resourceVersion"]
        seed(kube_storage, [make_pod(f"new-{i}", "default") for i in range(3)])
        first = await _watch_names(http, url_b, list_rv, 2)
        seed(kube_storage, [make_pod(f"new-{i}", "default") for i in range(3, 5)])
        rest = await _watch_names(http, url_a, first[-1][1], 3)
    assert [name for name, _ in first + rest] == [f"new-{i}" for i in range(5)]

    # Kill -9 the replica holding the member's sync lease; the other takes over.
    holder = await _lease_holder_pid(postgres_dsn)
    by_pid = {a.proc.pid: (a, url_b), b.proc.pid: (b, url_a)}
    assert holder in by_pid, f"no replica holds the sync lease ({holder})"
    victim, survivor_url = by_pid[holder]
    os.kill(holder, signal.SIGKILL)
    killed = time.monotonic()
    await victim.proc.wait()
    seed(kube_storage, [make_pod("after-kill", "default")])
    await _until_pods(survivor_url, names | {f"new-{i}" for i in range(5)} | {"after-kill"})
    takeover = time.monotonic() - killed
    survivor_pid = next(pid for pid in by_pid if pid != holder)
    assert await _lease_holder_pid(postgres_dsn) == survivor_pid
    print(f"\ntakeover after kill -9 of the syncing replica: {takeover:.2f} s")
    assert takeover < 10
