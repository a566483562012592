"""A realistic generated Kubernetes workload with churn, written into a ``MemoryStorage``.

Part of the ``cli`` layer (it feeds ``kubemirror demo``; benchmarks and tests may
use it too). ``Workload`` lays out namespaces, nodes, Deployments and their Pods
(the Pod shape of ``kubemirror.testing.make_pod``: labels, owner, containers,
conditions, ``managedFields``), then ``step``/``run`` apply the changes a busy
cluster sees: Pods going Pending -> Running, container restarts, readiness
flaps, rollouts replacing Pods, Deployments scaling up and down. Every write
stamps ``WRITTEN_AT_ANNOTATION`` with the wall-clock time, so a mirror can
measure its end-to-end latency. Deterministic for a given ``seed`` (except
timestamps). Not thread-safe: drive one ``Workload`` from one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from kubemirror import testing
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.types import GroupVersionResource, MutableObj, Obj

__all__ = [
    "DEPLOYMENTS",
    "NAMESPACES",
    "NODES",
    "WRITTEN_AT_ANNOTATION",
    "ChurnStats",
    "Workload",
    "WorkloadSpec",
]

WRITTEN_AT_ANNOTATION: Final = "demo.kubemirror.io/written-at"
"""Wall-clock time (``time.time()``, seconds) at which the workload wrote this version."""

NAMESPACES = GroupVersionResource("", "v1", "namespaces")
NODES = GroupVersionResource("", "v1", "nodes")
DEPLOYMENTS = GroupVersionResource("apps", "v1", "deployments")

_NAMESPACE_NAMES: Final = (
    "prod-eu", "prod-us", "staging", "checkout", "payments", "search", "catalog",
    "identity", "data-pipeline", "ml-serving", "monitoring", "logging", "ingress-nginx",
    "kube-system", "cert-manager", "argocd", "team-growth", "team-mobile", "batch", "edge",
)  # fmt: skip
_APPS: Final = (
    "api-gateway", "frontend", "checkout", "payments", "search", "catalog", "cart",
    "auth", "notifications", "inventory", "recommendations", "image-resizer",
    "email-worker", "kafka-consumer", "redis", "postgres-proxy", "metrics-exporter",
    "log-shipper", "feature-flags", "pricing", "shipping", "reviews", "session-store",
)  # fmt: skip
_TIERS: Final = ("frontend", "backend", "worker", "cache", "infra")
_REPLICAS: Final = (1, 2, 2, 3, 3, 3, 4, 5, 6, 8, 10, 12, 16, 24, 40)
_ZONES: Final = ("a", "b", "c")
_SUFFIX_CHARS: Final = "bcdfghjklmnpqrstvwxz2456789"
_PENDING_SECONDS: Final = (0.5, 3.0)


def _now_iso(offset_seconds: float = 0.0) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _readiness_flipped(status: dict[str, Any]) -> dict[str, Any] | None:
    """``status`` with Ready and ContainersReady flipped; ``None`` unless Running."""
    if status.get("phase") != "Running":
        return None
    conditions = []
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Ready", "ContainersReady"):
            flipped = "False" if condition.get("status") == "True" else "True"
            condition = {**condition, "status": flipped, "lastTransitionTime": _now_iso()}
        conditions.append(condition)
    status["conditions"] = conditions
    return status


def _probed(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` with a new ``lastProbeTime`` on every condition."""
    status["conditions"] = [
        {**c, "lastProbeTime": _now_iso()} for c in status.get("conditions") or []
    ]
    return status


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """How big the workload is and how fast it changes.

    ``pods`` is the target Pod count (scaling keeps it within about 5%);
    ``churn`` is object writes per second while ``Workload.run`` runs;
    ``cluster`` is the storage cluster written to; ``seed`` fixes every choice.
    """

    pods: int = 5000
    churn: float = 100.0
    seed: int = 0
    cluster: str = "default"

    @property
    def namespaces(self) -> int:
        """Namespaces used: one per ~250 Pods, at least 3."""
        return max(3, min(len(_NAMESPACE_NAMES), self.pods // 250))

    @property
    def nodes(self) -> int:
        """Nodes used: one per ~40 Pods, at least 3."""
        return max(3, self.pods // 40)


@dataclass(slots=True)
class ChurnStats:
    """Writes done so far, by event type (counters; read them from any thread)."""

    created: int = 0
    modified: int = 0
    deleted: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        """Every write: ``created + modified + deleted``."""
        return self.created + self.modified + self.deleted


@dataclass(slots=True)
class _Deployment:
    namespace: str
    name: str
    app: str
    tier: str
    image: str
    template_hash: str
    replicas: int
    pods: list[str] = field(default_factory=list)
    object: MutableObj = field(default_factory=dict)


class Workload:
    """Writes a generated cluster into ``storage`` and keeps changing it.

    ``populate()`` writes namespaces, nodes, Deployments and ``spec.pods`` Pods
    into ``spec.cluster`` (prepared if needed) and resets ``stats``. ``step(n)`` performs ``n``
    writes of churn; ``await run(stop)`` does so at ``spec.churn`` writes per
    second until ``stop`` is set. The workload keeps its own copy of every
    object and hands the storage fresh dicts, never mutating one it handed
    over. ``stats`` counts the writes. ``clock`` (wall time) stamps
    ``WRITTEN_AT_ANNOTATION``. Not thread-safe.
    """

    def __init__(
        self,
        storage: MemoryStorage,
        spec: WorkloadSpec,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.spec = spec
        self.stats = ChurnStats()
        self._clock = clock
        self._rng = random.Random(spec.seed)
        self._pods_rs = storage.resource_storage(testing.PODS)
        self._deploy_rs = storage.resource_storage(DEPLOYMENTS)
        self._namespaces = list(_NAMESPACE_NAMES[: spec.namespaces])
        self._nodes = [
            f"node-{_ZONES[i % len(_ZONES)]}-{i // len(_ZONES) + 1:02d}" for i in range(spec.nodes)
        ]
        self._deployments: list[_Deployment] = []
        self._pods: dict[str, MutableObj] = {}  # "ns/name" -> the version last written
        self._owner: dict[str, _Deployment] = {}
        self._pod_keys: list[str] = []  # for O(1) random choice
        self._pod_slot: dict[str, int] = {}
        self._pending: list[tuple[float, str]] = []  # (due monotonic time, key)

    # -- layout ---------------------------------------------------------------------------

    @property
    def pod_count(self) -> int:
        """Pods currently in the workload."""
        return len(self._pods)

    @property
    def namespaces(self) -> list[str]:
        """The namespace names used."""
        return list(self._namespaces)

    def populate(self) -> int:
        """Write the initial objects; returns how many Pods were written."""
        cluster = self.spec.cluster
        self.storage.prepare_cluster(cluster)
        ns_rs = self.storage.resource_storage(NAMESPACES)
        for ns in self._namespaces:
            ns_rs.upsert(cluster, _namespace(ns))
        node_rs = self.storage.resource_storage(NODES)
        for i, node in enumerate(self._nodes):
            node_rs.upsert(cluster, _node(node, _ZONES[i % len(_ZONES)]))
        remaining = self.spec.pods
        used: set[tuple[str, str]] = set()
        while remaining > 0:
            namespace = self._rng.choice(self._namespaces)
            app = self._rng.choice(_APPS)
            name = app
            serial = 2
            while (namespace, name) in used:
                name = f"{app}-{serial}"
                serial += 1
            used.add((namespace, name))
            replicas = min(remaining, self._rng.choice(_REPLICAS))
            remaining -= replicas
            deployment = _Deployment(
                namespace=namespace,
                name=name,
                app=app,
                tier=self._rng.choice(_TIERS),
                image=f"registry.example/{app}:1.{self._rng.randrange(40)}.{self._rng.randrange(9)}",
                template_hash=_template_hash(namespace, name, 1),
                replicas=replicas,
            )
            self._deployments.append(deployment)
            for _ in range(replicas):
                self._create_pod(deployment, running=True, age=self._rng.uniform(600, 30 * 86400))
            self._write_deployment(deployment, created=True)
        self.stats = ChurnStats()  # churn counts start now
        return len(self._pods)

    # -- churn ----------------------------------------------------------------------------

    def step(self, writes: int) -> int:
        """Perform at least ``writes`` writes of churn (none for an empty workload); returns
        how many."""
        before = self.stats.total
        if not self._deployments:
            return 0  # an empty workload has nothing to change
        self._finish_pending(time.monotonic())
        while self.stats.total - before < writes:
            roll = self._rng.random()
            if not self._pods or roll < 0.05:
                self._scale()
            elif roll < 0.25:
                self._replace_pod()
            elif roll < 0.45:
                self._restart_container()
            elif roll < 0.60:
                self._flap_readiness()
            else:
                self._touch_status()
        return self.stats.total - before

    async def run(self, stop: asyncio.Event, tick: float = 0.02) -> None:
        """Write ``spec.churn`` changes per second until ``stop`` is set.

        The budget accrues with elapsed time (capped at half a second's worth, so
        a stalled loop does not burst).
        """
        if self.spec.churn <= 0:
            await stop.wait()
            return
        loop = asyncio.get_running_loop()
        last = loop.time()
        budget = 0.0
        cap = max(1.0, self.spec.churn / 2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            now = loop.time()
            budget = min(cap, budget + (now - last) * self.spec.churn)
            last = now
            whole = int(budget)
            if whole:
                budget -= self.step(whole)

    # -- operations -----------------------------------------------------------------------

    def _stamp(self, meta: dict[str, Any]) -> None:
        annotations = dict(meta.get("annotations") or {})
        annotations[WRITTEN_AT_ANNOTATION] = f"{self._clock():.6f}"
        meta["annotations"] = annotations

    def _random_pod(self) -> str:
        return self._pod_keys[self._rng.randrange(len(self._pod_keys))]

    def _create_pod(self, deployment: _Deployment, *, running: bool, age: float = 0.0) -> None:
        suffix = "".join(self._rng.choices(_SUFFIX_CHARS, k=5))
        name = f"{deployment.name}-{deployment.template_hash}-{suffix}"
        labels = {
            "app": deployment.name,
            "app.kubernetes.io/name": deployment.app,
            "app.kubernetes.io/part-of": deployment.namespace,
            "tier": deployment.tier,
            "pod-template-hash": deployment.template_hash,
        }
        pod = testing.make_pod(
            name,
            deployment.namespace,
            labels,
            self._rng.choice(self._nodes),
            phase="Running" if running else "Pending",
            image=deployment.image,
            annotations={"kubectl.kubernetes.io/default-container": "c0"},
            containers=self._rng.choice((1, 1, 2, 2, 3)),
        )
        meta = pod["metadata"]
        meta["uid"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        meta["creationTimestamp"] = _now_iso(age)
        meta["generateName"] = f"{deployment.name}-{deployment.template_hash}-"
        owner = dict(meta["ownerReferences"][0])
        owner["name"] = f"{deployment.name}-{deployment.template_hash}"
        meta["ownerReferences"] = [owner]
        status = pod["status"]
        rng = self._rng
        status["podIP"] = f"10.{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        status["startTime"] = meta["creationTimestamp"]
        if not running:
            status["conditions"] = [
                {**c, "status": "True" if c["type"] == "PodScheduled" else "False"}
                for c in status["conditions"]
            ]
            status["containerStatuses"] = [
                {
                    **s,
                    "ready": False,
                    "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
                for s in status["containerStatuses"]
            ]
            due = time.monotonic() + self._rng.uniform(*_PENDING_SECONDS)
            self._pending.append((due, f"{deployment.namespace}/{name}"))
        self._stamp(meta)
        key = f"{deployment.namespace}/{name}"
        self._pods_rs.create(self.spec.cluster, pod)
        self._pods[key] = pod
        self._owner[key] = deployment
        self._pod_slot[key] = len(self._pod_keys)
        self._pod_keys.append(key)
        deployment.pods.append(key)
        self.stats.created += 1

    def _delete_pod(self, key: str) -> None:
        self._pods.pop(key)
        deployment = self._owner.pop(key)
        deployment.pods.remove(key)
        slot = self._pod_slot.pop(key)
        last = self._pod_keys.pop()
        if last != key:
            self._pod_keys[slot] = last
            self._pod_slot[last] = slot
        self._pods_rs.delete_by_key(self.spec.cluster, key)
        self.stats.deleted += 1

    def _update_pod(self, key: str, status: dict[str, Any]) -> None:
        old = self._pods[key]
        meta = dict(old["metadata"])
        self._stamp(meta)
        pod = {**old, "metadata": meta, "status": status}
        self._pods_rs.upsert(self.spec.cluster, pod)
        self._pods[key] = pod
        self.stats.modified += 1

    def _finish_pending(self, now: float) -> None:
        """Pods whose start-up time has passed become Running and Ready."""
        if not self._pending or self._pending[0][0] > now:
            return
        due = [key for when, key in self._pending if when <= now]
        self._pending = [(when, key) for when, key in self._pending if when > now]
        started = _now_iso()
        for key in due:
            pod = self._pods.get(key)
            if pod is None:
                continue
            status = dict(pod["status"])
            status["phase"] = "Running"
            status["conditions"] = [
                {**c, "status": "True", "lastTransitionTime": started}
                for c in status["conditions"]
            ]
            status["containerStatuses"] = [
                {**s, "ready": True, "started": True, "state": {"running": {"startedAt": started}}}
                for s in status["containerStatuses"]
            ]
            self._update_pod(key, status)

    def _replace_pod(self) -> None:
        """A rollout or eviction: one Pod goes, its replacement comes up Pending."""
        key = self._random_pod()
        deployment = self._owner[key]
        self._delete_pod(key)
        self._create_pod(deployment, running=False)

    def _restart_container(self) -> None:
        """A container restarts (a heartbeat instead for a Pod without container statuses)."""
        self._change_status(self._restarted)

    def _flap_readiness(self) -> None:
        """Readiness flips (a heartbeat instead for a Pod that is not Running)."""
        self._change_status(_readiness_flipped)

    def _touch_status(self) -> None:
        """A kubelet status heartbeat: a new probe time, nothing else."""
        self._change_status(_probed)

    def _change_status(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Write a random Pod with the status ``change`` makes of a copy of its status; where
        the change does not apply (``None``), a heartbeat of another random Pod instead."""
        key = self._random_pod()
        status = change(dict(self._pods[key]["status"]))
        if status is None:
            self._touch_status()
        else:
            self._update_pod(key, status)

    def _restarted(self, status: dict[str, Any]) -> dict[str, Any] | None:
        statuses = list(status.get("containerStatuses") or [])
        if not statuses:
            return None
        i = self._rng.randrange(len(statuses))
        restarted = dict(statuses[i])
        restarted["restartCount"] = int(restarted.get("restartCount") or 0) + 1
        restarted["lastState"] = {
            "terminated": {"exitCode": self._rng.choice((1, 137, 143)), "reason": "Error"}
        }
        statuses[i] = restarted
        status["containerStatuses"] = statuses
        return status

    def _scale(self) -> None:
        """Scale one Deployment up or down by 1-3, staying near the target Pod count."""
        deployment = self._rng.choice(self._deployments)
        target = self.spec.pods
        delta = self._rng.randint(1, 3)
        above = len(self._pods) >= target
        if len(self._pods) > target * 1.05 or (above and self._rng.random() < 0.5):
            delta = -min(delta, len(deployment.pods))
        if delta == 0:
            return
        deployment.replicas = max(0, deployment.replicas + delta)
        for _ in range(delta):
            self._create_pod(deployment, running=False)
        for _ in range(-delta):
            self._delete_pod(deployment.pods[-1])
        self._write_deployment(deployment, created=False)

    def _write_deployment(self, deployment: _Deployment, *, created: bool) -> None:
        obj = _deployment_object(deployment)
        self._stamp(obj["metadata"])
        if created:
            self._deploy_rs.create(self.spec.cluster, obj)
            self.stats.created += 1
        else:
            self._deploy_rs.upsert(self.spec.cluster, obj)
            self.stats.modified += 1
        deployment.object = obj


def _template_hash(namespace: str, name: str, revision: int) -> str:
    digest = hashlib.sha256(f"{namespace}/{name}/{revision}".encode()).digest()
    return "".join(_SUFFIX_CHARS[b % len(_SUFFIX_CHARS)] for b in digest[:10])


def _cluster_scoped(kind: str, name: str, age_days: int, labels: dict[str, str]) -> Obj:
    """``apiVersion``, ``kind`` and ``metadata`` of a cluster-scoped v1 object created
    ``age_days`` ago, with a uid that depends only on its kind and name."""
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind.lower()}/{name}")),
            "creationTimestamp": _now_iso(age_days * 86400),
            "labels": labels,
        },
    }


def _namespace(name: str) -> Obj:
    return {
        **_cluster_scoped("Namespace", name, 90, {"kubernetes.io/metadata.name": name}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _node(name: str, zone: str) -> Obj:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "m6i.2xlarge",
        "topology.kubernetes.io/zone": f"eu-west-1{zone}",
    }
    return {
        **_cluster_scoped("Node", name, 30, labels),
        "spec": {"podCIDR": "10.0.0.0/24", "providerID": f"aws:///eu-west-1{zone}/{name}"},
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "110"},
            "conditions": [
                {"type": t, "status": "False" if t != "Ready" else "True", "reason": r}
                for t, r in (
                    ("MemoryPressure", "KubeletHasSufficientMemory"),
                    ("DiskPressure", "KubeletHasNoDiskPressure"),
                    ("PIDPressure", "KubeletHasSufficientPID"),
                    ("Ready", "KubeletReady"),
                )
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "containerRuntimeVersion": "containerd://1.7.24",
                "osImage": "Bottlerocket OS 1.30.0",
                "architecture": "amd64",
            },
        },
    }


def _deployment_object(deployment: _Deployment) -> MutableObj:
    labels = {"app": deployment.name, "app.kubernetes.io/name": deployment.app}
    replicas = deployment.replicas
    ready = len(deployment.pods)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment.name,
            "namespace": deployment.namespace,
            "uid": str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"deploy/{deployment.namespace}/{deployment.name}")
            ),
            "creationTimestamp": _now_iso(40 * 86400),
            "generation": 1,
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": deployment.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {**labels, "tier": deployment.tier}},
                "spec": {"containers": [{"name": "c0", "image": deployment.image}]},
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }
