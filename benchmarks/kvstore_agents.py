"""``bench_kvstore.py --agents N``: N collaborator agents on a 3-member etcd cluster.

Each agent owns K keys under its session lease and watches the whole prefix, as a
Cilium agent does with the nodes/identities of its cluster. Two stacks run on the
same fresh 3-member cluster (plain HTTP on 127.0.0.1, since raw aetcd 1.0.0 has no
TLS), one after the other:

* kubemirror: ``EtcdBackend`` (every member named; failover), ``WorkqueueSyncStore``
  writing the agent's keys, ``RestartableWatchStore`` mirroring the prefix;
* raw aetcd (the baseline): one ``aetcd.Client`` per agent on member ``i % 3``, a
  lease, K puts, ``get_prefix`` then ``watch_prefix`` from the next revision into a dict.

Measured: the time from "go" until every agent has seen all N*K keys; then
``--latency-writes`` single writes (one every ``--write-interval`` s; several
comma-separated intervals give one timed phase each, after the same convergence)
from a separate writer, each timed from just before the put until each agent's watch
delivers it (p50/p99 over every agent and write); etcd's CPU seconds (all three
members) over the whole run and the revisions it advanced by; in the agent
processes, CPU per delivered write during each latency phase, GC pauses
(``gc.callbacks``), GC-tracked objects at convergence, deletions seen (a lease lost)
and retries. Agents run in worker processes (``--processes P``; 1: all as asyncio
tasks of one process), each reporting on stdout and, every 30 s, its progress on stderr.

Equal terms: the same keys and values, the same session lease TTL (``--lease-ttl``,
Cilium's 15 min by default) and the same GC policy for both stacks (``gc.freeze()``
at convergence, or ``--no-gc-freeze``); the raw baseline decodes each key's name and
keeps the value in a dict, and retries what fails (watch, put, keep-alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

import aetcd

from kubemirror.kvstore import (
    EtcdBackend,
    EtcdCluster,
    KVPair,
    RestartableWatchStore,
    WorkqueueSyncStore,
    kv_pair_creator,
)
from kubemirror.kvstore.key import Key, NamedKey

PREFIX = "bench/agents"
SRC = str(Path(__file__).resolve().parents[1] / "src")
SCRIPT = str(Path(__file__).with_name("bench_kvstore.py"))
LATENCY = "lat-"
VALUE = b"x" * 100
LEASE_TTL = 900  # s: Cilium's default --kvstore-lease-ttl (15 min)
TEARDOWN_S = 120.0  # seconds the workers get to close their agents after the figures


@dataclass
class Tally:
    """What the agents of one process saw: converged agents, latency samples."""

    agents: int
    expected: int
    latency_writes: int
    converged: set[int] = field(default_factory=set)
    converged_at: float = 0.0
    latency_seen: dict[int, int] = field(default_factory=dict)
    latency_complete: int = 0
    raw_restarts: int = 0
    deliveries: int = 0  # watch events delivered to the agents
    deletes: int = 0  # deletions seen by the agents' watches (a lease expired): should be 0
    sessions: list[EtcdBackend] = field(default_factory=list)  # kubemirror's, for failovers
    latencies: list[float] = field(default_factory=list)
    all_converged: asyncio.Event = field(default_factory=asyncio.Event)
    all_latency: asyncio.Event = field(default_factory=asyncio.Event)

    def reset_latency(self) -> None:
        """Start a new latency phase (its writes are new keys)."""
        self.latency_seen, self.latency_complete, self.latencies = {}, 0, []
        self.all_latency = asyncio.Event()

    def seen(self, agent: int, name: str, value: bytes, count: int) -> None:
        self.deliveries += 1
        if name.startswith(LATENCY):
            self.latencies.append(time.monotonic() - float(value))
            n = self.latency_seen[agent] = self.latency_seen.get(agent, 0) + 1
            if n == self.latency_writes:
                self.latency_complete += 1
                if self.latency_complete == self.agents:
                    self.all_latency.set()
            return
        if count >= self.expected and agent not in self.converged:
            self.converged.add(agent)
            if len(self.converged) == self.agents:
                self.converged_at = time.monotonic()
                self.all_converged.set()


class _Observer:
    def __init__(self, agent: int, tally: Tally) -> None:
        self.agent = agent
        self.tally = tally
        self.store: RestartableWatchStore | None = None

    def on_update(self, k: Key) -> None:
        assert self.store is not None
        name = k.get_key_name()
        count = self.store.num_entries() - self.tally.latency_seen.get(self.agent, 0)
        self.tally.seen(self.agent, name, k.marshal(), count)

    def on_delete(self, k: NamedKey) -> None:
        self.tally.deletes += 1


async def kubemirror_agent(
    agent: int, endpoints: list[str], keys: int, tally: Tally, go: asyncio.Event,
    done: asyncio.Event, lease_ttl: int,
) -> None:
    backend = EtcdBackend(",".join(endpoints), lease_ttl=lease_ttl, name=f"a{agent}",
                          request_timeout=60.0, retry_timeout=120.0)
    tally.sessions.append(backend)
    observer = _Observer(agent, tally)
    store = RestartableWatchStore(f"a{agent}", kv_pair_creator, observer)
    observer.store = store
    sync = WorkqueueSyncStore(f"a{agent}", backend, PREFIX)
    await go.wait()
    watching = asyncio.get_running_loop().create_task(store.watch(backend, PREFIX))
    try:
        async with sync:
            for j in range(keys):
                sync.upsert_key(KVPair(f"a{agent}-k{j}", VALUE))
            await done.wait()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await backend.close()


async def raw_agent(
    agent: int, endpoints: list[str], keys: int, tally: Tally, go: asyncio.Event,
    done: asyncio.Event, lease_ttl: int,
) -> None:
    host, port = endpoints[agent % len(endpoints)].rpartition("/")[2].split(":")
    client = aetcd.Client(host=host, port=int(port), timeout=60)
    await go.wait()
    seen: dict[bytes, bytes] = {}
    prefix = (PREFIX + "/").encode()

    def note(key: bytes, value: bytes) -> None:
        seen[key] = value
        name = key[len(prefix):].decode()
        tally.seen(agent, name, value, len(seen) - tally.latency_seen.get(agent, 0))

    async def keepalive(lease_id: int) -> None:
        delay = lease_ttl / 3
        while True:
            await asyncio.sleep(delay)
            try:
                await client.refresh_lease(lease_id)
                delay = lease_ttl / 3
            except Exception:  # retried soon, as EtcdBackend's keep-alive does
                tally.raw_restarts += 1
                delay = 0.2

    async def watch() -> None:
        # The least a raw client needs to survive overload: on any error, a new client
        # (aetcd's watch stream does not recover), then list and watch again.
        watcher = aetcd.Client(host=host, port=int(port), timeout=60)
        while True:
            try:
                listing = await watcher.get_prefix(prefix)
                for kv in listing.kvs:
                    note(kv.key, kv.value)
                events = await watcher.watch_prefix(
                    prefix, start_revision=listing.header.revision + 1)
                async for event in events:
                    if event.kind == "PUT":
                        note(event.kv.key, event.kv.value)
                    else:
                        tally.deletes += 1
            except Exception:
                tally.raw_restarts += 1
            with contextlib.suppress(Exception):
                await watcher.close()
            await asyncio.sleep(0.5)
            watcher = aetcd.Client(host=host, port=int(port), timeout=60)

    async with client:
        lease = await client.lease(lease_ttl)
        tasks = [asyncio.get_running_loop().create_task(c) for c in (keepalive(lease.id),
                                                                      watch())]
        try:
            for j in range(keys):
                while True:
                    try:
                        await client.put(f"{PREFIX}/a{agent}-k{j}".encode(), VALUE,
                                         lease=lease.id)
                        break
                    except Exception:
                        tally.raw_restarts += 1
                        await asyncio.sleep(0.5)
            await done.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


AGENTS: dict[str, Callable[..., Coroutine[None, None, None]]] = {
    "kubemirror": kubemirror_agent, "raw": raw_agent,
}


async def run_worker(stack: str, endpoints: list[str], first: int, count: int, agents: int,
                     keys: int, latency_writes: int, gc_freeze: bool, lease_ttl: int,
                     phases: int) -> None:
    """A worker process: ``count`` agents; JSON lines on stdout, commands on stdin.

    With ``gc_freeze`` every stack gets the same GC policy: once all its agents
    converged, ``gc.freeze()`` moves what they hold out of later collections (what a
    long-running agent does after its initial sync; kubemirror's reflector and
    Watcher offer it as ``freeze_gc_after_sync``).
    """
    tally = Tally(count, agents * keys, latency_writes)
    go, done = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.get_running_loop().create_task(
        AGENTS[stack](first + i, endpoints, keys, tally, go, done, lease_ttl))
        for i in range(count)]
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    pauses = GcPauses()
    go.set()
    progress = asyncio.get_running_loop().create_task(
        _report_progress(f"{stack} agents {first}..{first + count - 1}", tally, pauses))
    await tally.all_converged.wait()
    converge_gc_s = pauses.total
    tracked = len(gc.get_objects())
    if gc_freeze:
        gc.freeze()
    print(json.dumps({"converged_at": tally.converged_at}), flush=True)
    for _ in range(phases):  # one report per latency phase
        cpu_start, gc_start = time.process_time(), pauses.total
        if latency_writes:
            await tally.all_latency.wait()
        print(json.dumps({
            "latencies": tally.latencies,
            "cpu_s": time.process_time() - cpu_start,
            "gc_s": pauses.total - gc_start,
            "gc_max_s": pauses.longest,
            "converge_gc_s": converge_gc_s,
            "deletes": tally.deletes,
            "failovers": sum(s.failovers for s in tally.sessions),
            "restarts": tally.raw_restarts,
            "tracked": tracked,
        }), flush=True)
        tally.reset_latency()
    pauses.close()
    progress.cancel()
    await asyncio.to_thread(sys.stdin.readline)  # "stop"
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _report_progress(who: str, tally: Tally, pauses: GcPauses) -> None:
    """Every 30 s on stderr: how far this worker's agents got (tells slow from stalled)."""
    start = time.monotonic()
    while True:
        await asyncio.sleep(30)
        print(f"[{who}: {time.monotonic() - start:.0f} s, {len(tally.converged)}/{tally.agents} "
              f"converged, {tally.deliveries:,} events, {tally.deletes} deletes, "
              f"GC {pauses.total:.1f} s]", file=sys.stderr, flush=True)


