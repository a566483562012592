"""Benchmark of kubemirror.stores: memory per Pod and lookup latency, against plain dicts.

Memory (tracemalloc, after a full collection): each variant decodes the same N Pods
from JSON bytes and keeps them the way it would in production:

* ``dict`` baseline: ``{"ns/name": pod}``; ``dict -managedFields`` deletes the field
  in place first.
* ``MemoryStore``: index by (namespace, name); ``MemoryStore ignore_fields`` drops
  ``metadata.managedFields`` (non-mutating removal, the decoded original is freed).
* ``CachedStore``: references only (the decoded Pod is dropped after ``add``).

Latency (median of 5 rounds of ``--lookups`` random lookups, ns per call):

* exact key on a (namespace, name) index vs ``dict[key]``;
* exact key on a (namespace, ``app`` label) index — a bucket of several Pods,
  returned as the cached tuple — vs a dict of lists built up front;
* partial key (namespace only) vs scanning the dict's values;
* CachedStore hit vs ``dict[key]``; miss (forget, re-add, ``aget``) vs awaiting the
  bare fetch coroutine, which reads a dict: the store's own overhead, no network.

Run: ``python benchmarks/bench_stores.py`` (100k Pods, several minutes, ~8 GB peak),
``--quick`` (10k Pods) or ``--size N``. Pods come from ``benchmarks/podgen.py``
(seed 42, ~6 KB of JSON each, 50 namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kubemirror.stores import CachedStore, MemoryStore

try:
    from podgen import make_pods
except ImportError:  # podgen.py lands with the cache benchmarks; fall back to the fixture pod
    from kubemirror.testing import make_pod as _fixture_pod

    def make_pods(count: int, seed: int = 42, namespaces: int = 50) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        return [
            _fixture_pod(
                f"app{i % 10}-{i}", f"ns-{rng.randrange(namespaces)}",
                labels={"app": f"app{i % 10}"}, resource_version=str(i + 1),
            )
            for i in range(count)
        ]


SEED = 42


def pod_key(pod: dict[str, Any]) -> tuple[str, str]:
    meta = pod["metadata"]
    return meta.get("namespace") or "", meta["name"]


def measure(build: Callable[[list[bytes]], Any], blobs: list[bytes]) -> tuple[float, Any]:
    """Bytes per Pod retained by what ``build`` returns (tracemalloc, after gc)."""
    gc.collect()
    tracemalloc.start()
    gc.disable()  # as kubemirror's client does around bulk decoding
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build(blobs)
    finally:
        gc.enable()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(blobs), result


def build_dict(blobs: list[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for blob in blobs:
        pod = orjson.loads(blob)
        ns, name = pod_key(pod)
        out[f"{ns}/{name}"] = pod
    return out


def build_dict_stripped(blobs: list[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for blob in blobs:
        pod = orjson.loads(blob)
        pod["metadata"].pop("managedFields", None)
        ns, name = pod_key(pod)
        out[f"{ns}/{name}"] = pod
    return out


def build_memory(blobs: list[bytes], ignore: tuple[str, ...] = ()) -> MemoryStore:
    store = MemoryStore(2, ignore_fields=ignore)
    for blob in blobs:
        pod = orjson.loads(blob)
        store.add(pod, pod_key(pod))
    return store


async def _no_fetch(namespace: str, name: str) -> dict[str, Any] | None:
    return None


def build_cached(blobs: list[bytes]) -> CachedStore:
    store = CachedStore(2, _no_fetch, ttl=60)
    for blob in blobs:
        pod = orjson.loads(blob)
        store.add(pod, pod_key(pod))
    return store


def timed(fn: Callable[[], Any], n: int) -> float:
    """Median over 5 rounds of the ns per call of ``fn`` run ``n`` times."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter_ns() - start) / n)
    return statistics.median(rounds)


def cycle(items: list[Any]) -> Callable[[], Any]:
    it = iter(items)

    def nxt() -> Any:
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(items)
            return next(it)

    return nxt


