"""Benchmark KubeApiServer: LIST of many pods, WATCH fan-out, event latency.

The server runs in a child process (as a real API server would), the client in
this one, over loopback HTTP. Each measurement is run against three servers in the
same process layout: ``KubeApiServer``; the real kube-apiserver v1.37.2 (envtest,
TLS; pods put into its etcd, ConfigMaps written through its API, see
``real_apiserver.py``); and a bare aiohttp handler writing pre-encoded bytes (the
transport ceiling, with no storage, filtering or pagination behind it).

    python benchmarks/bench_server.py            # LIST 10k/100k, 100 and 1,000 watchers
    python benchmarks/bench_server.py --quick    # LIST 10k, 20 and 100 watchers

Figures: LIST time and MB/s (cold = first LIST encodes every object, warm = cached
bytes), the worst /healthz latency during a LIST (event-loop stalls), fan-out
events/s delivered to all watchers, p50/p99 latency from write to receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from kubemirror.listing import ListOptions
from kubemirror.multicluster.server import KubeApiServer
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
        sent = len(lines)  # from now on, as a watch from the current resourceVersion
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


async def _serve_kube_apiserver(conn: Connection, pods: int) -> None:
    """The real kube-apiserver (envtest): pods and the ConfigMap writes put into its
    etcd (50 a transaction), so an event takes the path KubeApiServer's in-process
    writes take: storage -> watch cache -> every watcher (see real_apiserver.py)."""
    import real_apiserver

    env = real_apiserver.start_envtest()
    try:
        objs = [make_pod(f"pod-{i:06d}", f"ns-{i % 50}") for i in range(pods)]
        async with real_apiserver.Seeder(env.url, env.ssl_context(client_cert=True)) as seeder:
            await seeder.create_namespaces({*(p["metadata"]["namespace"] for p in objs), "bench"})
        await real_apiserver.put_into_etcd(env.etcd.client_url, real_apiserver.pod_entries(objs))
        del objs
        await real_apiserver.wait_listed(env, pods)
        conn.send((env.url, str(env.ca_file), str(env.admin_cert_file), str(env.admin_key_file)))
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command[0] == "stop":
                break
            if command[0] == "watchers":
                conn.send("ok")  # the parent counts its connected watchers itself
            elif command[0] == "write":
                count = command[1]
                for start in range(0, count, 50):  # as the others: 50 writes, then a yield
                    batch = []
                    for i in range(start, min(count, start + 50)):
                        obj = _configmap(i, time.time())
                        batch.append((f"/registry/configmaps/bench/{obj['metadata']['name']}",
                                      orjson.dumps(obj)))
                    await real_apiserver.put_into_etcd(env.etcd.client_url, batch, batch=50,
                                                       concurrency=1)
                conn.send("written")
    finally:
        env.stop()


def _child(kind: str, conn: Connection, pods: int) -> None:
    serve = {"kubemirror": _serve_kubemirror, "baseline": _serve_baseline,
             "kube-apiserver": _serve_kube_apiserver}[kind]
    asyncio.run(serve(conn, pods))


# -- parent process: the clients -----------------------------------------------------------


@dataclass
class ListFigures:
    seconds: float
    megabytes: float
    worst_ping_ms: float


@dataclass(frozen=True)
class Endpoint:
    """A server under test: its base URL and, for kube-apiserver, TLS with the admin's
    client certificate."""

    base: str
    tls: tuple[str, str, str] | None = None  # CA, client certificate, key

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        if self.tls is None:
            return aiohttp.ClientSession(**kwargs)
        import ssl

        ca, cert, key = self.tls
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(cert, key)
        limit = kwargs.pop("limit", 100)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=limit),
                                     **kwargs)


async def _measure_list(endpoint: Endpoint) -> ListFigures:
    stalls: list[float] = []
    done = asyncio.Event()
    base = endpoint.base
    async with endpoint.session() as session:

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
    watchers: int
    events: int
    seconds: float
    delivered: int
    latencies: list[float]
    closed: int  # watchers the server ended before they had every event


async def _measure_watch(endpoint: Endpoint, conn: Connection, watchers: int, events: int,
                         kind: str) -> WatchFigures:
    received = [0] * watchers
    connected = [0]
    done = [0]
    closed = [0]
    latencies: list[float] = []
    target = events
    marker = b'"bench/ts":"'
    base = endpoint.base
    session_args: dict[str, Any] = {"limit": 0} if endpoint.tls else {
        "connector": aiohttp.TCPConnector(limit=0)}
    async with endpoint.session(**session_args) as session:
        finished = asyncio.Event()
        last_arrival = [0.0]
        query = "?watch=1"
        if "kube-apiserver" in kind or kind == "kubemirror":  # from now, not existing objects
            async with session.get(f"{base}{CONFIGMAPS_PATH}?limit=1") as resp:
                rv = orjson.loads(await resp.read())["metadata"]["resourceVersion"]
            query += f"&resourceVersion={rv}"

        async def watcher(n: int) -> None:
            url = f"{base}{CONFIGMAPS_PATH}{query}"
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                    connected[0] += 1
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
                            break
            except aiohttp.ClientError:  # a reset connection: ended by the server
                pass
            # the target reached, or the server ended the watch (kube-apiserver closes a
            # watcher that falls behind): either way this watcher is done
            if received[n] < target:
                closed[0] += 1
            last_arrival[0] = time.perf_counter()
            done[0] += 1
            if done[0] == watchers:
                finished.set()

        tasks = [asyncio.create_task(watcher(n)) for n in range(watchers)]
        await asyncio.to_thread(conn.send, ("watchers", watchers))
        await asyncio.to_thread(conn.recv)
        while connected[0] < watchers:  # noqa: ASYNC110 - counts response headers received
            await asyncio.sleep(0.01)
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
    return WatchFigures(watchers, events, last_arrival[0] - start, sum(received), latencies,
                        closed[0])


def _run(kind: str, pods: int, fanouts: list[tuple[int, int]]
         ) -> tuple[ListFigures, ListFigures, list[WatchFigures]]:
    """Start ``kind``'s server with ``pods`` pods: LIST twice, then each (watchers, events)
    fan-out of ``fanouts``."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(kind, child, pods), daemon=True)
    proc.start()
    try:
        hello = parent.recv()
        if isinstance(hello, tuple):
            endpoint = Endpoint(hello[0], tuple(hello[1:]))  # type: ignore[arg-type]
        else:
            endpoint = Endpoint(f"http://127.0.0.1:{hello}")
        cold = asyncio.run(_measure_list(endpoint))
        warm = asyncio.run(_measure_list(endpoint))
        fanout = [asyncio.run(_measure_watch(endpoint, parent, w, e, kind)) for w, e in fanouts]
    finally:
        with contextlib.suppress(OSError):  # the child stops its server (envtest too)
            parent.send(("stop",))
        proc.join(timeout=60)
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


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 2 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    parser.add_argument("--pods", help="comma-separated LIST sizes (default 10000,100000)")
    parser.add_argument("--watchers", help="comma-separated fan-outs (default 100,1000)")
    parser.add_argument("--events", type=int,
                        help="events for the first fan-out; larger fan-outs get fewer, so each "
                             "delivers as many events in all (default 10000)")
    parser.add_argument("--kinds", default="baseline,kubemirror,kube-apiserver",
                        help="servers to measure (kube-apiserver needs the envtest binaries)")
    args = parser.parse_args(argv)
    pod_counts = _ints(args.pods or ("10000" if args.quick else "10000,100000"))
    watcher_counts = _ints(args.watchers or ("20,100" if args.quick else "100,1000"))
    events = args.events or (2_000 if args.quick else 10_000)
    fanouts = [(w, max(100, events * watcher_counts[0] // w)) for w in watcher_counts]
    kinds = [k for k in args.kinds.split(",") if k]
    print(
        f"kubemirror bench_server: LIST of {'/'.join(f'{p:,}' for p in pod_counts)} pods "
        f"(~5 KB each); watch fan-out {', '.join(f'{w}x{e:,}' for w, e in fanouts)} events "
        f"(~0.6 KB ConfigMaps); loopback, each server in a child process: {', '.join(kinds)}"
    )
    lists: dict[tuple[str, int], tuple[ListFigures, ListFigures]] = {}
    watches: dict[str, list[WatchFigures]] = {}
    for kind in kinds:
        for n, pods in enumerate(pod_counts):
            print(f"  {kind}: {pods:,} pods ...", file=sys.stderr, flush=True)
            cold, warm, fan = _run(kind, pods, fanouts if n == 0 else [])
            lists[(kind, pods)] = (cold, warm)
            if fan:
                watches[kind] = fan

    columns = [k for k in ("kubemirror", "kube-apiserver", "baseline") if k in kinds]
    titles = {"kubemirror": "KubeApiServer", "kube-apiserver": "kube-apiserver",
              "baseline": "raw aiohttp"}

    def row(name: str, values: dict[str, float], unit: str, higher_better: bool) -> None:
        digits = 0 if unit == "events/s" else (3 if unit == "s" else 1)
        cells = "".join(f" {values[k]:>15,.{digits}f} |" if k in values else f" {'-':>15} |"
                        for k in columns)
        ours, real = values.get("kubemirror"), values.get("kube-apiserver")
        ratio = ((ours / real if higher_better else real / ours) if ours and real else 0.0)
        print(f"| {name:<38} |{cells} {unit:<8} | {ratio:>8.2f} |")

    print()
    print(f"| {'measure':<38} |" + "".join(f" {titles[k]:>15} |" for k in columns)
          + f" {'unit':<8} | {'km / real':>8} |")
    print(f"|{'-' * 40}|" + "".join(f"{'-' * 17}|" for _ in columns) + f"{'-' * 10}|{'-' * 10}|")
    for pods in pod_counts:
        got = {k: lists[(k, pods)] for k in kinds if (k, pods) in lists}
        row(f"LIST {pods:,} pods, first", {k: v[0].seconds for k, v in got.items()}, "s", False)
        row(f"LIST {pods:,} pods, again", {k: v[1].seconds for k, v in got.items()}, "s", False)
        row(f"LIST {pods:,} pods, again", {k: v[1].megabytes / v[1].seconds
                                           for k, v in got.items()}, "MB/s", True)
        row("worst /healthz latency during LIST", {k: v[1].worst_ping_ms
                                                   for k, v in got.items()}, "ms", False)
    for i, (w, e) in enumerate(fanouts):
        got_w = {k: v[i] for k, v in watches.items()}
        row(f"fan-out {w:,} watchers x {e:,} events", {
            k: f.delivered / f.seconds for k, f in got_w.items()}, "events/s", True)
        row(f"event latency p50 ({w:,} watchers)", {
            k: _pct(f.latencies, 50) for k, f in got_w.items()}, "ms", False)
        row(f"event latency p99 ({w:,} watchers)", {
            k: _pct(f.latencies, 99) for k, f in got_w.items()}, "ms", False)
        row(f"watchers the server ended ({w:,})", {
            k: float(f.closed) for k, f in got_w.items()}, "watchers", False)
    print()
    print(f"in-process paged LIST (limit=500) of {pod_counts[0]:,} pods: "
          f"{_in_process_list(pod_counts[0]):.3f} s")
    print("'km / real' > 1: KubeApiServer is faster than kube-apiserver. raw aiohttp does no "
          "storage work at all. Writes skip every server's write path: in-process for "
          "KubeApiServer and raw, put into etcd for kube-apiserver (its watch cache then "
          "fans them out), so latency is storage -> watcher.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
