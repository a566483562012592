"""Benchmark kubemirror.cache against a plain dict + threading.Lock, in the same run.

Measures add, update, get_by_key, by_index and delete on N realistic ~6 KB Pods
(``podgen``, fixed seed) for:

* ``dict+lock``: the baseline, a dict guarded by a ``threading.Lock`` with the same
  key function (``keys.meta_namespace_key``), no index;
* ``dict+lock+ns``: the same plus a hand-written namespace index (dict of sets),
  the baseline for ``by_index``;
* ``Indexer``: ``cache.Indexer`` with the namespace index;
* ``new_store``: ``cache.new_store()`` (an Indexer without indices);

then DeltaFIFO throughput (add + pop). Each figure is the best of ``--repeat`` runs;
ratios are time(kubemirror) / time(dict+lock), lower is better. The issue's targets:
Indexer writes <= 3x, ``get_by_key`` <= 1.5x.

    python benchmarks/bench_cache.py            # 100k pods (~3 GB RAM, ~2 min)
    python benchmarks/bench_cache.py --quick    # 10k pods, one repeat
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import podgen
from kubemirror import cache, keys

key_of = keys.meta_namespace_key


class DictStore:
    """Baseline: the least a thread-safe keyed store can do."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}

    def add(self, obj: Any) -> None:
        key = key_of(obj)
        with self._lock:
            self._items[key] = obj

    update = add

    def delete(self, obj: Any) -> None:
        key = key_of(obj)
        with self._lock:
            self._items.pop(key, None)

    def get_by_key(self, key: str) -> Any:
        with self._lock:
            return self._items.get(key)


class DictNamespaceStore(DictStore):
    """Baseline with a hand-written namespace index: what one would write inline."""

    def __init__(self) -> None:
        super().__init__()
        self._index: dict[str, set[str]] = {}

    def add(self, obj: Any) -> None:
        key = key_of(obj)
        ns = obj["metadata"].get("namespace") or ""
        with self._lock:
            old = self._items.get(key)
            self._items[key] = obj
            if old is not None:
                old_ns = old["metadata"].get("namespace") or ""
                if old_ns == ns:
                    return
                self._index[old_ns].discard(key)
            bucket = self._index.get(ns)
            if bucket is None:
                self._index[ns] = {key}
            else:
                bucket.add(key)

    update = add

    def delete(self, obj: Any) -> None:
        key = key_of(obj)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                ns = old["metadata"].get("namespace") or ""
                bucket = self._index[ns]
                bucket.discard(key)
                if not bucket:
                    del self._index[ns]

    def by_index(self, name: str, value: str) -> list[Any]:
        with self._lock:
            items = self._items
            return [items[k] for k in self._index.get(value, ())]


def best(repeat: int, setup: Callable[[], Any], run: Callable[[Any], None]) -> float:
    """Best wall time of ``run(setup())`` over ``repeat`` runs (setup not timed)."""
    times = []
    for _ in range(repeat):
        state = setup()
        start = time.perf_counter()
        run(state)
        times.append(time.perf_counter() - start)
    return min(times)