class GcPauses:
    """Wall time spent in the garbage collector, from ``gc.callbacks`` (both stacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self._start = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            pause = time.perf_counter() - self._start
            self.total += pause
            self.longest = max(self.longest, pause)

    def close(self) -> None:
        gc.callbacks.remove(self._note)


@dataclass
class StackResult:
    """One stack's figures for one latency phase (convergence figures are shared)."""

    stack: str
    interval: float  # seconds between two timed writes in this phase
    converge_s: float
    latencies: list[float]
    etcd_cpu_s: float
    etcd_writes: int  # revisions etcd advanced by: keys + latency writes + any rewrite
    worker_cpu_s: float  # the agents' processes' CPU during the latency phase
    gc_s: float  # the agents' processes' GC pauses during the latency phase, summed
    gc_max_s: float  # longest single GC pause in any agent process, whole run
    converge_gc_s: float  # GC pauses until convergence, summed over the processes
    deletes: int  # deletions the agents saw (a lease expired): 0 expected
    failovers: int  # kubemirror sessions moved to another member / raw watch restarts
    tracked: int  # objects the GC tracks in the agent processes at convergence, summed
    teardown_s: float  # from "stop" until every worker exited (or was killed)

    def cpu_per_delivery_us(self) -> float:
        return self.worker_cpu_s / len(self.latencies) * 1e6 if self.latencies else float("nan")

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