def latency(pods: list[dict[str, Any]], lookups: int) -> list[tuple[str, float, float]]:
    rng = random.Random(SEED)
    keys = [pod_key(p) for p in pods]
    sample = [keys[rng.randrange(len(keys))] for _ in range(lookups)]
    rows: list[tuple[str, float, float]] = []

    by_key = {f"{ns}/{name}": p for (ns, name), p in zip(keys, pods, strict=True)}
    store = MemoryStore(2)
    for (ns, name), p in zip(keys, pods, strict=True):
        store.add(p, (ns, name))
    flat = [f"{ns}/{name}" for ns, name in sample]
    nk, nf = cycle(sample), cycle(flat)
    base = timed(lambda: by_key[nf()], lookups)
    ours = timed(lambda: store.get(*nk()), lookups)
    rows.append(("get exact (ns, name)", ours, base))

    def app(p: dict[str, Any]) -> str:
        return str((p["metadata"].get("labels") or {}).get("app", ""))

    label_store = MemoryStore(2)
    lists: dict[tuple[str, str], list[Any]] = {}
    for (ns, _), p in zip(keys, pods, strict=True):
        label_store.add(p, (ns, app(p)))
        lists.setdefault((ns, app(p)), []).append(p)
    label_keys = [(ns, app(p)) for (ns, _), p in zip(keys, pods, strict=True)]
    label_sample = [label_keys[rng.randrange(len(label_keys))] for _ in range(lookups)]
    nl, nb = cycle(label_sample), cycle(label_sample)
    base = timed(lambda: lists[nb()], lookups)
    ours = timed(lambda: label_store.get(*nl()), lookups)
    rows.append(("get exact (ns, app label) bucket", ours, base))

    namespaces = sorted({ns for ns, _ in keys})
    ns_sample = [namespaces[rng.randrange(len(namespaces))] for _ in range(200)]
    n1, n2 = cycle(ns_sample), cycle(ns_sample)

    def scan() -> list[Any]:
        ns = n2()
        return [p for p in by_key.values() if p["metadata"].get("namespace") == ns]

    few = max(20, min(200, lookups // 100))
    base = timed(scan, few)
    ours = timed(lambda: store.get(n1()), few)
    rows.append((f"get partial (ns) ~{len(pods) // len(namespaces)} pods", ours, base))

    loop = asyncio.new_event_loop()
    try:
        source = dict(zip(keys, pods, strict=True))

        async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
            return source.get((namespace, name))

        cached = CachedStore(2, fetch, ttl=3600, max_size=len(pods))
        for (ns, name), p in zip(keys, pods, strict=True):
            cached.add(p, (ns, name))
        warm = sample[: min(len(sample), 5000)]
        for ns, name in warm:
            loop.run_until_complete(cached.aget(ns, name))
        nw = cycle(warm)
        ours = timed(lambda: cached.get(*nw()), lookups)
        base = timed(lambda: by_key[nf()], lookups)
        rows.append(("CachedStore get hit", ours, base))
        miss_sample = [keys[rng.randrange(len(keys))] for _ in range(min(lookups, 20000))]
        nm = cycle(miss_sample)

        def miss() -> None:
            ns, name = nm()
            cached.delete_by_name(ns, name)  # forget it (and its cache entry)...
            cached.add(source[(ns, name)], (ns, name))  # ...and track it again, uncached
            loop.run_until_complete(cached.aget(ns, name))

        nm2 = cycle(miss_sample)
        ours = timed(miss, len(miss_sample) // 5)
        base = timed(lambda: loop.run_until_complete(fetch(*nm2())), len(miss_sample) // 5)
        rows.append(("CachedStore aget miss (vs bare fetch)", ours, base))
    finally:
        loop.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="number of Pods")
    parser.add_argument("--quick", action="store_true", help="10k Pods, fewer lookups")
    parser.add_argument("--lookups", type=int, default=200_000, help="lookups per round")
    args = parser.parse_args()
    size = 10_000 if args.quick else args.size
    lookups = 50_000 if args.quick else args.lookups

    pods = make_pods(size, seed=SEED)
    blobs = [orjson.dumps(p) for p in pods]
    del pods
    avg_json = sum(map(len, blobs)) / len(blobs)
    print(
        f"bench_stores: {size} Pods from podgen (seed {SEED}), "
        f"{avg_json / 1024:.1f} KB JSON each; Python {sys.version.split()[0]}"
    )
    print()

    results: list[tuple[str, float]] = []
    for label, build in [
        ("dict {ns/name: pod} (baseline)", build_dict),
        ("dict, managedFields deleted in place", build_dict_stripped),
        ("MemoryStore(ns, name)", build_memory),
        ("MemoryStore ignore_fields=managedFields",
         lambda b: build_memory(b, ("metadata.managedFields",))),
        ("CachedStore (references only)", build_cached),
    ]:
        per_obj, kept = measure(build, blobs)
        results.append((label, per_obj))
        del kept
        gc.collect()

    base = results[0][1]
    print(f"{'memory per Pod':<44}{'bytes':>12}{'vs dict':>10}")
    for label, per_obj in results:
        print(f"{label:<44}{per_obj:>12,.0f}{per_obj / base:>9.2f}x")
    print(f"{'MemoryStore index overhead per Pod':<44}{results[2][1] - base:>12,.0f}")
    print()

    pods = [orjson.loads(b) for b in blobs]
    del blobs
    rows = latency(pods, lookups)
    print(f"{'lookup (ns per call)':<40}{'kubemirror':>14}{'baseline':>14}{'ratio':>9}")
    for label, ours, theirs in rows:
        print(f"{label:<40}{ours:>14,.0f}{theirs:>14,.0f}{ours / theirs:>8.2f}x")
    print("\nratio = kubemirror / baseline (lower is better; < 1 means faster than the dict"
          " baseline). Baselines: dict[key]; a prebuilt dict of lists; a scan of dict values.")


if __name__ == "__main__":
    main()
