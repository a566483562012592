"""Benchmark the served multi-cluster storage at scale: memory vs PostgreSQL.

Loads N realistic pods (benchmarks/podgen, ~6 KB each) across C clusters into a
storage, serves it with KubeApiServer (R replica processes over one database for
PostgreSQL, one process for memory), and measures over loopback HTTP:

* size: server RSS after loading (memory) or table + index size (PostgreSQL);
* LIST pages (limit 500) p50/p99, without and with a label selector (app=api,
  ~10% of the pods), first pages and continued pages;
* W watchers (spread over the replicas) on a stream namespace while a writer
  PUTs a steady stream of small pods: events/s delivered, write-to-receipt
  latency p50/p99, events lost (must be 0);
* PostgreSQL only: one replica is killed (SIGKILL) mid-stream; its watchers
  resume on the others from their last resourceVersion; recovery time.

    python benchmarks/bench_scale.py --quick                     # 100k pods, 5 clusters
    python benchmarks/bench_scale.py --quick --storage postgres  # same, 3 PostgreSQL replicas
    python benchmarks/bench_scale.py --storage postgres          # 1M pods, 10 clusters, 1,000

PostgreSQL comes from ``--dsn`` or a throw-away server (kubemirror.testing.postgres).
The last line is ``scale: <objects> objects in <C> clusters (<storage>), <X.XX> GB,
list p99 <L> ms, <W> watchers p99 <P> ms, lost <K>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import podgen
from arguments import positive_float, positive_int
from kubemirror import bulk
from kubemirror.cache.raw_object import PartialDecoder, split_list
from kubemirror.multicluster import resources
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import PODS

STREAM_NS = "bench-stream"
STREAM_CLUSTER = "stream"
LOAD_CHUNK = 5000


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_TEMPLATES: list[tuple[bytes, str]] = []
_NAME, _UID, _RV = b"@@name@@", b"@@uid@@", b"@@rv@@"


def _cluster_pods(  # type: ignore[no-untyped-def]
    cluster: int, count: int, seed: int = 42, *, raw: bool = False
):
    """Yield ``count`` pods of cluster number ``cluster`` in chunks (deterministic).

    Pod ``i`` is podgen pod ``i % 2000`` under its own name, uid and resourceVersion,
    its JSON spliced from the template's (generating every pod with podgen would
    dominate the run). Each chunk is decoded as a LIST page would be: with ``raw``
    as the synchro's client does with a ``PartialDecoder`` (``RawObject``s keeping
    the bytes received), else each pod into a dict of its own (no object shares
    anything with another, as after a real LIST).
    """
    if not _TEMPLATES:
        for pod in podgen.make_pods(2000, seed):
            meta = pod["metadata"]
            name = meta["name"]
            meta.update(name=_NAME.decode(), uid=_UID.decode(), resourceVersion=_RV.decode())
            _TEMPLATES.append((orjson.dumps(pod), name))
    rng = random.Random(seed * 1000 + cluster)
    decoder = PartialDecoder()
    for start in range(0, count, LOAD_CHUNK):
        items = []
        for i in range(start, min(count, start + LOAD_CHUNK)):
            template, name = _TEMPLATES[i % len(_TEMPLATES)]
            items.append(
                template.replace(_NAME, f"{name}-c{cluster}-{i}"[-63:].lstrip("-").encode())
                .replace(_UID, f"{rng.getrandbits(128):032x}".encode())
                .replace(_RV, str(1000 + i).encode())
            )
        body = b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[%b]}' % b",".join(
            items
        )
        del items
        if raw:
            yield decoder.page(body, "v1").items
        else:
            yield [orjson.loads(memoryview(item)) for item in split_list(body).items or []]


def _clusters(count: int) -> list[str]:
    return [f"member-{i:02d}" for i in range(count)]


# -- server processes ----------------------------------------------------------------------


class _GCPauses:
    """The cyclic collector's pauses in this process, per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._started) * 1000)

    def summary(self) -> dict[int, tuple[int, float, float]]:
        """``{generation: (collections, total ms, longest ms)}``."""
        return {g: (len(p), sum(p), max(p, default=0.0)) for g, p in self.pauses.items()}


