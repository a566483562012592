"""Benchmark kubemirror's SharedInformer against the official client and a raw aiohttp loop.

Side by side in one run, on the same server and the same generated Pods
(``podgen``: ~6 KB each with managedFields, fixed seed), each contender in its
own fresh subprocess (so peak RSS is its own):

* ``kubemirror``: ``SharedInformer(ListWatch(KubeClient, pods))`` -- paginated LIST
  (500/page) into DeltaFIFO -> Indexer, then WATCH into the same pipeline (no handler);
* ``raw``: the practical limit -- aiohttp, large chunks split by hand, orjson, GC
  paused for the whole paginated list, objects kept in a plain dict;
* ``official``: the official ``kubernetes`` client as documented (paginated
  ``list_pod_for_all_namespaces`` and ``watch.Watch().stream``, model objects kept in
  a dict). It needs ~80 KB and ~1 ms per Pod, so it runs on ``--official-size``
  pods/events (default 10k) and its rates are compared per object.

The source is a minimal aiohttp server in another process serving pre-encoded
Pods (LIST with limit/continue; WATCH streaming MODIFIED events for those pods),
not the project's ``KubeApiServer``: its per-request work (storage, selectors,
resourceVersion stamping) would make the server, not the client, the bottleneck
at 20k+ events/s on this 2-core machine. Each watch waits for the client's
``/go`` (sent once its initial sync is complete), so event throughput is measured
on its own.

Printed: initial-sync objects/s, watch events/s, peak RSS, RSS per stored Pod and
ratios. Targets: kubemirror >= 10x the official client, >= 0.5x the raw loop,
and RSS per Pod no more than the raw loop's decoded dicts.

    python benchmarks/bench_informer.py            # 100k pods + 100k events (~4 GB RAM)
    python benchmarks/bench_informer.py --quick    # 10k pods + 10k events
    python benchmarks/bench_informer.py --size 50000 --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "src"))

PAGE = 500


def rss_kb() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KB."""
    cur = peak = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- the source server (separate process) ------------------------------------------------------


