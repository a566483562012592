"""Micro-benchmark: compiled FieldPath getters/removers against hand-written dict code.

Run: ``python benchmarks/bench_paths.py [--size N] [--repeat R] [--quick]``.

Every row runs the same loop over the same realistic Pods (seeded), so the ratio
column compares like with like: the baseline of each group is a hand-written
Python function doing the same work (``ratio`` = time / baseline time, lower is
better). "inline" rows show the floor with no function call at all.
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubemirror.paths import FieldPath, fields_remover, remove_fields
from kubemirror.selectors import LabelSelector

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVICE_NAME = "kubernetes.io/service-name"


def make_pod(rng: random.Random, i: int) -> dict[str, Any]:
    """A Pod shaped like the ones in perf-baselines.md (labels, annotations, managedFields)."""
    app = f"app-{rng.randrange(50)}"
    labels = {
        "app": app,
        "pod-template-hash": f"{rng.getrandbits(40):x}",
        "tier": rng.choice(["web", "db", "cache"]),
        "version": f"v{rng.randrange(5)}",
        "team": rng.choice(["a", "b", "c", "d"]),
    }
    if i % 2:
        labels[SERVICE_NAME] = app
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{i}",
            "namespace": f"ns-{rng.randrange(20)}",
            "uid": f"{rng.getrandbits(128):032x}",
            "resourceVersion": str(1000 + i),
            "labels": labels,
            "annotations": {
                LAST_APPLIED: '{"apiVersion":"v1","kind":"Pod"}' * 8,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app}],
            "managedFields": [
                {"manager": m, "operation": "Update", "fieldsV1": {"f:metadata": {"f:x": {}}}}
                for m in ("kube-controller-manager", "kubelet", "kubectl")
            ],
        },
        "spec": {
            "nodeName": f"node-{rng.randrange(100)}",
            "containers": [
                {"name": "main", "image": f"registry/{app}:1.{i % 7}", "ports": [{"port": 80}]},
                {"name": "sidecar", "image": "registry/proxy:2.0"},
            ],
        },
        "status": {
            "phase": rng.choice(["Running", "Pending"]),
            "conditions": [{"type": t, "status": "True"} for t in ("A", "B", "C", "D")],
        },
    }


def measure(
    func: Callable[[list[dict[str, Any]]], object], objs: list[dict[str, Any]], repeat: int
) -> float:
    """Best wall time of ``repeat`` runs of ``func(objs)`` (GC paused while timing)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        func(objs)
        best = min(best, time.perf_counter() - start)
        gc.enable()
    return best


Row = tuple[str, str, Callable[[list[dict[str, Any]]], object]]


def loop(one: Callable[[dict[str, Any]], object]) -> Callable[[list[dict[str, Any]]], object]:
    def run(objs: list[dict[str, Any]]) -> object:
        for obj in objs:
            one(obj)
        return None

    return run


def get_rows() -> list[Row]:
    namespace = FieldPath.compile("metadata.namespace")
    service = FieldPath.compile(f"metadata.labels['{SERVICE_NAME}']")
    image = FieldPath.compile("spec.containers[0].image")

    def hand_namespace(obj: dict[str, Any]) -> object:
        meta = obj.get("metadata")
        return meta.get("namespace") if isinstance(meta, dict) else None

    def hand_service(obj: dict[str, Any]) -> object:
        meta = obj.get("metadata")
        labels = meta.get("labels") if isinstance(meta, dict) else None
        return labels.get(SERVICE_NAME) if isinstance(labels, dict) else None

    def hand_image(obj: dict[str, Any]) -> object:
        spec = obj.get("spec")
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if isinstance(containers, list) and containers and isinstance(containers[0], dict):
            return containers[0].get("image")
        return None

    def inline_namespace(objs: list[dict[str, Any]]) -> object:
        for obj in objs:
            obj["metadata"].get("namespace")
        return None

    return [
        ("get metadata.namespace", "hand-written (baseline)", loop(hand_namespace)),
        ("get metadata.namespace", "FieldPath.get", loop(namespace.get)),
        ("get metadata.namespace", "FieldPath.index_value", loop(namespace.index_value)),
        ("get metadata.namespace", "inline obj[..].get (floor)", inline_namespace),
        ("get labels['...service-name']", "hand-written (baseline)", loop(hand_service)),
        ("get labels['...service-name']", "FieldPath.get", loop(service.get)),
        ("get spec.containers[0].image", "hand-written (baseline)", loop(hand_image)),
        ("get spec.containers[0].image", "FieldPath.get", loop(image.get)),
    ]


