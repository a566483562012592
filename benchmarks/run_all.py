"""kubemirror against every Python peer and client-go, side by side in one run.

One source serves every contender, each in its own fresh subprocess (so peak RSS is
its own): by default run_all's pre-encoded aiohttp server in its own process
(``pod_server.py``: ``podgen`` Pods of ~6 KB with managedFields, paginated
LIST, WATCH streaming MODIFIED events released by ``/go`` once the contender has
synced); with ``--real`` the real kube-apiserver v1.37.2 (envtest), seeded with the
same pods (``real_apiserver``), run_all writing each contender's watch events once
it has synced.

Two kinds of rows in every run (``contenders`` has the code):

*defaults*, each library exactly as its users run it:

* ``km-informer``  SharedInformer, dict Indexer + namespace index, counting handler
* ``km-informer-s`` the same with ``ignore_fields=MIRROR_IGNORE_FIELDS`` (managedFields cut)
* ``km-compact``   SharedInformer(store="compact") with its defaults (managedFields cut)
* ``km-compact-full`` the same with ``ignore_fields=()``: every byte received kept
* ``km-watcher``   Watcher + MemoryStore indexed by namespace/name
* ``lightkube``    lightkube sync Client: paginated list kept in a dict, bare watch decode
* ``client-go``    client-go v0.37.2 SharedIndexInformer, namespace index, counting handler
                   (``benchmarks/clientgo``, built once into a cache; JSON against the bench
                   server, protobuf, its default, against kube-apiserver)
* ``official``     kubernetes client models (list + watch.Watch into a dict)
* ``official-raw`` kubernetes client, ``_preload_content=False`` list + ``deserialize=False``
* ``k8s-asyncio``  kubernetes_asyncio models

*equal GC*, every contender with kubemirror's collector policy (paused for the whole
LIST, ``gc.freeze()`` once synced): ``km-informer-gc``, ``km-compact-gc``, ``raw``
(aiohttp + orjson loop, dict store: the practical limit), ``lightkube-gc``,
``official-gc``, ``official-raw-gc``, ``k8s-asyncio-gc``.

The model-building clients need ~1 ms and ~80 KB per Pod, so they run on
``--official-size`` objects (default 10k) and are compared per object.

Columns: initial sync objects/s, watch events/s (and both per CPU second of the
client), peak RSS during the sync, bytes per stored Pod (settled RSS growth over
the sync / pods: freed memory handed back first; client-go: Go heap after GC), and
peak-sync growth / settled store growth. MET/MISS lines follow for every target.
Writes ``benchmarks/results/benchmark.md`` and ``benchmark.png`` (``--real``:
``benchmark-real.*``).

    python benchmarks/run_all.py                 # 100k pods, 100k MODIFIED events, 3 rounds
    python benchmarks/run_all.py --quick         # 10k, one round
    python benchmarks/run_all.py --real          # against kube-apiserver: 100k pods, 10k events
    python benchmarks/run_all.py --quick --real  # 10k pods, 2k events
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import clientgo_contender  # noqa: E402
import contenders  # noqa: E402
import pod_server  # noqa: E402
import real_apiserver  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# defaults rows: each library as its users run it; client-go is the Go anchor
DEFAULTS = ("km-informer", "km-informer-s", "km-compact", "km-compact-full", "km-watcher",
            "lightkube", "client-go", "official", "official-raw", "k8s-asyncio")
# equal-GC rows: every contender with kubemirror's policy (collector paused for the LIST,
# gc.freeze() once synced); raw always runs so, it is the practical limit of the loop
EQUAL_GC = ("km-informer-gc", "km-compact-gc", "raw", "lightkube-gc", "official-gc",
            "official-raw-gc", "k8s-asyncio-gc")
# the model-building clients run on --official-size pods (~1 ms and ~80 KB a pod)
SUBSET = ("official", "official-raw", "k8s-asyncio", "official-gc", "official-raw-gc",
          "k8s-asyncio-gc")


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


def contender_main(name: str, target: contenders.Target, size: int, events: int, warm: bool
                   ) -> None:
    for module in contenders.LIBRARIES[name.split("-")[0]]:
        importlib.import_module(module)
    if warm:
        per_pod = 100_000 if name in SUBSET else 40_000  # above each one's peak per pod
        warm_memory(max(256 << 20, size * per_pod))
    print(json.dumps(contenders.run(name, target, size, events)), flush=True)


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Field-by-field median of one contender's runs, plus the slowest and fastest sync."""
    result = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    result["sync_slowest"] = max(r["sync"] for r in runs)
    result["sync_fastest"] = min(r["sync"] for r in runs)
    return result


