"""kubemirror against every Python peer, side by side in one run: the reproducible suite.

One pre-encoded aiohttp server in its own process (``bench_informer.serve``:
``podgen`` Pods of ~6 KB with managedFields, paginated LIST, WATCH streaming
MODIFIED events released by ``/go`` once the contender has synced) serves every
contender, each in its own fresh subprocess (so peak RSS is its own):

* ``km-informer``  SharedInformer, dict Indexer + namespace index (DeltaFIFO pipeline)
* ``km-informer-s`` the same with ``ignore_fields=MIRROR_IGNORE_FIELDS`` (managedFields cut)
* ``km-compact``   SharedInformer(store="compact"): CompactIndexer + namespace index, with
                   its defaults (managedFields cut from the bytes, logged)
* ``km-compact-full`` the same with ``ignore_fields=()``: every byte received kept
* ``km-watcher``   Watcher + MemoryStore indexed by namespace/name
* ``raw``          aiohttp + orjson loop, GC paused for the list, dict store (the limit)
* ``lightkube``    lightkube 1.0 sync Client: paginated list kept in a dict, bare watch decode
* ``official``     kubernetes client models (list + watch.Watch into a dict)
* ``official-raw`` kubernetes client, ``_preload_content=False`` list + ``deserialize=False``
* ``k8s-asyncio``  kubernetes_asyncio models

The model-building clients need ~1 ms and ~80 KB per Pod, so they run on
``--official-size`` objects (default 10k) and are compared per object.

Columns: initial sync objects/s, watch events/s, peak RSS during the sync, bytes
per stored Pod (settled RSS growth over the sync / pods: freed memory handed back
first), and peak-sync growth / settled store growth.
Writes ``benchmarks/results/benchmark.md`` and ``benchmark.png``.

    python benchmarks/run_all.py            # 100k pods, 100k MODIFIED events
    python benchmarks/run_all.py --quick    # 10k: under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import bench_informer  # noqa: E402
from bench_informer import PAGE, rss_kb  # noqa: E402

RESULTS = os.path.join(HERE, "results")
FULL = ("km-informer", "km-informer-s", "km-compact", "km-compact-full", "km-watcher", "raw",
        "lightkube")
SUBSET = ("official", "official-raw", "k8s-asyncio")


def settled_rss_kb() -> tuple[int, int]:
    """(RSS once freed memory is handed back to the OS, peak RSS so far) in KB.

    The peak is read first (trimming never lowers it); then a collection and glibc's
    ``malloc_trim`` return what the sync freed (list pages, decode buffers), so the
    first figure is the store's own footprint and ``peak / store`` measures the
    transient overhead of the sync instead of comparing RSS with itself.
    """
    _, peak = rss_kb()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    current, _ = rss_kb()
    return current, peak


def _result(t: list[float], c: list[float], base: int, after_sync: int, peak_sync: int
            ) -> dict[str, Any]:
    _, peak = rss_kb()
    return {"sync": t[1] - t[0], "sync_cpu": c[1] - c[0], "events": t[3] - t[2],
            "events_cpu": c[3] - c[2], "base": base, "after_sync": after_sync,
            "peak_sync": peak_sync, "peak": peak}


def _mark(t: list[float], c: list[float]) -> None:
    t.append(time.perf_counter())
    c.append(time.process_time())


async def _go(url: str) -> None:
    await asyncio.to_thread(bench_informer.http_get, url + "/go")


async def run_informer(url: str, size: int, events: int, store: str) -> dict[str, Any]:
    from kubemirror import keys
    from kubemirror.client import ClientConfig, KubeClient
    from kubemirror.informer import MIRROR_IGNORE_FIELDS, SharedInformer
    from kubemirror.listwatch import ListWatch
    from kubemirror.types import GroupVersionResource

    base, _ = rss_kb()
    t: list[float] = []
    c: list[float] = []
    client = KubeClient(ClientConfig(url))
    ignore = {"dict": (), "dict-s": MIRROR_IGNORE_FIELDS, "compact": None, "compact-full": ()}
    informer = SharedInformer(
        ListWatch(client, GroupVersionResource("", "v1", "pods")),
        indexers={"namespace": keys.meta_namespace_index_func},
        store="compact" if store.startswith("compact") else "dict",
        ignore_fields=ignore[store], page_size=PAGE, freeze_gc_after_sync=True)
    _mark(t, c)
    informer.start()
    await informer.wait_for_sync()
    _mark(t, c)
    after_sync, peak_sync = settled_rss_kb()
    assert len(informer.get_indexer()) == size
    await _go(url)
    _mark(t, c)
    stats = informer.reflector.stats
    while stats.events < events or informer.queue_depth:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    _mark(t, c)
    result = _result(t, c, base, after_sync, peak_sync)
    await informer.stop()
    await client.close()
    return result


async def run_watcher(url: str, size: int, events: int) -> dict[str, Any]:
    from kubemirror.client import ClientConfig, KubeClient
    from kubemirror.types import GroupVersionResource
    from kubemirror.watcher import Watcher, WatcherConfig

    base, _ = rss_kb()
    t: list[float] = []
    c: list[float] = []
    client = KubeClient(ClientConfig(url))
    config = WatcherConfig(gvr=GroupVersionResource("", "v1", "pods"),
                           index_by=["metadata.namespace", "metadata.name"],
                           on_change=lambda store, stats: None, debounce_interval=0.5)
    watcher = Watcher(config, client, page_size=PAGE, freeze_gc_after_sync=True)
    _mark(t, c)
    watcher.start()
    await watcher.wait_for_sync()
    _mark(t, c)
    after_sync, peak_sync = settled_rss_kb()
    assert watcher.store.size == size
    await _go(url)
    _mark(t, c)
    stats = watcher.reflector.stats
    while stats.events < events:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    _mark(t, c)
    result = _result(t, c, base, after_sync, peak_sync)
    await watcher.stop()
    await client.close()
    return result


async def run_raw(url: str, size: int, events: int) -> dict[str, Any]:
    result = await bench_informer.run_raw(url, size, events, True)
    result["peak_sync"] = result["peak"]  # not separated there; conservative
    return result


def run_lightkube(url: str, size: int, events: int) -> dict[str, Any]:
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import Pod

    base, _ = rss_kb()
    t: list[float] = []
    c: list[float] = []
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "bench", "cluster": {"server": url}}],
        "users": [{"name": "bench", "user": {}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
    }
    client = Client(KubeConfig.from_dict(kubeconfig), field_manager="bench")
    store: dict[str, Any] = {}
    _mark(t, c)
    for pod in client.list(Pod, namespace="*", chunk_size=PAGE):
        store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
    _mark(t, c)
    after_sync, peak_sync = settled_rss_kb()
    assert len(store) == size
    bench_informer.http_get(url + "/go")
    _mark(t, c)
    watch = client.watch(Pod, namespace="*", resource_version=str(size))
    for n, _event in enumerate(watch, 1):  # bare decode: lightkube keeps no store
        if n >= events:
            break
    _mark(t, c)
    return _result(t, c, base, after_sync, peak_sync)


def run_official(url: str, size: int, events: int, raw: bool) -> dict[str, Any]:
    import orjson
    from kubernetes import client as k8s
    from kubernetes import watch

    base, _ = rss_kb()
    t: list[float] = []
    c: list[float] = []
    cfg = k8s.Configuration()
    cfg.host = url
    api = k8s.CoreV1Api(k8s.ApiClient(cfg))
    store: dict[str, Any] = {}
    _mark(t, c)
    cont = None
    while True:
        if raw:
            resp = api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont,
                                                   _preload_content=False)
            doc = orjson.loads(resp.data)
            for pod in doc["items"]:
                meta = pod["metadata"]
                store[f"{meta['namespace']}/{meta['name']}"] = pod
            cont = doc["metadata"].get("continue")
        else:
            page = api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont)
            for pod in page.items:
                store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
            cont = page.metadata._continue
        if not cont or len(store) >= size:
            break
    _mark(t, c)
    after_sync, peak_sync = settled_rss_kb()
    assert len(store) == size
    bench_informer.http_get(url + "/go")
    _mark(t, c)
    w = watch.Watch()
    kwargs: dict[str, Any] = {"deserialize": False} if raw else {}
    stream = w.stream(api.list_pod_for_all_namespaces, resource_version=str(size),
                      timeout_seconds=600, **kwargs)
    for n, event in enumerate(stream, 1):
        pod = event["object"]
        if raw:
            meta = pod["metadata"]
            store[f"{meta['namespace']}/{meta['name']}"] = pod
        else:
            store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
        if n >= events:
            w.stop()
            break
    _mark(t, c)
    return _result(t, c, base, after_sync, peak_sync)


async def run_k8s_asyncio(url: str, size: int, events: int) -> dict[str, Any]:
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import watch

    base, _ = rss_kb()
    t: list[float] = []
    c: list[float] = []
    cfg = k8s.Configuration()
    cfg.host = url
    store: dict[str, Any] = {}
    async with k8s.ApiClient(cfg) as api_client:
        api = k8s.CoreV1Api(api_client)
        _mark(t, c)
        cont = None
        while True:
            page = await api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont)
            for pod in page.items:
                store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
            cont = page.metadata._continue
            if not cont or len(store) >= size:
                break
        _mark(t, c)
        after_sync, peak_sync = settled_rss_kb()
        assert len(store) == size
        await _go(url)
        _mark(t, c)
        n = 0
        w = watch.Watch()
        async with w.stream(api.list_pod_for_all_namespaces, resource_version=str(size),
                            timeout_seconds=600) as stream:
            async for event in stream:
                pod = event["object"]
                store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
                n += 1
                if n >= events:
                    break
        _mark(t, c)
    return _result(t, c, base, after_sync, peak_sync)


_LIBRARIES = {
    "km": ("kubemirror.informer", "kubemirror.watcher", "kubemirror.client"),
    "raw": ("aiohttp", "orjson"),
    "lightkube": ("lightkube", "lightkube.resources.core_v1"),
    "official": ("kubernetes.client", "kubernetes.watch"),
    "k8s": ("kubernetes_asyncio.client", "kubernetes_asyncio.watch"),
}


def warm_memory(nbytes: int) -> None:
    """Fault in and free ``nbytes`` of anonymous memory, right before a contender's run.

    This sandbox is a VM whose host backs guest memory lazily and takes freed
    pages back (free page reporting): a page touched for the first time since
    costs up to ~2.3 s of system time per GiB, one recently freed ~0.4 s. Without
    this, whichever contender follows a small one pays the first kind for its whole
    store and the one after a big one gets the cheap kind: an order effect of 2x
    on 100k-pod syncs. Every contender gets the same warm start instead.
    """
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    with mmap.mmap(-1, nbytes, flags=flags) as region:
        if not getattr(mmap, "MAP_POPULATE", 0):
            for offset in range(0, nbytes, mmap.PAGESIZE):
                region[offset] = 1
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # peak RSS (VmHWM) starts again from here, without the warm-up


def contender_main(name: str, url: str, size: int, events: int, warm: bool) -> None:
    for module in _LIBRARIES[name.split("-")[0]]:
        importlib.import_module(module)
    if warm:
        per_pod = 100_000 if name in SUBSET else 40_000  # above each one's peak per pod
        warm_memory(max(256 << 20, size * per_pod))
    if name == "km-informer":
        result = asyncio.run(run_informer(url, size, events, "dict"))
    elif name == "km-informer-s":
        result = asyncio.run(run_informer(url, size, events, "dict-s"))
    elif name == "km-compact":
        result = asyncio.run(run_informer(url, size, events, "compact"))
    elif name == "km-compact-full":
        result = asyncio.run(run_informer(url, size, events, "compact-full"))
    elif name == "km-watcher":
        result = asyncio.run(run_watcher(url, size, events))
    elif name == "raw":
        result = asyncio.run(run_raw(url, size, events))
    elif name == "lightkube":
        result = run_lightkube(url, size, events)
    elif name in ("official", "official-raw"):
        result = run_official(url, size, events, raw=name == "official-raw")
    else:
        result = asyncio.run(run_k8s_asyncio(url, size, events))
    print(json.dumps(result), flush=True)


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Field-by-field median of one contender's runs, plus the slowest and fastest sync."""
    result = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    result["sync_slowest"] = max(r["sync"] for r in runs)
    result["sync_fastest"] = min(r["sync"] for r in runs)
    return result


