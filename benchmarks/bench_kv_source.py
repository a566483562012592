"""Benchmark a ``Watcher`` on a ``KVSource`` against the raw ``Backend.list_and_watch`` it consumes.

Starts a private etcd (``EtcdServer``, the binary ``find_etcd_binary`` finds) on
127.0.0.1 and also uses the embedded memory kvstore. Measured in the same run,
for N JSON values (agents: labels, an IP and a node, ~100 bytes each, under
``agents/<zone>/<name>``, seed-free and deterministic):

* initial sync: from opening the stream until LIST_DONE for the baseline (raw
  ``list_and_watch``, each value ``orjson.loads``-ed, so both decode), until
  ``wait_for_sync()`` for a ``Watcher`` (decoded, keyed from the key parts, indexed
  by zone and ``metadata.labels['app']`` in a ``MemoryStore``);
* write -> mirror latency: one write at a time, from issuing it until the
  baseline stream yields it (decoded) / until the watcher's ``on_change``
  reports it (p50/p99).

Usage: python benchmarks/bench_kv_source.py [--keys 10000] [--latency-keys 500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time

import orjson

from kubemirror.kvstore import (
    Backend,
    EtcdBackend,
    EtcdServer,
    KVEventType,
    MemoryBackend,
    etcd_server,
)
from kubemirror.stores import IndexedStore
from kubemirror.watcher import ChangeStats, KVSource, OnChange, Watcher, WatcherConfig

ZONES = ("eu", "us", "ap")


def agent(i: int, version: int = 0) -> bytes:
    return orjson.dumps({
        "metadata": {"labels": {"app": f"app-{i % 20}", "tier": "agent"}},
        "ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        "node": f"node-{i % 50:03d}",
        "version": version,
    })


def key(i: int) -> str:
    return f"agents/{ZONES[i % len(ZONES)]}/agent-{i:06d}"


async def seed(backend: Backend, n: int) -> None:
    for start in range(0, n, 128):
        await backend.update_many({key(i): agent(i) for i in range(start, min(n, start + 128))})


def noop(store: IndexedStore, stats: ChangeStats) -> None:
    """on_change: nothing (the benchmark reads the store)."""


def config(on_change: OnChange = noop) -> WatcherConfig:
    return WatcherConfig(source=KVSource("agents"), debounce_interval=0.0, on_change=on_change,
                         index_by=["metadata.namespace", "metadata.labels['app']"])


async def raw_sync(backend: Backend) -> float:
    started = time.perf_counter()
    events = backend.list_and_watch("agents/")
    try:
        async for event in events:
            if event.type is KVEventType.LIST_DONE:
                return time.perf_counter() - started
            orjson.loads(event.value)
    finally:
        await events.aclose()
    raise RuntimeError("stream ended before LIST_DONE")


async def watcher_sync(backend: Backend) -> float:
    started = time.perf_counter()
    async with Watcher(config(), backend) as w:
        await w.wait_for_sync()
        return time.perf_counter() - started


async def raw_latency(backend: Backend, writer: Backend, n: int) -> list[float]:
    samples: list[float] = []
    events = backend.list_and_watch("agents/")
    try:
        async for event in events:
            if event.type is KVEventType.LIST_DONE:
                break
        for i in range(n):
            started = time.perf_counter()
            await writer.update(key(i), agent(i, 1))
            event = await anext(events)
            orjson.loads(event.value)
            samples.append(time.perf_counter() - started)
    finally:
        await events.aclose()
    return samples


async def watcher_latency(backend: Backend, writer: Backend, n: int) -> list[float]:
    """Until ``on_change`` (a coroutine: called on the loop) reports the write."""
    samples: list[float] = []
    changed = asyncio.Event()

    async def on_change(store: IndexedStore, stats: ChangeStats) -> None:
        changed.set()

    async with Watcher(config(on_change), backend) as w:
        await w.wait_for_sync()
        for i in range(n):
            changed.clear()
            started = time.perf_counter()
            await writer.update(key(i), agent(i, 2))
            await changed.wait()
            samples.append(time.perf_counter() - started)
    return samples


def pct(samples: list[float], q: float) -> float:
    data = sorted(samples)
    return data[min(len(data) - 1, int(q * len(data)))] * 1000


async def bench(name: str, reader: Backend, writer: Backend, keys: int, latency_keys: int) -> None:
    await seed(writer, keys)
    raw = min([await raw_sync(reader) for _ in range(3)])
    mirrored = min([await watcher_sync(reader) for _ in range(3)])
    print(f"| {name} | initial sync, raw list_and_watch + orjson (baseline) | {keys:,} | "
          f"{raw * 1000:,.1f} ms | {keys / raw:,.0f}/s |")
    print(f"| {name} | initial sync, Watcher(KVSource) into a MemoryStore | {keys:,} | "
          f"{mirrored * 1000:,.1f} ms | {keys / mirrored:,.0f}/s ({mirrored / raw:.2f}x) |")
    base = await raw_latency(reader, writer, latency_keys)
    lat = await watcher_latency(reader, writer, latency_keys)
    print(f"| {name} | write -> event, raw (baseline) | {latency_keys:,} | "
          f"p50 {pct(base, .5):.2f} ms | p99 {pct(base, .99):.2f} ms |")
    print(f"| {name} | write -> Watcher on_change | {latency_keys:,} | "
          f"p50 {pct(lat, .5):.2f} ms | p99 {pct(lat, .99):.2f} ms |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--latency-keys", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2,000 keys, 100 latency samples")
    args = parser.parse_args()
    keys, latency_keys = (2_000, 100) if args.quick else (args.keys, args.latency_keys)
    print(f"bench_kv_source: {keys:,} JSON values (~{len(agent(0))} B), "
          f"{latency_keys:,} latency samples; Python {platform.python_version()}; "
          f"best of 3 syncs")
    print("| backend | path | keys | time | rate |")
    print("|---|---|---|---|---|")
    async with MemoryBackend() as writer, MemoryBackend(writer.server) as reader:
        await bench("memory", reader, writer, keys, latency_keys)
    binary = etcd_server.find_etcd_binary()
    if binary is None:
        print("(no etcd binary: the etcd rows are skipped)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        async with EtcdServer(tmp, binary=binary) as server, \
                EtcdBackend(server.endpoint) as writer, EtcdBackend(server.endpoint) as reader:
            await bench("etcd", reader, writer, keys, latency_keys)


if __name__ == "__main__":
    asyncio.run(main())
