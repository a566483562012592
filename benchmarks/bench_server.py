"""Benchmark KubeApiServer: LIST of many pods, WATCH fan-out, event latency.

The server runs in a child process (as a real API server would), the client in
this one, over loopback HTTP. Each measurement is paired with a baseline run in
the same process layout: a bare aiohttp handler writing pre-encoded bytes (the
transport ceiling, with no storage, filtering or pagination behind it).

    python benchmarks/bench_server.py            # 100k pods, 100 watchers x 10k events
    python benchmarks/bench_server.py --quick    # 10k pods, 20 watchers x 2k events

Figures: LIST time and MB/s (cold = first LIST encodes every object, warm = cached
bytes), the worst /healthz latency during a LIST (event-loop stalls), fan-out
events/s delivered to all watchers, p50/p99 latency from write to receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import ListOptions
from kubemirror.testing import PODS, make_pod, new_storage, seed
from kubemirror.types import GroupVersionResource

CONFIGMAPS_PATH = "/api/v1/configmaps"


def _configmap(i: int, stamp: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{i % 100}",
            "namespace": "bench",
            "labels": {"app": "bench", "shard": str(i % 7)},
            "annotations": {"bench/ts": repr(stamp)},
        },
        "data": {"payload": "x" * 300, "seq": str(i)},
    }


# -- child process: the servers ------------------------------------------------------------


async def _serve_kubemirror(conn: Connection, pods: int) -> None:
    storage = new_storage(event_window=200_000)
    gc.disable()
    seed(storage, (make_pod(f"pod-{i:06d}", f"ns-{i % 50}") for i in range(pods)))
    gc.enable()
    gc.freeze()
    configmaps = storage.resource_storage(GroupVersionResource("", "v1", "configmaps"))
    async with KubeApiServer(storage) as server:
        conn.send(server.port)
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command[0] == "stop":
                break
            if command[0] == "watchers":
                while configmaps.watcher_count < command[1]:  # noqa: ASYNC110 - counts HTTP watchers
                    await asyncio.sleep(0.01)
                conn.send("ok")
            elif command[0] == "write":
                count = command[1]
                for i in range(count):
                    configmaps.upsert("default", _configmap(i, time.time()))
                    if i % 50 == 49:
                        await asyncio.sleep(0)
                conn.send("written")


async def _serve_baseline(conn: Connection, pods: int) -> None:
    """Bare aiohttp: one pre-encoded list body; watchers copy from a shared line log."""
    items = [orjson.dumps(make_pod(f"pod-{i:06d}", f"ns-{i % 50}")) for i in range(pods)]
    body = b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[' + b",".join(items) + b"]}"
    del items
    lines: list[bytes] = []
    new_line = asyncio.Event()
    watchers = 0

    async def list_handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def watch_handler(request: web.Request) -> web.StreamResponse:
        nonlocal watchers
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        watchers += 1
        sent = 0
        while True:
            if sent < len(lines):
                batch = lines[sent:]
                sent += len(batch)
                await response.write(b"".join(batch))
            else:
                await new_line.wait()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/api/v1/pods", list_handler)
    app.router.add_get(CONFIGMAPS_PATH, watch_handler)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command[0] == "stop":
            break
        if command[0] == "watchers":
            while watchers < command[1]:  # noqa: ASYNC110 - counts HTTP watchers
                await asyncio.sleep(0.01)
            conn.send("ok")
        elif command[0] == "write":
            for i in range(command[1]):
                obj = _configmap(i, time.time())
                lines.append(b'{"type":"MODIFIED","object":' + orjson.dumps(obj) + b"}\n")
                new_line.set()
                new_line.clear()
                if i % 50 == 49:
                    await asyncio.sleep(0)
            conn.send("written")
    await runner.cleanup()


def _child(kind: str, conn: Connection, pods: int) -> None:
    serve = _serve_kubemirror if kind == "kubemirror" else _serve_baseline
    asyncio.run(serve(conn, pods))


# -- parent process: the clients -----------------------------------------------------------


@dataclass
class ListFigures:
    seconds: float
    megabytes: float
    worst_ping_ms: float


async def _measure_list(base: str) -> ListFigures:
    stalls: list[float] = []
    done = asyncio.Event()
    async with aiohttp.ClientSession() as session:

        async def pinger() -> None:
            while not done.is_set():
                start = time.perf_counter()
                async with session.get(f"{base}/healthz") as resp:
                    await resp.read()
                stalls.append(time.perf_counter() - start)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(pinger())
        start = time.perf_counter()
        size = 0
        async with session.get(f"{base}/api/v1/pods") as resp:
            async for chunk in resp.content.iter_chunked(1 << 20):
                size += len(chunk)
        elapsed = time.perf_counter() - start
        done.set()
        await task
    return ListFigures(elapsed, size / 1e6, max(stalls) * 1000 if stalls else 0.0)


@dataclass
class WatchFigures:
    seconds: float
    delivered: int
    latencies: list[float]


async def _measure_watch(base: str, conn: Connection, watchers: int, events: int) -> WatchFigures:
    received = [0] * watchers
    latencies: list[float] = []
    target = events
    marker = b'"bench/ts":"'
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        finished = asyncio.Event()
        last_arrival = [0.0]

        async def watcher(n: int) -> None:
            url = f"{base}{CONFIGMAPS_PATH}?watch=1"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    lines = buffer.split(b"\n")
                    buffer = lines.pop()
                    now = time.time()
                    for line in lines:
                        received[n] += 1
                        if n == 0 and received[n] % 20 == 0:
                            at = line.find(marker)
                            if at >= 0:
                                end = line.index(b'"', at + len(marker))
                                latencies.append(now - float(line[at + len(marker) : end]))
                    if received[n] >= target:
                        last_arrival[0] = time.perf_counter()
                        if all(r >= target for r in received):
                            finished.set()
                        return

        tasks = [asyncio.create_task(watcher(n)) for n in range(watchers)]
        await asyncio.to_thread(conn.send, ("watchers", watchers))
        await asyncio.to_thread(conn.recv)
        start = time.perf_counter()
        await asyncio.to_thread(conn.send, ("write", events))
        try:
            async with asyncio.timeout(600):
                await finished.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(conn.recv)
    return WatchFigures(last_arrival[0] - start, sum(received), latencies)


def _run(
    kind: str, pods: int, watchers: int, events: int
) -> tuple[ListFigures, ListFigures, WatchFigures]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(kind, child, pods), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        base = f"http://127.0.0.1:{port}"
        cold = asyncio.run(_measure_list(base))
        warm = asyncio.run(_measure_list(base))
        fanout = asyncio.run(_measure_watch(base, parent, watchers, events))
        parent.send(("stop",))
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    return cold, warm, fanout


def _in_process_list(pods: int) -> float:
    storage = new_storage()
    seed(storage, (make_pod(f"pod-{i:06d}") for i in range(pods)))
    rs = storage.resource_storage(PODS)
    start = time.perf_counter()
    result = rs.list(ListOptions(limit=500))
    while result.continue_token:
        result = rs.list(ListOptions(limit=500, continue_token=result.continue_token))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    parser.add_argument("--pods", type=int)
    parser.add_argument("--watchers", type=int)
    parser.add_argument("--events", type=int)
    args = parser.parse_args(argv)
    pods = args.pods or (10_000 if args.quick else 100_000)
    watchers = args.watchers or (20 if args.quick else 100)
    events = args.events or (2_000 if args.quick else 10_000)
    print(
        f"kubemirror bench_server: {pods} pods (~5 KB each), {watchers} watchers x "
        f"{events} events (~0.6 KB ConfigMaps), loopback HTTP, server in a child process"
    )
    results = {kind: _run(kind, pods, watchers, events) for kind in ("baseline", "kubemirror")}
    base_cold, base_warm, base_watch = results["baseline"]
    cold, warm, watch = results["kubemirror"]

    def row(name: str, ours: float, theirs: float, unit: str, higher_better: bool) -> None:
        ratio = (ours / theirs if higher_better else theirs / ours) if theirs and ours else 0.0
        digits = 0 if unit == "events/s" else (3 if unit == "s" else 1)
        print(
            f"| {name:<38} | {ours:>14,.{digits}f} | {theirs:>14,.{digits}f} | {unit:<8} "
            f"| {ratio:>6.2f} |"
        )

    print()
    print(
        f"| {'measure':<38} | {'kubemirror':>14} | {'raw aiohttp':>14} | {'unit':<8} | "
        f"{'ratio':>6} |"
    )
    print(f"|{'-' * 40}|{'-' * 16}|{'-' * 16}|{'-' * 10}|{'-' * 8}|")
    row(f"LIST {pods} pods, cold (encode)", cold.seconds, base_cold.seconds, "s", False)
    row(f"LIST {pods} pods, warm (cached bytes)", warm.seconds, base_warm.seconds, "s", False)
    row(
        "LIST throughput, warm",
        warm.megabytes / warm.seconds,
        base_warm.megabytes / base_warm.seconds,
        "MB/s",
        True,
    )
    row(
        "worst /healthz latency during LIST",
        warm.worst_ping_ms,
        base_warm.worst_ping_ms,
        "ms",
        False,
    )
    row(
        f"fan-out {watchers}x{events} delivered",
        watch.delivered / watch.seconds,
        base_watch.delivered / base_watch.seconds,
        "events/s",
        True,
    )

    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 2 else 0.0

    row("event latency p50", pct(watch.latencies, 50), pct(base_watch.latencies, 50), "ms", False)
    row("event latency p99", pct(watch.latencies, 99), pct(base_watch.latencies, 99), "ms", False)
    print()
    print(f"in-process paged LIST (limit=500) of {pods} pods: {_in_process_list(pods):.3f} s")
    print("ratio > 1 means kubemirror is faster; the baseline does no storage work at all.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