async def _writer(stack: str, endpoints: list[str]) -> tuple[
        Callable[[str, bytes], Awaitable[None]], Callable[[], Awaitable[None]]]:
    if stack == "kubemirror":
        backend = EtcdBackend(",".join(endpoints), name="latency-writer")

        async def put_km(key: str, value: bytes) -> None:
            await backend.update(key, value)

        return put_km, backend.close
    host, port = endpoints[0].rpartition("/")[2].split(":")
    client = aetcd.Client(host=host, port=int(port))

    async def put_raw(key: str, value: bytes) -> None:
        await client.put(key.encode(), value)

    return put_raw, client.close


async def run_stack(stack: str, cluster: EtcdCluster, agents: int, keys: int, processes: int,
                    latency_writes: int, intervals: list[float], gc_freeze: bool,
                    lease_ttl: int) -> list[StackResult]:
    endpoints = cluster.endpoints
    per = [agents // processes + (1 if p < agents % processes else 0) for p in range(processes)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [SRC, os.environ.get("PYTHONPATH", "")])}
    procs = []
    first = 0
    for count in per:
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, SCRIPT, "--agent-worker",
            json.dumps([stack, endpoints, first, count, agents, keys, latency_writes, gc_freeze,
                        lease_ttl, len(intervals)]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, limit=2**28,
        ))
        first += count

    async def line(proc: asyncio.subprocess.Process) -> dict[str, object]:
        assert proc.stdout is not None
        raw = await proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"agent worker exited with {await proc.wait()}")
        loaded: dict[str, object] = json.loads(raw)
        return loaded

    def tell(word: str) -> None:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(word.encode() + b"\n")

    try:
        for proc in procs:
            await line(proc)  # ready
        cpu_start = cluster.cpu_seconds()
        revision_start = await _revision(cluster)
        start = time.monotonic()
        tell("go")
        converged = [await line(proc) for proc in procs]
        converge_s = max(float(c["converged_at"]) for c in converged) - start  # type: ignore[arg-type]
        print(f"[{stack}: converged in {converge_s:.1f} s; timing {latency_writes} writes]",
              file=sys.stderr, flush=True)
        put, close = await _writer(stack, endpoints)
        phases: list[list[dict[str, object]]] = []
        try:
            for phase, interval in enumerate(intervals):
                for n in range(latency_writes):
                    await put(f"{PREFIX}/{LATENCY}{phase}-{n}", str(time.monotonic()).encode())
                    await asyncio.sleep(interval)
                phases.append([await line(proc) for proc in procs])
        finally:
            await close()
        cpu = cluster.cpu_seconds() - cpu_start
        writes = await _revision(cluster) - revision_start
        tell("stop")
        stop_start = time.monotonic()
        for proc in procs:
            # The figures are in; a teardown that hangs must not hold up the run.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), max(1.0, TEARDOWN_S - (
                    time.monotonic() - stop_start)))
        teardown_s = time.monotonic() - stop_start
        hung = sum(proc.returncode is None for proc in procs)
        if hung:
            print(f"[{stack}: {hung} worker(s) still tearing down after {TEARDOWN_S:.0f} s: "
                  "killed]", file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    async with aetcd.Client(host="127.0.0.1", port=cluster.members[0].client_port) as admin:
        await admin.delete_range(b"\0", b"\0")

    def result(interval: float, reports: list[dict[str, object]]) -> StackResult:
        def total(name: str) -> float:
            return sum(_number(r, name) for r in reports)

        latencies = [float(x) for r in reports for x in r["latencies"]]  # type: ignore[attr-defined]
        return StackResult(
            stack, interval, converge_s, latencies, cpu, writes, total("cpu_s"), total("gc_s"),
            max(_number(r, "gc_max_s") for r in reports), total("converge_gc_s"),
            int(total("deletes")), int(total("failovers") + total("restarts")),
            int(total("tracked")), teardown_s,
        )

    return [result(interval, reports) for interval, reports in zip(intervals, phases, strict=True)]


def _number(report: dict[str, object], name: str) -> float:
    value = report[name]
    assert isinstance(value, int | float), (name, value)
    return float(value)


async def _revision(cluster: EtcdCluster) -> int:
    async with aetcd.Client(host="127.0.0.1", port=cluster.members[0].client_port) as admin:
        await admin.connect()
        reply = await admin.kvstub.Range(aetcd.rpc.RangeRequest(key=b"\0", limit=1),
                                         metadata=admin.metadata)
        return int(reply.header.revision)



async def run_agents(agents: int, keys: int, processes: int, latency_writes: int,
                     intervals: list[float], stacks: list[str], gc_freeze: bool = True,
                     lease_ttl: int = LEASE_TTL) -> None:
    # A SIGTERM (timeout(1), Ctrl-C from a runner) still stops the etcd members.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = EtcdCluster(3, heartbeat_interval_ms=50, election_timeout_ms=500,
                          extra_args=("--unsafe-no-fsync",))
    await cluster.astart()
    results: list[list[StackResult]] = []  # per stack, one per interval
    try:
        for stack in stacks:
            results.append(await run_stack(stack, cluster, agents, keys, processes,
                                           latency_writes, intervals, gc_freeze, lease_ttl))
            for done in results[-1]:
                print(f"[{done.stack} done: converged {done.converge_s:.2f} s, every "
                      f"{done.interval * 1000:.0f} ms: p50 {done.pct(0.5):.2f} ms, "
                      f"p99 {done.pct(0.99):.2f} ms, etcd CPU {done.etcd_cpu_s:.1f} s]",
                      file=sys.stderr, flush=True)
    finally:
        await asyncio.to_thread(cluster.cleanup)
    mode = "asyncio tasks in 1 process" if processes == 1 else f"{processes} worker processes"
    print(f"kvstore agents benchmark: {agents} agents x {keys} keys ({agents * keys:,} keys, "
          f"each watched by every agent), 3-member etcd cluster on 127.0.0.1 (plain HTTP), "
          f"{mode}, {os.cpu_count()} CPUs")
    policy = ("gc.freeze() in every agent process at convergence" if gc_freeze
              else "Python's default collector throughout")
    print(f"GC policy (the same for every stack): {policy}; session lease TTL {lease_ttl} s")
    for phase, interval in enumerate(intervals):
        _print_phase(agents, keys, latency_writes, interval, [r[phase] for r in results])
    print(f"\nagents CPU us/event: CPU of the agent processes during the latency phase per "
          f"delivered write; GC: pauses in the agent processes (until convergence / latency "
          f"phase), tracked M: millions of GC-tracked objects at convergence; etcd CPU and "
          f"writes: the whole run of the stack; retries: kubemirror failovers or raw watch/put "
          f"restarts (whole run); machine: {os.cpu_count()} CPUs shared with other jobs (load "
          f"average {os.getloadavg()[0]:.1f} at the end), so figures vary run to run")