class Source:
    """Where the contenders' pods are: the bench server, or a seeded real kube-apiserver
    (then run_all writes each contender's watch events once it has synced)."""

    def __init__(self, url: str, env: Any = None, kubeconfig: str | None = None,
                 entries: list[tuple[str, bytes]] | None = None) -> None:
        self.url, self.env, self.kubeconfig = url, env, kubeconfig
        self.entries = entries or []
        self.write_rates: list[float] = []
        self._runs = 0

    def command(self, name: str, size: int, events: int, warm: bool
                ) -> tuple[list[str], dict[str, str]] | None:
        if name == "client-go":
            binary = clientgo_contender.find_or_build()
            if binary is None:
                return None
            return clientgo_contender.command(binary, self.url, self.kubeconfig, size, events)
        cmd = [sys.executable, __file__, "--contender", name, "--url", self.url,
               "--size", str(size), "--events", str(events), *([] if warm else ["--no-warm"])]
        if self.kubeconfig:
            cmd += ["--kubeconfig", self.kubeconfig]
        return cmd, dict(os.environ)

    def run(self, name: str, size: int, events: int, warm: bool) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of one contender process."""
        spec = self.command(name, size, events, warm)
        if spec is None:
            return -1, "", "skipped"
        cmd, env = spec
        if self.env is None:
            pod_server.http_get(f"{self.url}/events?n={events}")
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            return out.returncode, out.stdout, out.stderr
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdin is not None
        assert proc.stderr is not None
        logs = []
        for line in proc.stderr:
            if line.strip() == "synced":
                self._runs += 1
                proc.stdin.write("go\n")
                proc.stdin.flush()
                took = real_apiserver.update_pods(self.env, self.entries, events,
                                                  f"{os.getpid()}-{self._runs}")
                self.write_rates.append(events / took)
                break
            logs.append(line)
        try:
            stdout, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stderr += "\n(killed: no result 900 s after its go-ahead)"
        return proc.returncode, stdout, "".join(logs) + stderr


def run_contender(source: Source, name: str, size: int, events: int, label: str = "",
                  warm: bool = True) -> dict[str, Any] | None:
    print(f"  running {name} ({size} pods, {events} events){label}...", file=sys.stderr,
          flush=True)
    code, stdout, stderr = source.run(name, size, events, warm)
    if code == -1:
        return None
    if code:
        print(f"{name} failed:\n{stderr[-3000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result.update(size=size, n_events=events)
    return result


# -- reporting ---------------------------------------------------------------------------------


def rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, r in results.items():
        store_kb = max(1, r["after_sync"] - r["base"])
        # client-go: bytes per pod from the Go heap after GC, peak/store from RSS
        rss_store_kb = max(1, r.get("after_sync_rss", r["after_sync"])
                           - r.get("base_rss", r["base"]))
        out.append({
            "name": name, "size": r["size"], "events": r["n_events"],
            "obj_s": r["size"] / r["sync"], "ev_s": r["n_events"] / r["events"],
            "obj_s_low": r["size"] / r.get("sync_slowest", r["sync"]),
            "obj_s_high": r["size"] / r.get("sync_fastest", r["sync"]),
            "cpu_obj_s": r["size"] / max(r["sync_cpu"], 1e-9),
            "cpu_ev_s": r["n_events"] / max(r["events_cpu"], 1e-9),
            "peak_sync_mb": r["peak_sync"] / 1024, "bytes_pod": store_kb * 1024 / r["size"],
            "peak_ratio": (r["peak_sync"] - r.get("base_rss", r["base"])) / rss_store_kb,
        })
    return out


def ratios(table: list[dict[str, Any]]) -> list[tuple[str, float, float, bool]]:
    """(description, value, target, met) for every target of issues 14 and before."""
    by = {r["name"]: r for r in table}
    checks: list[tuple[str, float, float, bool]] = []

    def add(desc: str, value: float, target: float, at_most: bool = False) -> None:
        checks.append((desc, value, target, value <= target if at_most else value >= target))

    def ratio(desc: str, a: str, b: str, key: str, target: float) -> None:
        if a in by and b in by:
            add(f"{desc}: {a} / {b}", by[a][key] / by[b][key], target)

    # equal GC: the same collector policy for everyone
    ratio("equal GC sync", "km-informer-gc", "lightkube-gc", "obj_s", 1.2)
    ratio("equal GC watch", "km-informer-gc", "lightkube-gc", "ev_s", 1.0)
    ratio("equal GC sync", "km-compact-gc", "lightkube-gc", "obj_s", 2.0)
    ratio("equal GC watch", "km-compact-gc", "lightkube-gc", "ev_s", 2.0)
    # defaults: each library as its users run it
    for km in ("km-informer", "km-informer-s", "km-compact", "km-compact-full", "km-watcher"):
        ratio("defaults sync", km, "lightkube", "obj_s", 3.0)
        ratio("defaults sync", km, "official", "obj_s", 12.0)
    ratio("defaults watch", "km-informer", "lightkube", "ev_s", 0.8)
    ratio("defaults watch", "km-compact", "lightkube", "ev_s", 1.5)
    # the moonshot: client-go itself
    ratio("moonshot sync", "km-compact", "client-go", "obj_s", 1.0)
    if "client-go" in by:
        for km in ("km-compact", "km-compact-full"):
            if km in by:
                add(f"moonshot: {km} bytes per stored pod <= client-go's "
                    f"({by['client-go']['bytes_pod']:,.0f})", by[km]["bytes_pod"],
                    by["client-go"]["bytes_pod"], at_most=True)
    for km in ("km-compact", "km-compact-full"):
        if km in by:
            add(f"{km} bytes per stored pod", by[km]["bytes_pod"], 8192, at_most=True)
    for km in ("km-informer", "km-compact", "km-compact-full"):
        if km in by:
            add(f"{km} peak RSS in sync / final store", by[km]["peak_ratio"], 1.3, at_most=True)
    return checks


# What limits each target when it is missed: profiles behind them (cProfile, 10k pods, see
# the README). Printed and written after the MET/MISS lines of every run.
LIMITS = """\
What limits the targets (profiles at 10k pods; the ratios above are this run's):
- km-informer-gc sync vs lightkube-gc: decoding into plain dicts. orjson.loads is 0.97 s of a
  1.9 s sync; kubemirror's keys, indexes and store ~0.2 s. lightkube builds msgspec Structs,
  fewer objects per pod; raw (the same dict decode, nothing else) is the ceiling of this row.
- km-compact-gc vs lightkube-gc (2x): per watch event the compact informer decodes two views,
  the new object's and the replaced one's (handlers get on_update(old, new)): 30,020 msgspec
  decodes for a 10k sync + 10k events, 0.63 s of the run; the sync decodes one view per pod.
- defaults rows: the collector. A 6 KB pod is ~66 tracked containers; with the GC on, peers'
  LISTs cost 4-6x the CPU of their -gc rows. kubemirror pauses it for every LIST by default and
  freezes nothing unless asked (freeze_gc_after_sync).
- client-go: JSON against the bench server (~200 us of CPU a pod there, not profiled
  further); protobuf, its default, only in --real, where the server, not the client, bounds
  wall-clock rates on 2 cores.
"""


def markdown(table: list[dict[str, Any]], checks: list[tuple[str, float, float, bool]],
             header: str) -> str:
    lines = [header, "",
             "| contender | pods | sync obj/s | sync range | watch ev/s | peak RSS in sync (MB) "
             "| bytes/stored pod | peak/store |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for title, group in _groups(table):
        lines.append(f"| *{title}* | | | | | | | |")
        for r in group:
            lines.append(f"| {r['name']} | {r['size']:,} | {r['obj_s']:,.0f} | "
                         f"{r['obj_s_low']:,.0f}-{r['obj_s_high']:,.0f} | {r['ev_s']:,.0f} | "
                         f"{r['peak_sync_mb']:,.0f} | {r['bytes_pod']:,.0f} | "
                         f"{r['peak_ratio']:.2f} |")
    lines += ["", "| target | measured | needed | met |", "|---|---:|---:|:-:|"]
    for desc, value, target, met in checks:
        need = f"<= {target:g}" if "bytes" in desc or "peak" in desc else f">= {target:g}x"
        shown = f"{value:,.0f}" if "bytes" in desc else f"{value:.2f}"
        lines.append(f"| {desc} | {shown} | {need} | {'yes' if met else '**no**'} |")
    return "\n".join(lines) + "\n\n" + LIMITS


def chart(table: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in table]
    colors = ["#1f77b4" if n.startswith("km-") else "#2ca02c" if n == "client-go" else "#999999"
              for n in names]
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


def _groups(table: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    by = {r["name"]: r for r in table}
    return [(title, [by[n] for n in names if n in by]) for title, names in (
        ("defaults: each library as its users run it", DEFAULTS),
        ("equal GC: collector paused for the LIST, gc.freeze() once synced", EQUAL_GC))]


def report(results: dict[str, dict[str, Any]], header: str, write: bool, stem: str) -> None:
    table = [r for _, group in _groups(rows(results)) for r in group]
    head = (f"{'contender':<16}{'pods':>8}{'obj/s':>10}{'range':>16}{'cpu obj/s':>11}{'ev/s':>10}"
            f"{'cpu ev/s':>10}{'peak sync MB':>14}{'B/pod':>8}{'peak/store':>12}")
    print(header)
    print(head)
    print("-" * len(head))
    for title, group in _groups(table):
        print(f"-- {title}")
        for r in group:
            span = f"{r['obj_s_low']:,.0f}-{r['obj_s_high']:,.0f}"
            print(f"{r['name']:<16}{r['size']:>8,.0f}{r['obj_s']:>10,.0f}{span:>16}"
                  f"{r['cpu_obj_s']:>11,.0f}{r['ev_s']:>10,.0f}{r['cpu_ev_s']:>10,.0f}"
                  f"{r['peak_sync_mb']:>14,.0f}{r['bytes_pod']:>8,.0f}{r['peak_ratio']:>12.2f}")
    checks = ratios(table)
    print()
    for desc, value, target, met in checks:
        print(f"{'MET ' if met else 'MISS'} {desc:<66} {value:>10.2f}  (target {target:g})")
    print("(wall-clock rates; 'cpu' columns divide by the client process's CPU time)")
    print()
    print(LIMITS, end="")
    if write:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"{stem}.md"), "w") as fh:
            fh.write(markdown(table, checks, header))
        chart(table, os.path.join(RESULTS, f"{stem}.png"), header.splitlines()[0])
        print(f"\nwrote {RESULTS}/{stem}.md and {stem}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=None,
                        help="default: --size (--real: min(--size, 10k), --quick --real: 2k)")
    parser.add_argument("--official-size", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="10k pods and events")
    parser.add_argument("--real", action="store_true",
                        help="seed the pods into a real kube-apiserver (envtest) and run every "
                             "contender against it; run_all writes the watch events")
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
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        contender_main(args.contender, contenders.Target(args.url, args.kubeconfig),
                       args.size, args.events, not args.no_warm)
        return
    if args.quick:
        args.size = 10_000
        args.official_size = min(args.official_size, 5_000)
    events = args.events or (min(args.size, 2_000 if args.quick else 10_000) if args.real
                             else args.size)
    official_size = min(args.size, args.official_size)
    official_events = min(events, args.official_size)
    repeat = args.repeat or (1 if args.quick else 3)
    known = (*DEFAULTS, *EQUAL_GC)
    only = [n for n in args.only.split(",") if n]
    if unknown := [n for n in only if n not in known]:
        parser.error(f"unknown contenders {unknown}; known: {', '.join(known)}")
    wanted = [n for n in known if not only or n in only]
    if "client-go" in wanted and clientgo_contender.find_or_build() is None:
        wanted.remove("client-go")  # the reason is printed
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}
    with contextlib.ExitStack() as stack:
        if args.real:
            env = stack.enter_context(real_apiserver.start_envtest())
            entries = real_apiserver.seed_pods(env, args.size, args.seed)
            source = Source(env.url, env=env, kubeconfig=str(env.kubeconfig_path),
                            entries=entries)
        else:
            server = subprocess.Popen(
                [sys.executable, pod_server.__file__, str(args.size), str(args.seed)],
                stdout=subprocess.PIPE, text=True)
            stack.callback(server.wait)
            stack.callback(server.terminate)
            assert server.stdout is not None
            source = Source(f"http://127.0.0.1:{int(server.stdout.readline())}")
        for round_no in range(repeat):
            shift = round_no % len(wanted)  # each round starts one contender later
            for name in wanted[shift:] + wanted[:shift]:
                subset = name in SUBSET
                r = run_contender(source, name, official_size if subset else args.size,
                                  official_events if subset else events,
                                  f" round {round_no + 1}/{repeat}", warm=not args.no_warm)
                if r is not None:
                    runs[name].append(r)
    results = {name: median_result(rs) for name, rs in runs.items() if rs}
    if args.real:
        writes = (f"{statistics.median(source.write_rates):,.0f}" if source.write_rates
                  else "n/a")
        where = (f"the real kube-apiserver v1.37.2 + etcd v3.7.0 (envtest, TLS; pods put into "
                 f"etcd as JSON, see real_apiserver.py); watch events are pod updates run_all "
                 f"puts into etcd at {writes} writes/s (median) once each contender has synced, "
                 f"so wall ev/s is at most that: compare 'cpu ev/s'; client-go speaks protobuf "
                 f"(its default), the Python clients JSON")
    else:
        where = ("pre-encoded aiohttp server in a separate process (JSON, also for client-go)")
    header = (f"run_all{' --real' if args.real else ''}: {args.size:,} pods (~6 KB with "
              f"managedFields, podgen seed {args.seed}), {events:,} MODIFIED events; "
              f"official/k8s-asyncio on {official_size:,} / {official_events:,}\n"
              f"python {platform.python_version()}, {os.cpu_count()} cores, {where}; "
              f"each figure is the median of {repeat} fresh process"
              f"{'es' if repeat > 1 else ''} per contender, rounds interleaved"
              f"{'' if args.no_warm else '; memory warmed before each (see warm_memory)'}")
    report(results, header, write=not args.no_write,
           stem="benchmark-real" if args.real else "benchmark")


if __name__ == "__main__":
    main()
