"""Benchmark kubemirror.kvstore against the raw aetcd client and etcdctl on one etcd.

Starts a private etcd (``EtcdServer``) on 127.0.0.1 and measures, in the same run:

* upsert throughput: N keys written with the session lease through
  ``WorkqueueSyncStore`` (time from the first ``upsert_key`` until the synced canary
  callback, i.e. until every key landed), beside a raw aetcd put loop with the same
  number of writes in flight, and beside etcdctl (one process per put, sampled; and
  ``etcdctl txn`` with 128 puts per transaction, the server's default limit: batched
  writes, a different thing, listed to show the per-process cost);
* watch propagation latency: one write at a time, time from issuing the write until
  the watcher sees it (p50/p99), for a raw aetcd put + watch, and for kubemirror's
  stacks (EtcdBackend watch, RestartableWatchStore observer, and the end-to-end
  WorkqueueSyncStore -> etcd -> RestartableWatchStore path).

Usage: python benchmarks/bench_kvstore.py [--keys 10000] [--latency-keys 2000] [--quick]

With ``--agents N`` it runs the cluster benchmark instead (``kvstore_agents.py``): N
collaborator agents owning ``--agent-keys`` keys each on a 3-member etcd cluster, as
asyncio tasks (``--processes 1``) or over several processes, kubemirror vs raw aetcd:

    python benchmarks/bench_kvstore.py --agents 1000 --agent-keys 10 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aetcd

from arguments import positive_floats, positive_int
from kubemirror import errors
from kubemirror.kvstore import (
    EtcdBackend,
    EtcdServer,
    KVPair,
    MemoryBackend,
    RestartableWatchStore,
    WorkqueueSyncStore,
    kv_pair_creator,
)
from kubemirror.kvstore.key import Key, NamedKey

VALUE_SIZE = 100
TXN_OPS = 128


@dataclass
class Row:
    path: str
    in_flight: str
    keys: int
    seconds: float
    baseline: str = ""

    @property
    def rate(self) -> float:
        return self.keys / self.seconds if self.seconds else float("inf")


@dataclass
class LatencyRow:
    path: str
    samples: list[float]
    baseline: str = ""

    def pct(self, q: float) -> float:
        data = sorted(self.samples)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000


def value_for(i: int) -> bytes:
    return (f"{i:08d}" * (VALUE_SIZE // 8 + 1)).encode()[:VALUE_SIZE]


async def wipe(client: aetcd.Client) -> None:
    await client.delete_range(b"\0", b"\0")


# -- throughput ---------------------------------------------------------------------


async def raw_put_loop(server: EtcdServer, keys: int, in_flight: int) -> float:
    async with aetcd.Client(host=server.host, port=server.client_port) as client:
        await wipe(client)
        lease = await client.lease(3600)  # outlives the run: no keep-alive needed
        sem = asyncio.Semaphore(in_flight)

        async def put(i: int) -> None:
            async with sem:
                await client.put(f"raw/k{i}".encode(), value_for(i), lease=lease.id)

        start = time.perf_counter()
        if in_flight == 1:
            for i in range(keys):
                await client.put(f"raw/k{i}".encode(), value_for(i), lease=lease.id)
        else:
            await asyncio.gather(*(put(i) for i in range(keys)))
        elapsed = time.perf_counter() - start
        await client.revoke_lease(lease.id)
        return elapsed


async def raw_txn_loop(server: EtcdServer, keys: int) -> float:
    """Sequential aetcd transactions of TXN_OPS puts each (the batched baseline)."""
    async with aetcd.Client(host=server.host, port=server.client_port) as client:
        await wipe(client)
        lease = await client.lease(3600)  # outlives the run: no keep-alive needed
        tx = client.transactions
        start = time.perf_counter()
        for base in range(0, keys, TXN_OPS):
            ops = [
                tx.put(f"raw/k{i}".encode(), value_for(i), lease=lease.id)
                for i in range(base, min(keys, base + TXN_OPS))
            ]
            await client.transaction(compare=[], success=ops, failure=[])
        elapsed = time.perf_counter() - start
        await client.revoke_lease(lease.id)
        return elapsed


async def sync_store_run(
    make_backend: Callable[[], object], keys: int, workers: int, batch_size: int = 1
) -> float:
    backend = make_backend()
    assert isinstance(backend, EtcdBackend | MemoryBackend)
    async with backend:
        done = asyncio.Event()
        store = WorkqueueSyncStore(
            "bench", backend, "sync", workers=workers, batch_size=batch_size
        )
        async with store:
            start = time.perf_counter()
            for i in range(keys):
                store.upsert_key(KVPair(f"k{i}", value_for(i)))
            store.synced(done.set)
            await done.wait()
            elapsed = time.perf_counter() - start
        listed = await backend.list_prefix("sync/")
        assert len(listed) == keys, f"only {len(listed)} of {keys} keys landed"
        return elapsed


def etcdctl_put_sample(server: EtcdServer, sample: int) -> float:
    start = time.perf_counter()
    for i in range(sample):
        subprocess.run(
            ["etcdctl", f"--endpoints={server.endpoint}", "put", f"ctl/k{i}",
             value_for(i).decode()],
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - start


def etcdctl_txn(server: EtcdServer, keys: int) -> float:
    start = time.perf_counter()
    for base in range(0, keys, TXN_OPS):
        ops = "\n".join(
            f"put txn/k{i} {value_for(i).decode()}" for i in range(base, min(keys, base + TXN_OPS))
        )
        subprocess.run(
            ["etcdctl", f"--endpoints={server.endpoint}", "txn"],
            input=("\n" + ops + "\n\n\n").encode(),
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - start


# -- latency --------------------------------------------------------------------------


class Timing:
    """Shared between a writer and a watcher: when each key was written and seen."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.samples: list[float] = []
        self.seen = asyncio.Event()

    def observe(self, name: str) -> None:
        sent = self.sent.pop(name, None)
        if sent is not None:
            self.samples.append(time.perf_counter() - sent)
            self.seen.set()

    async def ping(self, name: str, write: Callable[[], Awaitable[None]]) -> None:
        self.seen.clear()
        self.sent[name] = time.perf_counter()
        await write()
        await self.seen.wait()