def bench_store(
    factory: Callable[[], Any],
    pods: Sequence[Any],
    updated: Sequence[Any],
    keys_: Sequence[str],
    namespaces: Sequence[str],
    repeat: int,
    indexed: bool = True,
) -> dict[str, float]:
    """Seconds per operation for each operation on a store made by ``factory``."""
    n = len(pods)

    def filled() -> Any:
        store = factory()
        for p in pods:
            store.add(p)
        return store

    def run_add(store: Any) -> None:
        add = store.add
        for p in pods:
            add(p)

    def run_update(store: Any) -> None:
        update = store.update
        for p in updated:
            update(p)

    def run_get(store: Any) -> None:
        get = store.get_by_key
        for k in keys_:
            get(k)

    def run_delete(store: Any) -> None:
        delete = store.delete
        for p in pods:
            delete(p)

    out = {
        "add": best(repeat, factory, run_add) / n,
        "update": best(repeat, filled, run_update) / n,
        "get_by_key": best(repeat, filled, run_get) / n,
        "delete": best(repeat, filled, run_delete) / n,
    }
    if indexed:
        rounds = max(1, 20_000 // max(1, n // len(namespaces)))
        calls = rounds * len(namespaces)

        def run_by_index(store: Any) -> None:
            by_index = store.by_index
            for _ in range(rounds):
                for ns in namespaces:
                    by_index("namespace", ns)

        out["by_index"] = best(repeat, filled, run_by_index) / calls
    return out


def bench_delta_fifo(pods: Sequence[Any], repeat: int) -> tuple[float, float]:
    """Seconds per (add + pop) for DeltaFIFO and for a deque+lock baseline."""
    import collections

    n = len(pods)

    def run_fifo(_: Any) -> None:
        fifo = cache.DeltaFIFO()
        add = fifo.add
        for p in pods:
            add(p)
        pop = fifo.pop
        ident = _identity
        for _i in range(n):
            pop(ident)

    def run_deque(_: Any) -> None:
        lock = threading.Lock()
        q: collections.deque[tuple[str, Any]] = collections.deque()
        for p in pods:
            key = key_of(p)
            with lock:
                q.append((key, p))
        for _i in range(n):
            with lock:
                q.popleft()

    return (
        best(repeat, lambda: None, run_fifo) / n,
        best(repeat, lambda: None, run_deque) / n,
    )


def _identity(x: Any) -> Any:
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="number of pods (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="10k pods, one repeat")
    args = parser.parse_args()
    size, repeat = (10_000, 1) if args.quick else (args.size, args.repeat)

    t0 = time.perf_counter()
    gc.disable()
    pods = podgen.make_pods(size, args.seed)
    updated = [
        {
            **p,
            "metadata": {
                **p["metadata"],
                "resourceVersion": str(int(p["metadata"]["resourceVersion"]) + 1),
            },
        }
        for p in pods
    ]
    keys_ = [key_of(p) for p in pods]
    namespaces = sorted({p["metadata"]["namespace"] for p in pods})
    gc.enable()
    gc.freeze()  # the generated pods are long-lived: keep them out of GC passes (both sides)
    mean_size = sum(podgen.pod_size(p) for p in pods[:1000]) / min(size, 1000)
    print(
        f"kubemirror.cache benchmark: {size} pods (~{mean_size / 1024:.1f} KB JSON each, "
        f"seed {args.seed}, {len(namespaces)} namespaces), best of {repeat}; "
        f"Python {platform.python_version()}, GC on (pods frozen); "
        f"generated in {time.perf_counter() - t0:.1f} s"
    )

    indexers = {cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}
    results = {
        "dict+lock": bench_store(DictStore, pods, updated, keys_, namespaces, repeat, False),
        "dict+lock+ns": bench_store(DictNamespaceStore, pods, updated, keys_, namespaces, repeat),
        "Indexer": bench_store(
            lambda: cache.Indexer(indexers=indexers), pods, updated, keys_, namespaces, repeat
        ),
        "new_store": bench_store(cache.new_store, pods, updated, keys_, namespaces, repeat, False),
    }
    base = results["dict+lock"]
    base_ns = results["dict+lock+ns"]
    targets = {"add": 3.0, "update": 3.0, "delete": 3.0, "get_by_key": 1.5}

    header = (
        f"| {'operation':<11} | {'dict+lock':>11} | {'dict+lock+ns':>12} | {'Indexer':>11} "
        f"| {'new_store':>11} | {'Indexer/base':>12} | {'target':>6} |"
    )
    print()
    print("ops/s (higher is better); Indexer/base = time ratio vs dict+lock")
    print("(by_index: vs dict+lock+ns, the hand-written namespace index)")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")

    def fmt(v: float | None) -> str:
        return f"{1 / v:>11,.0f}" if v else f"{'-':>11}"

    for op in ("add", "update", "get_by_key", "delete", "by_index"):
        ref = base_ns if op == "by_index" else base
        ratio = results["Indexer"][op] / ref[op]
        target = targets.get(op)
        indexer, plain = results["Indexer"], results["new_store"]
        print(
            f"| {op:<11} | {fmt(base.get(op))} | {fmt(base_ns.get(op)):>12} | {fmt(indexer[op])} "
            f"| {fmt(plain.get(op))} | {ratio:>11.2f}x | "
            f"{(f'<={target}x' if target else '-'):>6} |"
        )
    fifo_t, deque_t = bench_delta_fifo(pods, repeat)
    print()
    print(
        f"DeltaFIFO add+pop: {1 / fifo_t:,.0f} ops/s; deque+lock baseline {1 / deque_t:,.0f} ops/s "
        f"(ratio {fifo_t / deque_t:.2f}x)"
    )


if __name__ == "__main__":
    main()