def _print_phase(agents: int, keys: int, latency_writes: int, interval: float,
                 results: list[StackResult]) -> None:
    print(f"\nlatency: {latency_writes} single writes, one every {interval * 1000:.0f} ms, "
          f"timed until each agent's watch delivered it\n")
    print(f"{'stack':<12} {'converge s':>11} {'p50 ms':>9} {'p99 ms':>9} {'samples':>9} "
          f"{'etcd CPU s':>11} {'etcd writes':>12} {'agents CPU us/event':>20} "
          f"{'GC s conv/lat':>14} {'max GC ms':>10} {'tracked M':>10} {'deletes':>8} "
          f"{'retries':>8} {'teardown s':>11}")
    for r in results:
        print(f"{r.stack:<12} {r.converge_s:>11.2f} {r.pct(0.5):>9.2f} {r.pct(0.99):>9.2f} "
              f"{len(r.latencies):>9} {r.etcd_cpu_s:>11.1f} {r.etcd_writes:>12} "
              f"{r.cpu_per_delivery_us():>20.0f} "
              f"{f'{r.converge_gc_s:.1f}/{r.gc_s:.2f}':>14} {r.gc_max_s * 1000:>10.0f} "
              f"{r.tracked / 1e6:>10.2f} {r.deletes:>8} {r.failovers:>8} {r.teardown_s:>11.1f}")
    if len(results) == 2:
        a, b = results
        print(f"{a.stack + '/' + b.stack:<12} {a.converge_s / b.converge_s:>10.2f}x "
              f"{a.pct(0.5) / b.pct(0.5):>8.2f}x {a.pct(0.99) / b.pct(0.99):>8.2f}x {'':>9} "
              f"{a.etcd_cpu_s / b.etcd_cpu_s:>10.2f}x {'':>12} "
              f"{a.cpu_per_delivery_us() / b.cpu_per_delivery_us():>19.2f}x")
    by = {r.stack: r for r in results}
    if "kubemirror" in by and "raw" in by:
        km, raw = by["kubemirror"], by["raw"]
        ratio = km.pct(0.99) / raw.pct(0.99)
        print(f"\nsummary: {agents} agents x {keys} keys converged in {km.converge_s:.1f} s "
              f"(raw aetcd {raw.converge_s:.1f} s); writes every {interval * 1000:.0f} ms: "
              f"propagation p99 {km.pct(0.99):.1f} ms vs {raw.pct(0.99):.1f} ms = "
              f"{ratio:.2f}x raw aetcd ({'within' if ratio <= 2 else 'OVER'} the 2x target)")
    else:
        median = statistics.median(results[0].latencies) * 1000 if results[0].latencies else 0
        print(f"\nsummary: {results[0].stack} only: converged in {results[0].converge_s:.1f} s, "
              f"writes every {interval * 1000:.0f} ms: p50 {median:.1f} ms")


def worker_main(spec: str) -> None:
    # Retries under overload are expected; only errors are worth the worker's stderr,
    # and each session failover with its reason (the operation and the error).
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kubemirror.kvstore.etcd").setLevel(logging.INFO)
    (stack, endpoints, first, count, agents, keys, latency_writes, gc_freeze, ttl,
     phases) = json.loads(spec)
    asyncio.run(run_worker(stack, endpoints, first, count, agents, keys, latency_writes,
                           gc_freeze, ttl, phases))
