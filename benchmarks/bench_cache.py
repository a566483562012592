"""Benchmark kubemirror.cache against a plain dict + threading.Lock, in the same run.

Measures add, update, get_by_key, by_index and delete on N realistic ~6 KB Pods
(``podgen``, fixed seed) for:

* ``dict+lock``: the baseline, a dict guarded by a ``threading.Lock`` with the same
  key function (``keys.meta_namespace_key``), no index;
* ``dict+lock+ns``: the same plus a hand-written namespace index (dict of sets),
  the baseline for ``by_index``;
* ``Indexer``: ``cache.Indexer`` with the namespace index;
* ``new_store``: ``cache.new_store()`` (an Indexer without indices);

then DeltaFIFO throughput (add + pop), then the mutation detector's cost: the
``Indexer`` a store is built as when the detector is off (the default: no wrapper,
no extra branch) against ``MutationCheckingIndexer`` with the detector on
(fingerprint per write, verification of the replaced object) and in strict mode
(also a verification per read). Each figure is the best of ``--repeat`` runs,
interleaved across the store kinds after a warm-up round, in CPU time (the
machine is shared: wall time would measure the neighbours); ratios are
time(kubemirror) / time(dict+lock), lower is better. The issue's targets:
Indexer writes <= 3x, ``get_by_key`` <= 1.5x.

    python benchmarks/bench_cache.py            # 100k pods (~3 GB RAM, ~2 min)
    python benchmarks/bench_cache.py --quick    # 10k pods, a few seconds
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
clock = time.process_time
"""CPU time of this process: on a shared machine, wall time mostly measures the neighbours."""


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


Factory = Callable[[], Any]


def bench_stores(
    factories: dict[str, tuple[Factory, bool]],
    pods: Sequence[Any],
    updated: Sequence[Any],
    keys_: Sequence[str],
    namespaces: Sequence[str],
    repeat: int,
) -> dict[str, dict[str, float]]:
    """Seconds per operation, per store kind and operation (best of ``repeat``).

    Runs are interleaved (every kind once per round, in a rotating order) after a
    warm-up round, so no kind systematically pays for cold memory or a noisy moment.
    """
    n = len(pods)
    rounds = max(1, 20_000 // max(1, n // len(namespaces)))

    def filled(factory: Factory) -> Callable[[], Any]:
        def make() -> Any:
            store = factory()
            add = store.add
            for p in pods:
                add(p)
            return store

        return make

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

    def run_by_index(store: Any) -> None:
        by_index = store.by_index
        for _ in range(rounds):
            for ns in namespaces:
                by_index("namespace", ns)

    ops: list[tuple[str, bool, Callable[[Any], None], int]] = [
        ("add", False, run_add, n),
        ("update", True, run_update, n),
        ("get_by_key", True, run_get, n),
        ("delete", True, run_delete, n),
        ("by_index", True, run_by_index, rounds * len(namespaces)),
    ]
    names = list(factories)
    for factory, _ in factories.values():  # warm-up round, not measured
        filled(factory)()
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    for op, needs_fill, run, count in ops:
        for r in range(repeat):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                factory, indexed = factories[name]
                if op == "by_index" and not indexed:
                    continue
                store = filled(factory)() if needs_fill else factory()
                start = clock()
                run(store)
                elapsed = (clock() - start) / count
                out[name][op] = min(out[name].get(op, elapsed), elapsed)
                del store
    return out


def bench_delta_fifo(pods: Sequence[Any], repeat: int) -> tuple[float, float]:
    """Seconds per (add + pop) for DeltaFIFO and for a deque+lock baseline, interleaved."""
    import collections

    n = len(pods)

    def run_fifo() -> None:
        fifo = cache.DeltaFIFO()
        add = fifo.add
        for p in pods:
            add(p)
        pop = fifo.pop
        ident = _identity
        for _i in range(n):
            pop(ident)

    def run_deque() -> None:
        lock = threading.Lock()
        q: collections.deque[tuple[str, Any]] = collections.deque()
        for p in pods:
            key = key_of(p)
            with lock:
                q.append((key, p))
        for _i in range(n):
            with lock:
                q.popleft()

    times: dict[str, float] = {}
    for r in range(repeat):
        runs = [("fifo", run_fifo), ("deque", run_deque)]
        for name, run in runs[r % 2 :] + runs[: r % 2]:
            start = clock()
            run()
            elapsed = (clock() - start) / n
            times[name] = min(times.get(name, elapsed), elapsed)
    return times["fifo"], times["deque"]


def _identity(x: Any) -> Any:
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="number of pods (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="10k pods (best of 3)")
    args = parser.parse_args()
    size, repeat = (10_000, 3) if args.quick else (args.size, args.repeat)

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
        f"Python {platform.python_version()}, GC on (pods frozen), CPU time; "
        f"generated in {time.perf_counter() - t0:.1f} s"
    )

    indexers = {cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}
    results = bench_stores(
        {
            "dict+lock": (DictStore, False),
            "dict+lock+ns": (DictNamespaceStore, True),
            "Indexer": (lambda: cache.Indexer(indexers=indexers), True),
            "new_store": (cache.new_store, False),
        },
        pods,
        updated,
        keys_,
        namespaces,
        repeat,
    )
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
    report_mutation_detector(pods, updated, keys_, namespaces, repeat)


def report_mutation_detector(
    pods: Sequence[Any],
    updated: Sequence[Any],
    keys_: Sequence[str],
    namespaces: Sequence[str],
    repeat: int,
) -> None:
    """The mutation detector's table: off (the plain Indexer), on, strict."""
    from kubemirror.informer import SharedInformer
    from kubemirror.listwatch import ListWatch

    indexers = {cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}
    # What SharedInformer builds with the detector off: the plain Indexer, unwrapped.
    off = SharedInformer(ListWatch(None, None), mutation_detector=False)  # type: ignore[arg-type]
    assert type(off.get_indexer()) is cache.Indexer
    results = bench_stores(
        {
            "off": (lambda: cache.Indexer(indexers=indexers), True),
            "on": (lambda: cache.MutationCheckingIndexer(indexers=indexers), True),
            "strict": (
                lambda: cache.MutationCheckingIndexer(indexers=indexers, strict=True), True),
        },
        pods,
        updated,
        keys_,
        namespaces,
        repeat,
    )
    header = (
        f"| {'operation':<11} | {'off':>11} | {'on':>11} | {'strict':>11} "
        f"| {'on/off':>7} | {'strict/off':>10} |"
    )
    print()
    print("mutation detector: ops/s (higher is better); ratios are time ratios vs off")
    print("(off = the Indexer a SharedInformer builds without the detector: zero added cost)")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for op in ("add", "update", "get_by_key", "delete", "by_index"):
        row = [results[kind][op] for kind in ("off", "on", "strict")]
        print(
            f"| {op:<11} | {1 / row[0]:>11,.0f} | {1 / row[1]:>11,.0f} | {1 / row[2]:>11,.0f} "
            f"| {row[1] / row[0]:>6.2f}x | {row[2] / row[0]:>9.2f}x |"
        )


if __name__ == "__main__":
    main()