def remove_rows() -> list[Row]:
    paths = [
        FieldPath.compile("metadata.managedFields"),
        FieldPath.compile(f"metadata.annotations['{LAST_APPLIED}']"),
    ]
    single = paths[0]

    def hand_remove(obj: dict[str, Any]) -> object:
        meta = dict(obj["metadata"])
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            annotations = dict(annotations)
            del annotations[LAST_APPLIED]
            meta["annotations"] = annotations
        out = dict(obj)
        out["metadata"] = meta
        return out

    def hand_remove_one(obj: dict[str, Any]) -> object:
        meta = dict(obj["metadata"])
        del meta["managedFields"]
        out = dict(obj)
        out["metadata"] = meta
        return out

    def deepcopy_remove(obj: dict[str, Any]) -> object:
        out = copy.deepcopy(obj)
        del out["metadata"]["managedFields"]
        del out["metadata"]["annotations"][LAST_APPLIED]
        return out

    def remove_two(obj: dict[str, Any]) -> object:
        return remove_fields(obj, paths)

    return [
        ("remove managedFields", "hand-written copy (baseline)", loop(hand_remove_one)),
        ("remove managedFields", "FieldPath.remove", loop(single.remove)),
        ("remove managedFields + annotation", "hand-written copy (baseline)", loop(hand_remove)),
        ("remove managedFields + annotation", "remove_fields", loop(remove_two)),
        ("remove managedFields + annotation", "fields_remover(paths)", loop(fields_remover(paths))),
        ("remove managedFields + annotation", "deepcopy + del (naive)", loop(deepcopy_remove)),
    ]


def selector_rows() -> list[Row]:
    equality = LabelSelector.parse("app=app-7,tier=web")
    mixed = LabelSelector.parse("app in (app-1,app-7),tier!=db,team")

    def hand_equality(obj: dict[str, Any]) -> object:
        labels = obj["metadata"].get("labels") or {}
        return labels.get("app") == "app-7" and labels.get("tier") == "web"

    def hand_mixed(obj: dict[str, Any]) -> object:
        labels = obj["metadata"].get("labels") or {}
        return (
            labels.get("app") in ("app-1", "app-7")
            and labels.get("tier") != "db"
            and ("team" in labels)
        )

    return [
        ("labels app=..,tier=..", "hand-written (baseline)", loop(hand_equality)),
        ("labels app=..,tier=..", "LabelSelector.matches_object", loop(equality.matches_object)),
        ("labels in/!=/exists", "hand-written (baseline)", loop(hand_mixed)),
        ("labels in/!=/exists", "LabelSelector.matches_object", loop(mixed.matches_object)),
    ]


def run(rows: Sequence[Row], objs: list[dict[str, Any]], repeat: int) -> None:
    baseline = 0.0
    for group, label, func in rows:
        # The naive deepcopy row is ~100x slower: time it on a 5% sample, scaled up.
        sample = objs[: max(1, len(objs) // 20)] if "naive" in label else objs
        seconds = measure(func, sample, repeat) * len(objs) / len(sample)
        if "baseline" in label:
            baseline = seconds
        per_op_ns = seconds / len(objs) * 1e9
        rate = len(objs) / seconds
        print(
            f"| {group:<34} | {label:<30} | {rate:>12,.0f} | {per_op_ns:>8.0f} |"
            f" {seconds / baseline:>5.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="number of Pods")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (best is kept)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="10,000 Pods, 3 runs")
    args = parser.parse_args()
    size, repeat = (10_000, 3) if args.quick else (args.size, args.repeat)
    rng = random.Random(args.seed)
    objs = [make_pod(rng, i) for i in range(size)]
    gc.freeze()
    print(f"kubemirror.paths benchmark: {size:,} Pods (seed {args.seed}), best of {repeat} runs,")
    print("GC paused while timing; ratio = time / hand-written baseline of the same group")
    print("(the deepcopy row is timed on a 5% sample).\n")
    print(f"| {'operation':<34} | {'implementation':<30} | {'ops/s':>12} | {'ns/op':>8} | ratio |")
    print(f"|{'-' * 36}|{'-' * 32}|{'-' * 14}|{'-' * 10}|{'-' * 7}|")
    run(get_rows(), objs, repeat)
    run(remove_rows(), objs, repeat)
    run(selector_rows(), objs, repeat)


if __name__ == "__main__":
    main()