def _memory_server(
    conn: Connection, objects: int, clusters: int, compact: bool, freeze_gc: bool
) -> None:
    """Child: a MemoryStorage loaded with the pods, served until told to stop. A compact
    storage gets each pod as the synchro hands it over (a ``RawObject``), else as a dict.
    With ``freeze_gc`` the loaded objects leave the collector's view (``gc.freeze()``), as
    ``kubemirror serve``'s reflectors do after their first sync (``freeze_gc_after_sync``)."""
    from kubemirror.testing import new_storage

    storage = new_storage(compact=compact)
    pods = storage.resource_storage(PODS)
    per = objects // clusters
    started = time.perf_counter()
    for c, name in enumerate(_clusters(clusters)):
        storage.prepare_cluster(name)
        for chunk in _cluster_pods(c, per, raw=compact):
            for pod in chunk:
                pods.upsert(name, pod)
    del chunk, pod
    storage.prepare_cluster(STREAM_CLUSTER)
    load_s = time.perf_counter() - started
    # as the informer does after a LIST: the decoded pods are garbage; give their pages back
    gc.collect()
    bulk.release_freed_memory()
    if freeze_gc:
        gc.freeze()
    asyncio.run(_serve(conn, storage, {"load_s": load_s, "frozen": gc.get_freeze_count()}))


def _postgres_server(conn: Connection, dsn: str) -> None:
    """Child: one PostgresStorage replica, served until killed or told to stop."""
    from kubemirror.multicluster.postgres import PostgresStorage

    storage = PostgresStorage(dsn)
    asyncio.run(_serve(conn, storage, {}))


async def _serve(conn: Connection, storage: Any, info: dict[str, Any]) -> None:
    server = KubeApiServer(storage, default_cluster=STREAM_CLUSTER)
    await storage.start()
    async with server:
        info.update(port=server.port, rss=_rss_bytes(os.getpid()))
        pauses = _GCPauses()
        conn.send(info)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        conn.send({"gc": pauses.summary()})
    await storage.stop()


# -- loading PostgreSQL ----------------------------------------------------------------------


async def _load_postgres(dsn: str, objects: int, clusters: int) -> dict[str, Any]:
    from kubemirror.multicluster.postgres import PostgresStorage

    storage = PostgresStorage(dsn, retention=max(objects * 2, 1_000_000))
    for info in resources.BUILTIN_RESOURCES:
        storage.new_resource_storage(info)
    started = time.perf_counter()
    async with storage:
        storage.prepare_cluster(STREAM_CLUSTER)
        per = objects // clusters
        for c, name in enumerate(_clusters(clusters)):
            storage.prepare_cluster(name)
            store = storage.resource_storage(PODS).cluster_store(name)
            for chunk in _cluster_pods(c, per):
                for pod in chunk:
                    store.add(pod)
                await storage.flush()
        load_s = time.perf_counter() - started
        async with storage._connection() as conn:
            cur = await conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relname IN ('kubemirror_objects', 'kubemirror_events') "
            )
            row = await cur.fetchone()
            size = int(row[0]) if row and row[0] is not None else 0
            cur = await conn.execute("SELECT pg_total_relation_size('kubemirror_objects')")
            row = await cur.fetchone()
            objects_size = int(row[0]) if row else 0
    return {"load_s": load_s, "size": size, "objects_size": objects_size}