async def latency_raw(server: EtcdServer, keys: int) -> list[float]:
    async with aetcd.Client(host=server.host, port=server.client_port) as client:
        await wipe(client)
        timing = Timing()
        watch = await client.watch_prefix(b"lat/")

        async def consume() -> None:
            async for event in watch:
                timing.observe(event.kv.key.decode()[4:])

        task = asyncio.create_task(consume())
        for i in range(keys):
            key = f"k{i}"
            await timing.ping(key, functools.partial(_raw_put, client, f"lat/{key}", value_for(i)))
        await watch.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return timing.samples


async def _raw_put(client: aetcd.Client, key: str, value: bytes) -> None:
    await client.put(key.encode(), value)


class TimingObserver:
    def __init__(self, timing: Timing) -> None:
        self.timing = timing

    def on_update(self, key: Key) -> None:
        self.timing.observe(key.get_key_name())

    def on_delete(self, key: NamedKey) -> None:
        return None


async def latency_backend_watch(backend: EtcdBackend | MemoryBackend, keys: int) -> list[float]:
    timing = Timing()
    stream = backend.list_and_watch("lat/")

    async def consume() -> None:
        async for event in stream:
            timing.observe(event.key[4:])

    task = asyncio.create_task(consume())
    for i in range(keys):
        key = f"k{i}"
        await timing.ping(key, functools.partial(backend.update, f"lat/{key}", value_for(i)))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await stream.aclose()
    return timing.samples


async def latency_watch_store(
    writer: EtcdBackend | MemoryBackend, reader: EtcdBackend | MemoryBackend, keys: int,
    through_sync_store: bool,
) -> list[float]:
    timing = Timing()
    listed = asyncio.Event()
    store = RestartableWatchStore(
        "bench", kv_pair_creator, TimingObserver(timing), on_sync=[listed.set]
    )
    task = asyncio.create_task(store.watch(reader, "lat"))
    await listed.wait()
    sync = WorkqueueSyncStore("bench", writer, "lat")
    async with sync:
        for i in range(keys):
            key = f"k{i}"
            if through_sync_store:
                write = functools.partial(_upsert, sync, key, value_for(i))
            else:
                write = functools.partial(writer.update, f"lat/{key}", value_for(i))
            await timing.ping(key, write)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return timing.samples


async def _upsert(store: WorkqueueSyncStore, name: str, value: bytes) -> None:
    store.upsert_key(KVPair(name, value))


# -- driver ---------------------------------------------------------------------------