def run_contender(name: str, url: str, size: int, events: int, label: str = "",
                  warm: bool = True) -> dict[str, Any] | None:
    bench_informer.http_get(f"{url}/events?n={events}")
    cmd = [sys.executable, __file__, "--contender", name, "--url", url, "--size", str(size),
           "--events", str(events), *([] if warm else ["--no-warm"])]
    print(f"  running {name} ({size} pods, {events} events){label}...", file=sys.stderr,
          flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(f"{name} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(size=size, n_events=events)
    return result


# -- reporting ---------------------------------------------------------------------------------


def rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, r in results.items():
        store_kb = max(1, r["after_sync"] - r["base"])
        out.append({
            "name": name, "size": r["size"], "events": r["n_events"],
            "obj_s": r["size"] / r["sync"], "ev_s": r["n_events"] / r["events"],
            "obj_s_low": r["size"] / r.get("sync_slowest", r["sync"]),
            "obj_s_high": r["size"] / r.get("sync_fastest", r["sync"]),
            "cpu_obj_s": r["size"] / max(r["sync_cpu"], 1e-9),
            "cpu_ev_s": r["n_events"] / max(r["events_cpu"], 1e-9),
            "peak_sync_mb": r["peak_sync"] / 1024, "bytes_pod": store_kb * 1024 / r["size"],
            "peak_ratio": (r["peak_sync"] - r["base"]) / store_kb,
        })
    return out


def ratios(table: list[dict[str, Any]]) -> list[tuple[str, float, float, bool]]:
    """(description, value, target, met) for every target of the issue."""
    by = {r["name"]: r for r in table}
    checks: list[tuple[str, float, float, bool]] = []

    def add(desc: str, value: float, target: float, at_most: bool = False) -> None:
        checks.append((desc, value, target, value <= target if at_most else value >= target))

    lk, off = by.get("lightkube"), by.get("official")
    for km in ("km-informer", "km-informer-s", "km-compact", "km-compact-full", "km-watcher"):
        if km not in by:
            continue
        if lk:
            add(f"{km} sync / lightkube list", by[km]["obj_s"] / lk["obj_s"], 3.0)
        if off:
            add(f"{km} sync / official list", by[km]["obj_s"] / off["obj_s"], 12.0)
    if lk and "km-informer" in by:
        add("km-informer watch (indexed) / lightkube bare watch",
            by["km-informer"]["ev_s"] / lk["ev_s"], 0.8)
    for km in ("km-compact", "km-compact-full"):
        if lk and km in by:
            add(f"{km} watch (store kept) / lightkube bare watch", by[km]["ev_s"] / lk["ev_s"],
                1.5)
        if km in by:
            add(f"{km} bytes per stored pod", by[km]["bytes_pod"], 8192, at_most=True)
    for km in ("km-informer", "km-compact", "km-compact-full"):
        if km in by:
            add(f"{km} peak RSS in sync / final store", by[km]["peak_ratio"], 1.3, at_most=True)
    return checks


def markdown(table: list[dict[str, Any]], checks: list[tuple[str, float, float, bool]],
             header: str) -> str:
    lines = [header, "",
             "| contender | pods | sync obj/s | sync range | watch ev/s | peak RSS in sync (MB) "
             "| bytes/stored pod | peak/store |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['name']} | {r['size']:,} | {r['obj_s']:,.0f} | "
                     f"{r['obj_s_low']:,.0f}-{r['obj_s_high']:,.0f} | {r['ev_s']:,.0f} | "
                     f"{r['peak_sync_mb']:,.0f} | {r['bytes_pod']:,.0f} | "
                     f"{r['peak_ratio']:.2f} |")
    lines += ["", "| target | measured | needed | met |", "|---|---:|---:|:-:|"]
    for desc, value, target, met in checks:
        need = f"<= {target:g}" if "bytes" in desc or "peak" in desc else f">= {target:g}x"
        shown = f"{value:,.0f}" if "bytes" in desc else f"{value:.2f}"
        lines.append(f"| {desc} | {shown} | {need} | {'yes' if met else '**no**'} |")
    return "\n".join(lines) + "\n"


def chart(table: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in table]
    colors = ["#1f77b4" if n.startswith("km-") else "#999999" for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, key, label in zip(
        axes, ("obj_s", "ev_s", "bytes_pod"),
        ("initial sync (objects/s)", "watch (events/s)", "bytes per stored pod (lower is better)"),
        strict=True,
    ):
        values = [r[key] for r in table]
        ax.barh(names, values, color=colors)
        ax.set_title(label)
        ax.invert_yaxis()
        ax.set_xscale("log")
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results: dict[str, dict[str, Any]], header: str, write: bool) -> None:
    table = rows(results)
    head = (f"{'contender':<14}{'pods':>8}{'obj/s':>10}{'range':>16}{'cpu obj/s':>11}{'ev/s':>10}"
            f"{'cpu ev/s':>10}{'peak sync MB':>14}{'B/pod':>8}{'peak/store':>12}")
    print(header)
    print(head)
    print("-" * len(head))
    for r in table:
        span = f"{r['obj_s_low']:,.0f}-{r['obj_s_high']:,.0f}"
        print(f"{r['name']:<14}{r['size']:>8,.0f}{r['obj_s']:>10,.0f}{span:>16}{r['cpu_obj_s']:>11,.0f}"
              f"{r['ev_s']:>10,.0f}{r['cpu_ev_s']:>10,.0f}{r['peak_sync_mb']:>14,.0f}"
              f"{r['bytes_pod']:>8,.0f}{r['peak_ratio']:>12.2f}")
    checks = ratios(table)
    print()
    for desc, value, target, met in checks:
        print(f"{'MET ' if met else 'MISS'} {desc:<58} {value:>10.2f}  (target {target:g})")
    print("(wall-clock rates; 'cpu' columns divide by the client process's CPU time)")
    if write:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "benchmark.md"), "w") as fh:
            fh.write(markdown(table, checks, header))
        chart(table, os.path.join(RESULTS, "benchmark.png"), header.splitlines()[0])
        print(f"\nwrote {RESULTS}/benchmark.md and benchmark.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=None, help="default: --size")
    parser.add_argument("--official-size", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="10k pods and events")
    parser.add_argument("--only", default="", help="comma-separated contenders")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=None,
                        help="fresh processes per contender, rounds interleaved; each figure "
                             "is the median (default: 3, 1 with --quick)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    parser.add_argument("--no-warm", action="store_true",
                        help="do not fault in and free memory before each contender")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        contender_main(args.contender, args.url, args.size, args.events, not args.no_warm)
        return
    if args.quick:
        args.size = 10_000
        args.official_size = min(args.official_size, 5_000)
    events = args.events or args.size
    official_size = min(args.size, args.official_size)
    official_events = min(events, args.official_size)
    repeat = args.repeat or (1 if args.quick else 3)
    wanted = [n for n in (*FULL, *SUBSET) if not args.only or n in args.only.split(",")]
    server = subprocess.Popen(
        [sys.executable, bench_informer.__file__, "--serve", "--size", str(args.size),
         "--seed", str(args.seed)], stdout=subprocess.PIPE, text=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        for round_no in range(repeat):
            shift = round_no % len(wanted)  # each round starts one contender later
            for name in wanted[shift:] + wanted[:shift]:
                subset = name in SUBSET
                r = run_contender(name, url, official_size if subset else args.size,
                                  official_events if subset else events,
                                  f" round {round_no + 1}/{repeat}", warm=not args.no_warm)
                if r is not None:
                    runs[name].append(r)
    finally:
        server.terminate()
        server.wait()
    results = {name: median_result(rs) for name, rs in runs.items() if rs}
    header = (f"run_all: {args.size:,} pods (~6 KB with managedFields, podgen seed {args.seed}), "
              f"{events:,} MODIFIED events; official/k8s-asyncio on {official_size:,} / "
              f"{official_events:,}\npython {platform.python_version()}, {os.cpu_count()} cores, "
              f"pre-encoded aiohttp server in a separate process; each figure is the median "
              f"of {repeat} fresh process{'es' if repeat > 1 else ''} per contender, "
              f"rounds interleaved"
              f"{'' if args.no_warm else '; memory warmed before each (see warm_memory)'}")
    report(results, header, write=not args.no_write)


if __name__ == "__main__":
    main()