# -- measurements --------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _list_latencies(
    http: aiohttp.ClientSession, urls: list[str], selector: str, pages: int
) -> list[float]:
    """``pages`` LIST pages (limit 500): first pages and their continuations, round-robin."""
    out: list[float] = []
    token = ""
    i = 0
    while len(out) < pages:
        params = {"limit": "500"}
        if selector:
            params["labelSelector"] = selector
        if token:
            params["continue"] = token
        url = urls[i % len(urls)]
        i += 1
        started = time.perf_counter()
        async with http.get(f"{url}/api/v1/pods", params=params) as resp:
            body = await resp.read()
        out.append((time.perf_counter() - started) * 1000)
        assert resp.status == 200, body[:300]
        meta = orjson.loads(body)["metadata"]
        token = meta.get("continue", "") if len(out) % 5 else ""  # 1 first page, 4 continued
    return out


def _stream_pod(i: int, stamp: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"s-{i % 200}",
            "namespace": STREAM_NS,
            "labels": {"app": "stream"},
            "annotations": {"bench/sent": repr(stamp), "bench/seq": str(i)},
        },
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


@dataclass
class Watcher:
    """One watch stream: where it reads, what it got."""

    index: int
    url: str
    rv: str
    seqs: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    reconnects: int = 0
    resumed_at: float | None = None


async def _watch(
    http: aiohttp.ClientSession,
    watcher: Watcher,
    urls: list[str],
    dead: set[str],
    expected: int,
    done: asyncio.Event,
) -> None:
    while len(watcher.seqs) < expected and not done.is_set():
        params = {"watch": "1", "resourceVersion": watcher.rv, "allowWatchBookmarks": "true"}
        try:
            async with http.get(
                f"{watcher.url}/api/v1/namespaces/{STREAM_NS}/pods", params=params
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"watch answered {resp.status}: {await resp.text()}")
                async for line in resp.content:
                    event = orjson.loads(line)
                    meta = event["object"]["metadata"]
                    watcher.rv = meta["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    now = time.time()
                    annotations = meta.get("annotations") or {}
                    watcher.seqs.add(int(annotations["bench/seq"]))
                    watcher.latencies.append((now - float(annotations["bench/sent"])) * 1000)
                    if watcher.reconnects and watcher.resumed_at is None:
                        watcher.resumed_at = time.monotonic()
                    if len(watcher.seqs) >= expected:
                        return
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            pass
        if done.is_set():
            return
        # the replica is gone (or the stream ended): resume on the next live one
        alive = [u for u in urls if u not in dead]
        watcher.url = alive[(watcher.index + watcher.reconnects) % len(alive)]
        watcher.reconnects += 1
        await asyncio.sleep(0.05)


async def _measure(args: argparse.Namespace, urls: list[str], kill: Any) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        plain = await _list_latencies(http, urls, "", args.pages)
        selected = await _list_latencies(http, urls, "app=api", args.pages)
        # the stream namespace exists with its pods before the watches start
        writer_url = urls[-1]
        for i in range(200):
            async with http.post(
                f"{writer_url}/api/v1/namespaces/{STREAM_NS}/pods", json=_stream_pod(i, 0.0)
            ) as resp:
                assert resp.status in (201, 409), await resp.text()
        async with http.get(f"{writer_url}/api/v1/namespaces/{STREAM_NS}/pods") as resp:
            start_rv = (await resp.json())["metadata"]["resourceVersion"]
        dead: set[str] = set()
        done = asyncio.Event()
        watchers = [Watcher(i, urls[i % len(urls)], start_rv) for i in range(args.watchers)]
        tasks = [
            asyncio.ensure_future(_watch(http, w, urls, dead, args.events, done))
            for w in watchers
        ]
        await asyncio.sleep(1.0)  # let every watch open
        killed_at: float | None = None
        interval = 1.0 / args.rate
        started = time.perf_counter()
        for i in range(args.events):
            target = started + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if kill is not None and i == args.events // 2 and len(urls) > 1:
                dead.add(urls[0])
                kill()
                killed_at = time.monotonic()
            pod = _stream_pod(200 + i, time.time())
            pod["metadata"]["name"] = f"s-{i % 200}"
            async with http.put(
                f"{writer_url}/api/v1/namespaces/{STREAM_NS}/pods/s-{i % 200}", json=pod
            ) as resp:
                assert resp.status == 200, await resp.text()
        write_s = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.drain):
                await asyncio.gather(*tasks)
        done.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        delivered_s = time.perf_counter() - started
    expected = set(range(200, 200 + args.events))
    lost = sum(len(expected - w.seqs) for w in watchers)
    latencies = [x for w in watchers for x in w.latencies]
    resumed = [w.resumed_at for w in watchers if w.resumed_at is not None]
    return {
        "list_plain": plain,
        "list_selected": selected,
        "latencies": latencies,
        "lost": lost,
        "delivered": len(latencies),
        "delivered_s": delivered_s,
        "write_s": write_s,
        "reconnected": sum(1 for w in watchers if w.reconnects),
        "recovery_s": (max(resumed) - killed_at) if resumed and killed_at else None,
    }