def serve(size: int, seed: int) -> None:
    import orjson
    from aiohttp import web

    import podgen

    templates: list[tuple[bytes, bytes]] = []
    for pod in podgen.make_pods(size, seed):
        pod["metadata"]["resourceVersion"] = "@RV@"
        head, tail = orjson.dumps(pod).split(b"@RV@")
        templates.append((head, tail))
    gate = asyncio.Event()
    settings = {"events": 0}

    async def pods(request: web.Request) -> web.StreamResponse:
        q = request.query
        if (q.get("watch") or "").lower() in ("true", "1"):
            return await watch(request, int(q.get("resourceVersion") or size))
        offset = int(q.get("continue") or 0)
        if offset == 0:
            gate.clear()
        limit = int(q.get("limit") or 0) or size
        end = min(size, offset + limit)
        cont = str(end) if end < size else ""
        items = b",".join(h + str(i + 1).encode() + t
                          for i, (h, t) in enumerate(templates[offset:end], offset))
        meta = orjson.dumps({"resourceVersion": str(size), "continue": cont})
        body = (b'{"kind":"PodList","apiVersion":"v1","metadata":' + meta + b',"items":['
                + items + b"]}")
        return web.Response(body=body, content_type="application/json")

    async def watch(request: web.Request, from_rv: int) -> web.StreamResponse:
        total = settings["events"]
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await gate.wait()
        i = max(0, from_rv - size)
        while i < total:
            batch = []
            for j in range(i, min(total, i + 200)):
                h, t = templates[j % size]
                batch.append(b'{"type":"MODIFIED","object":' + h + str(size + j + 1).encode()
                             + t + b"}\n")
            await resp.write(b"".join(batch))
            i += len(batch)
        if i >= total:  # nothing more to send: hold the watch open like a quiet server
            await asyncio.sleep(float(request.query.get("timeoutSeconds") or 60))
        return resp

    async def go(request: web.Request) -> web.Response:
        gate.set()
        return web.Response(text="ok")

    async def set_events(request: web.Request) -> web.Response:
        settings["events"] = int(request.query["n"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    app.router.add_get("/go", go)
    app.router.add_get("/events", set_events)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- contenders (each in its own subprocess) ---------------------------------------------------


async def run_kubemirror(url: str, size: int, events: int, freeze: bool) -> dict[str, Any]:
    from kubemirror.client import ClientConfig, KubeClient
    from kubemirror.informer import SharedInformer
    from kubemirror.listwatch import ListWatch
    from kubemirror.types import GroupVersionResource

    base, _ = rss_kb()
    client = KubeClient(ClientConfig(url))
    informer = SharedInformer(ListWatch(client, GroupVersionResource("", "v1", "pods")),
                              page_size=PAGE, freeze_gc_after_sync=freeze)
    t0 = time.perf_counter()
    c0 = time.process_time()
    informer.start()
    await informer.wait_for_sync()
    t1 = time.perf_counter()
    c1 = time.process_time()
    after_sync, _ = rss_kb()
    assert len(informer.get_indexer()) == size
    async with client._get_session().get(url + "/go") as r:
        await r.read()
    t2 = time.perf_counter()
    c2 = time.process_time()
    stats = informer.reflector.stats
    # Poll rather than add a handler: the measured pipeline stays handler-free.
    while stats.events < events or informer.queue_depth:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    t3 = time.perf_counter()
    c3 = time.process_time()
    _, peak = rss_kb()
    await informer.stop()
    await client.close()
    return {"sync": t1 - t0, "sync_cpu": c1 - c0, "events": t3 - t2, "events_cpu": c3 - c2,
            "base": base, "after_sync": after_sync, "peak": peak}


async def run_raw(url: str, size: int, events: int, freeze: bool) -> dict[str, Any]:
    import aiohttp
    import orjson

    base, _ = rss_kb()
    store: dict[str, Any] = {}
    t0 = time.perf_counter()
    c0 = time.process_time()
    async with aiohttp.ClientSession(read_bufsize=1 << 20) as session:
        cont = ""
        gc.disable()  # paused for the whole list, re-enabled after it
        while True:
            params = {"limit": str(PAGE)}
            if cont:
                params["continue"] = cont
            async with session.get(url + "/api/v1/pods", params=params) as resp:
                body = await resp.read()
            doc = orjson.loads(body)
            for item in doc["items"]:
                meta = item["metadata"]
                store[f"{meta['namespace']}/{meta['name']}"] = item
            cont = doc["metadata"].get("continue") or ""
            if not cont:
                break
        rv = doc["metadata"]["resourceVersion"]
        del doc, body
        gc.enable()
        if freeze:
            gc.freeze()
        t1 = time.perf_counter()
        c1 = time.process_time()
        after_sync, _ = rss_kb()
        assert len(store) == size
        params = {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "600"}
        async with session.get(url + "/api/v1/pods", params=params) as resp:
            async with session.get(url + "/go") as r:
                await r.read()
            t2 = time.perf_counter()
            c2 = time.process_time()
            n = 0
            tail = b""
            while n < events:
                chunk = await resp.content.readany()
                if not chunk:
                    break
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    obj = orjson.loads(line)["object"]
                    meta = obj["metadata"]
                    store[f"{meta['namespace']}/{meta['name']}"] = obj
                    n += 1
            t3 = time.perf_counter()
            c3 = time.process_time()
    _, peak = rss_kb()
    return {"sync": t1 - t0, "sync_cpu": c1 - c0, "events": t3 - t2, "events_cpu": c3 - c2,
            "base": base, "after_sync": after_sync, "peak": peak}


def run_official(url: str, size: int, events: int) -> dict[str, Any]:
    import urllib.request

    from kubernetes import client as k8s
    from kubernetes import watch

    base, _ = rss_kb()
    cfg = k8s.Configuration()
    cfg.host = url
    api = k8s.CoreV1Api(k8s.ApiClient(cfg))
    store: dict[str, Any] = {}
    t0 = time.perf_counter()
    c0 = time.process_time()
    cont = None
    while True:
        page = api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont)
        for pod in page.items:
            store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
        cont = page.metadata._continue
        if not cont or len(store) >= size:  # a prefix of the server's pods when size < all
            break
    rv = page.metadata.resource_version
    del page
    t1 = time.perf_counter()
    c1 = time.process_time()
    after_sync, _ = rss_kb()
    assert len(store) == size
    urllib.request.urlopen(url + "/go").read()
    t2 = time.perf_counter()
    c2 = time.process_time()
    w = watch.Watch()
    stream = w.stream(api.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=600)
    for n, event in enumerate(stream, 1):
        pod = event["object"]
        store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
        if n >= events:
            w.stop()
            break
    t3 = time.perf_counter()
    c3 = time.process_time()
    _, peak = rss_kb()
    return {"sync": t1 - t0, "sync_cpu": c1 - c0, "events": t3 - t2, "events_cpu": c3 - c2,
            "base": base, "after_sync": after_sync, "peak": peak}


def contender_main(args: argparse.Namespace) -> None:
    if args.contender == "kubemirror":
        result = asyncio.run(run_kubemirror(args.url, args.size, args.events, args.freeze))
    elif args.contender == "raw":
        result = asyncio.run(run_raw(args.url, args.size, args.events, args.freeze))
    else:
        result = run_official(args.url, args.size, args.events)
    print(json.dumps(result), flush=True)


# -- orchestration -----------------------------------------------------------------------------


def http_get(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(url).read()


def run_contender(
    name: str, url: str, size: int, events: int, freeze: bool
) -> dict[str, Any] | None:
    http_get(f"{url}/events?n={events}")
    cmd = [sys.executable, __file__, "--contender", name, "--url", url, "--size", str(size),
           "--events", str(events)]
    if freeze:
        cmd.append("--freeze")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(f"{name} failed:\n{out.stderr}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(size=size, n_events=events)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=None, help="default: --size")
    parser.add_argument("--official-size", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="10k pods and events")
    parser.add_argument("--repeat", type=int, default=1, help="best of N for kubemirror/raw")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-freeze", dest="freeze", action="store_false",
                        help="do not gc.freeze() after the initial sync (both contenders)")
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--freeze", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.size, args.seed)
        return
    if args.contender:
        contender_main(args)
        return
    if args.quick:
        args.size = 10_000
    events = args.events or args.size
    official_size = min(args.size, args.official_size)
    official_events = min(events, args.official_size)
    freeze = args.freeze if "--no-freeze" in sys.argv else True

    server = subprocess.Popen([sys.executable, __file__, "--serve", "--size", str(args.size),
                               "--seed", str(args.seed)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        print(f"bench_informer: {args.size} pods (~6 KB, podgen seed {args.seed}), "
              f"{events} MODIFIED events; official client on {official_size} pods / "
              f"{official_events} events; gc.freeze after sync: {freeze}")
        print(f"python {platform.python_version()}, {os.cpu_count()} cores, "
              f"server pid {server.pid} (separate process)\n")
        results: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):
            for name in ("kubemirror", "raw"):
                r = run_contender(name, url, args.size, events, freeze)
                best = results.get(name)
                if r is not None and (
                    best is None or r["sync"] + r["events"] < best["sync"] + best["events"]
                ):
                    results[name] = r
        if not args.skip_official:
            r = run_contender("official", url, official_size, official_events, False)
            if r is not None:
                results["official"] = r
    finally:
        server.terminate()
        server.wait()
    report(results)


def report(results: dict[str, dict[str, Any]]) -> None:
    header = (f"{'contender':<12}{'pods':>8}{'sync s':>9}{'obj/s':>10}{'cpu obj/s':>11}"
              f"{'events':>8}{'ev/s':>10}{'cpu ev/s':>10}{'peak RSS MB':>13}{'KB/pod':>8}")
    print(header)
    print("-" * len(header))
    rates: dict[str, tuple[float, float, float]] = {}
    for name, r in results.items():
        obj_s = r["size"] / r["sync"]
        ev_s = r["n_events"] / r["events"]
        per_pod = (r["after_sync"] - r["base"]) / r["size"]
        rates[name] = (obj_s, ev_s, per_pod)
        cpu_obj_s = r["size"] / r["sync_cpu"]
        cpu_ev_s = r["n_events"] / r["events_cpu"]
        print(f"{name:<12}{r['size']:>8}{r['sync']:>9.2f}{obj_s:>10,.0f}{cpu_obj_s:>11,.0f}"
              f"{r['n_events']:>8}{ev_s:>10,.0f}{cpu_ev_s:>10,.0f}{r['peak'] / 1024:>13,.0f}"
              f"{per_pod:>8.1f}")
    km = rates.get("kubemirror")
    if km is None:
        return
    print()
    for base in ("raw", "official"):
        if base in rates:
            b = rates[base]
            print(f"kubemirror / {base:<9} sync {km[0] / b[0]:6.2f}x   events {km[1] / b[1]:6.2f}x"
                  f"   KB/pod {km[2] / b[2]:5.2f}x")
    print("(ratios use wall-clock rates; 'cpu' columns divide by the client process's CPU "
          "time,\n which neighbours on a shared machine do not inflate)")
    print("\ntargets: >= 10x official, >= 0.5x raw (sync and events); KB/pod <= raw's")


if __name__ == "__main__":
    main()