async def median_of(repeat: int, before: Callable[[], Awaitable[None]],
                    fn: Callable[[], Awaitable[float]]) -> float:
    """Median duration of ``repeat`` runs of ``fn`` (``before`` runs untimed first)."""
    times = []
    for _ in range(repeat):
        await before()
        times.append(await fn())
    return statistics.median(times)


async def run(keys: int, latency_keys: int, quick: bool, repeat: int) -> None:
    server = EtcdServer()
    await server.astart()
    rows: list[Row] = []
    lat_rows: list[LatencyRow] = []
    try:
        async with aetcd.Client(host=server.host, port=server.client_port) as admin:

            def etcd_backend() -> EtcdBackend:
                return EtcdBackend(server.endpoint, lease_ttl=30.0)

            async def clean() -> None:
                await wipe(admin)

            # Warm-up (connection, etcd's first fsyncs), not timed.
            await raw_put_loop(server, min(keys, 500), 8)

            # Throughput: median of ``repeat`` runs per row, each on an empty keyspace.
            raw: dict[int, float] = {}
            in_flights = [1, 64] if quick else [1, 16, 64]
            worker_counts = [1, 64] if quick else [1, 4, 16, 64]
            for in_flight in in_flights:
                raw[in_flight] = await median_of(
                    repeat, clean, functools.partial(raw_put_loop, server, keys, in_flight)
                )
                rows.append(Row("raw aetcd put loop (with lease)", str(in_flight), keys,
                                raw[in_flight]))
            for workers in worker_counts:
                secs = await median_of(
                    repeat, clean, functools.partial(sync_store_run, etcd_backend, keys, workers)
                )
                base = max(k for k in raw if k <= workers)
                rows.append(Row("WorkqueueSyncStore -> EtcdBackend", f"{workers} workers", keys,
                                secs, baseline=f"raw@{base}"))
            raw_txn = await median_of(repeat, clean, functools.partial(raw_txn_loop, server, keys))
            rows.append(Row(f"raw aetcd txn loop ({TXN_OPS} puts/txn)", "1 txn", keys, raw_txn,
                            baseline="raw@1"))
            for workers in [1] if quick else [1, 4]:
                secs = await median_of(
                    repeat, clean,
                    functools.partial(sync_store_run, etcd_backend, keys, workers, TXN_OPS),
                )
                rows.append(Row(f"WorkqueueSyncStore batch_size={TXN_OPS} -> EtcdBackend",
                                f"{workers} workers", keys, secs, baseline="raw-txn"))
            secs = await median_of(repeat, clean, lambda: sync_store_run(MemoryBackend, keys, 1))
            rows.append(Row("WorkqueueSyncStore -> MemoryBackend", "1 worker", keys, secs,
                            baseline="raw@1"))
            await wipe(admin)
            sample = min(keys, 20 if quick else 50)
            secs = await asyncio.to_thread(etcdctl_put_sample, server, sample)
            rows.append(Row("etcdctl put (1 process per put)", "1", sample, secs,
                            baseline="raw@1"))
            await wipe(admin)
            secs = await asyncio.to_thread(etcdctl_txn, server, keys)
            rows.append(Row(f"etcdctl txn ({TXN_OPS} puts per txn/process)", f"{TXN_OPS}/txn",
                            keys, secs, baseline="raw@1"))

            # Latency.
            await wipe(admin)
            lat_rows.append(LatencyRow("raw aetcd put -> aetcd watch",
                                       await latency_raw(server, latency_keys)))
            async with etcd_backend() as b:
                await wipe(admin)
                lat_rows.append(LatencyRow("EtcdBackend.update -> list_and_watch",
                                           await latency_backend_watch(b, latency_keys), "raw"))
            async with etcd_backend() as w, etcd_backend() as r:
                await wipe(admin)
                lat_rows.append(LatencyRow("EtcdBackend.update -> RestartableWatchStore",
                                           await latency_watch_store(w, r, latency_keys, False),
                                           "raw"))
                await wipe(admin)
                lat_rows.append(LatencyRow("WorkqueueSyncStore -> etcd -> RestartableWatchStore",
                                           await latency_watch_store(w, r, latency_keys, True),
                                           "raw"))
            async with MemoryBackend() as m:
                lat_rows.append(LatencyRow("MemoryBackend.update -> RestartableWatchStore",
                                           await latency_watch_store(m, m, latency_keys, False),
                                           "raw"))
    finally:
        await asyncio.to_thread(server.cleanup)

    print(f"kubemirror kvstore benchmark: etcd {server_version()} on 127.0.0.1, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    mode = "quick" if quick else "full"
    print(f"keys={keys} value={VALUE_SIZE} B, throughput = median of {repeat} runs, "
          f"latency keys={latency_keys} (one write at a time), {mode} mode\n")
    print(f"{'upsert throughput':<52} {'in flight':>11} {'keys':>7} {'seconds':>8} "
          f"{'keys/s':>9} {'ratio':>14}")
    for row in rows:
        ratio = ""
        if row.baseline:
            base_secs = raw_txn if row.baseline == "raw-txn" else raw[int(row.baseline[4:])]
            ratio = f"{row.rate / (keys / base_secs):.2f}x {row.baseline}"
        print(f"{row.path:<52} {row.in_flight:>11} {row.keys:>7} {row.seconds:>8.2f} "
              f"{row.rate:>9.0f} {ratio:>14}")
    print()
    print(f"{'watch propagation latency':<52} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
    raw_p50 = lat_rows[0].pct(0.5)
    for lrow in lat_rows:
        ratio = f"{lrow.pct(0.5) / raw_p50:.2f}x" if lrow.baseline else "baseline"
        print(f"{lrow.path:<52} {lrow.pct(0.5):>8.2f} {lrow.pct(0.99):>8.2f} {ratio:>10}")
    print("\nratios: keys/s relative to the raw aetcd loop with the same number of writes in "
          "flight (raw@N) or to the raw aetcd txn loop (raw-txn);\nlatency p50 relative to raw "
          "aetcd put -> watch. etcdctl rows show process-per-call cost, not client speed.")


def server_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else "?"
    return first.replace("etcd Version: ", "")


STACKS = ("kubemirror", "raw")


def _stacks(text: str) -> list[str]:
    """``--stacks``: comma-separated names out of ``STACKS``."""
    names = text.split(",")
    unknown = [name for name in names if name not in STACKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown stack(s) {', '.join(map(repr, unknown))}: choose from {', '.join(STACKS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=positive_int, default=None,
                        help="keys per throughput run")
    parser.add_argument("--latency-keys", type=positive_int, default=None,
                        help="writes per latency run")
    parser.add_argument("--repeat", type=positive_int, default=None,
                        help="runs per throughput row")
    parser.add_argument("--quick", action="store_true", help="1,000 keys, fewer variants")
    parser.add_argument("--agents", type=positive_int, default=None,
                        help="run the agents benchmark on a 3-member cluster with N agents")
    parser.add_argument("--agent-keys", type=positive_int, default=10,
                        help="keys owned by each agent")
    parser.add_argument("--processes", type=positive_int, default=1,
                        help="worker processes for the agents (1: asyncio tasks in one process)")
    parser.add_argument("--latency-writes", type=positive_int, default=100,
                        help="single writes timed until every agent saw them")
    parser.add_argument("--write-interval", type=positive_floats, default=[0.05],
                        help="seconds between two latency writes; several comma-separated "
                        "(e.g. 0.05,0.5): one timed phase each, after the same convergence")
    parser.add_argument("--stacks", type=_stacks, default=list(STACKS),
                        help="comma-separated: kubemirror, raw (aetcd)")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="agents: keep Python's default collector after convergence "
                        "(default: gc.freeze() in every stack's agent processes)")
    parser.add_argument("--lease-ttl", type=positive_int, default=900,
                        help="agents: session lease TTL in seconds, every stack (default: "
                        "Cilium's 15 min; at 60 s, 1,000 agents on a loaded 2-CPU machine "
                        "lose leases while converging)")
    parser.add_argument("--agent-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent_worker is not None or args.agents is not None:
        import kvstore_agents  # beside this file (benchmarks/ is on sys.path when run)

        if args.agent_worker is not None:
            kvstore_agents.worker_main(args.agent_worker)
        else:
            asyncio.run(kvstore_agents.run_agents(
                args.agents, args.agent_keys, args.processes, args.latency_writes,
                args.write_interval, args.stacks,
                args.gc_freeze, args.lease_ttl))
        return
    keys = args.keys or (1000 if args.quick else 10_000)
    latency_keys = args.latency_keys or min(keys, 300 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)
    asyncio.run(run(keys, latency_keys, args.quick, repeat))


if __name__ == "__main__":
    try:
        main()
    except errors.KubemirrorError as exc:  # e.g. no etcd binary: one line, no traceback
        sys.exit(f"bench_kvstore: {exc}")