# -- main ----------------------------------------------------------------------------------


def _start_children(
    ctx: mp.context.SpawnContext, target: Any, args_list: list[tuple[Any, ...]]
) -> list[tuple[Any, Connection, dict[str, Any]]]:
    children = []
    for extra in args_list:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, *extra), daemon=True)
        proc.start()
        children.append((proc, parent))
    out = []
    for proc, parent in children:
        if not parent.poll(1800):
            raise RuntimeError("a server process did not start")
        out.append((proc, parent, parent.recv()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", choices=["memory", "postgres"], default="memory")
    parser.add_argument("--quick", action="store_true", help="100k pods, 5 clusters, 200 watchers")
    parser.add_argument("--objects", type=positive_int)
    parser.add_argument("--clusters", type=positive_int)
    parser.add_argument("--watchers", type=positive_int)
    parser.add_argument("--replicas", type=positive_int, default=3,
                        help="PostgreSQL replicas (default 3)")
    parser.add_argument("--events", type=positive_int,
                        help="stream writes (default 1,000; full 5,000)")
    parser.add_argument("--rate", type=positive_float, default=200.0,
                        help="stream writes per second")
    parser.add_argument("--pages", type=positive_int, default=200, help="LIST pages per variant")
    parser.add_argument("--drain", type=positive_float, default=30.0,
                        help="seconds to wait for delivery")
    parser.add_argument("--dsn", help="PostgreSQL URL (default: a throw-away server)")
    parser.add_argument(
        "--no-freeze-gc",
        action="store_true",
        help="memory server: leave the loaded objects to the cyclic GC (serve --no-freeze-gc)",
    )
    parser.add_argument(
        "--dict-objects",
        action="store_true",
        help="memory storage keeps decoded dicts (default: compact, the JSON bytes)",
    )
    args = parser.parse_args()
    full = not args.quick
    args.objects = args.objects or (1_000_000 if full else 100_000)
    args.clusters = args.clusters or (10 if full else 5)
    args.watchers = args.watchers or (1_000 if full else 200)
    args.events = args.events or (5_000 if full else 1_000)
    replicas = args.replicas if args.storage == "postgres" else 1
    layout = "" if args.storage == "postgres" else (
        " (decoded dicts)" if args.dict_objects else " (compact)"
    )
    print(
        f"bench_scale: {args.objects:,} podgen pods (seed 42) in {args.clusters} clusters, "
        f"storage {args.storage}{layout}, {replicas} server process(es), {args.watchers} watchers, "
        f"{args.events:,} stream writes at {args.rate:.0f}/s, {args.pages} LIST pages per "
        f"variant; {os.cpu_count()} CPUs",
        flush=True,
    )
    ctx = mp.get_context("spawn")
    pg_server = None
    size_label = ""
    info: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if args.storage == "postgres":
            dsn = args.dsn
            if dsn is None:
                from kubemirror.testing.postgres import PostgresServer

                pg_server = stack.enter_context(PostgresServer())
                dsn = pg_server.dsn
            info = asyncio.run(_load_postgres(dsn, args.objects, args.clusters))
            size = info["size"]
            size_label = (
                f"table+index {size / 1e9:.2f} GB (objects {info['objects_size'] / 1e9:.2f} GB, "
                f"rest the event log)"
            )
            children = _start_children(ctx, _postgres_server, [(dsn,)] * replicas)
        else:
            children = _start_children(
                ctx,
                _memory_server,
                [(args.objects, args.clusters, not args.dict_objects, not args.no_freeze_gc)],
            )
            info = children[0][2]
            size = info["rss"]
            size_label = f"server RSS {size / 1e9:.2f} GB"
        frozen = (
            f"; {info['frozen']:,} objects frozen out of the GC" if info.get("frozen") else ""
        )
        print(f"loaded in {info['load_s']:.1f} s; {size_label}{frozen}", flush=True)
        urls = [f"http://127.0.0.1:{c[2]['port']}" for c in children]

        def kill_first() -> None:
            os.kill(children[0][0].pid, signal.SIGKILL)

        client_pauses = _GCPauses()  # the watchers' process: its own pauses delay receipt
        result = asyncio.run(
            _measure(args, urls, kill_first if args.storage == "postgres" else None)
        )
        gc.callbacks.remove(client_pauses._on_gc)
        gc_pauses: list[dict[int, tuple[int, float, float]]] = []
        for proc, conn, _ in children:
            if proc.is_alive():
                with contextlib.suppress(OSError, BrokenPipeError, EOFError):
                    conn.send("stop")
                    if conn.poll(30):
                        gc_pauses.append(conn.recv()["gc"])
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
    plain, selected = result["list_plain"], result["list_selected"]
    lat = result["latencies"]
    list_p99 = max(_pct(plain, 0.99), _pct(selected, 0.99))
    rows = [
        ("LIST page (limit 500), no selector", _pct(plain, 0.5), _pct(plain, 0.99)),
        ("LIST page (limit 500), app=api", _pct(selected, 0.5), _pct(selected, 0.99)),
        ("watch event, write to receipt", _pct(lat, 0.5), _pct(lat, 0.99)),
    ]
    print(f"{'measure':<40} {'p50 ms':>10} {'p99 ms':>10}")
    for name, p50, p99 in rows:
        print(f"{name:<40} {p50:>10.1f} {p99:>10.1f}")
    for who, pauses in [("server", p) for p in gc_pauses] + [
        ("client", client_pauses.summary())
    ]:
        print(
            f"{who} GC pauses while measuring: "
            + "; ".join(
                f"gen {g}: {n:,} collections, {total:,.0f} ms in all, longest {longest:,.1f} ms"
                for g, (n, total, longest) in sorted(pauses.items())
            )
        )
    rate = result["delivered"] / result["delivered_s"] if result["delivered_s"] else 0.0
    print(
        f"watch: {result['delivered']:,} events delivered to {args.watchers} watchers in "
        f"{result['delivered_s']:.1f} s ({rate:,.0f} events/s; writes took "
        f"{result['write_s']:.1f} s), lost {result['lost']}"
    )
    if result["recovery_s"] is not None:
        print(
            f"replica killed mid-stream: {result['reconnected']} watchers resumed on the "
            f"others, all within {result['recovery_s']:.2f} s of the kill"
        )
    print(f"mean {statistics.fmean(lat) if lat else float('nan'):.1f} ms over {len(lat):,} events")
    print(
        f"scale: {args.objects} objects in {args.clusters} clusters ({args.storage}), "
        f"{size / 1e9:.2f} GB, list p99 {list_p99:.1f} ms, {args.watchers} watchers p99 "
        f"{_pct(lat, 0.99):.1f} ms, lost {result['lost']}"
    )


if __name__ == "__main__":
    main()
