"""Deterministic generator of realistic Pod objects for benchmarks.

Each Pod is ~6 KB of JSON, shaped like what a real API server returns for a
Deployment's pod: 5 labels, 3 annotations, an ownerReference to a ReplicaSet, 3
``managedFields`` entries (~30% of the bytes), 2 containers with env,
ports, a probe and resources, volumes, and 4 status conditions. The same
``(count, seed)`` always yields the same pods, so runs are comparable.

Usage: ``from podgen import make_pods`` (benchmarks run with ``benchmarks/`` on
``sys.path``), or ``python benchmarks/podgen.py --count 1000`` to print their sizes.
"""

from __future__ import annotations

import argparse
import random
import uuid
from typing import Any

__all__ = ["make_pod", "make_pods", "pod_size"]

_APPS = ["api", "web", "worker", "cache", "auth", "billing", "search", "ingest", "report", "mailer"]
_TEAMS = ["core", "payments", "growth", "infra", "data"]
_ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
_PHASES = ["Running"] * 18 + ["Pending", "Succeeded"]


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ts(rng: random.Random) -> str:
    return (
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    )


def _container(name: str, image: str, rng: random.Random, full: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--port=8080", f"--log-level={rng.choice(['info', 'debug', 'warn'])}"],
        "env": [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            },
            {"name": "GOMAXPROCS", "value": str(rng.randint(1, 8))},
        ],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "resources": {
            "limits": {
                "cpu": f"{rng.randint(1, 4)}",
                "memory": f"{rng.choice([256, 512, 1024])}Mi",
            },
            "requests": {
                "cpu": f"{rng.randint(50, 500)}m",
                "memory": f"{rng.choice([128, 256])}Mi",
            },
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {
                "name": "kube-api-access",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if not full:  # a sidecar: no probes, no env, no args
        for field in ("args", "env", "livenessProbe", "volumeMounts"):
            del container[field]
    return container


def _managed_fields(rng: random.Random) -> list[dict[str, Any]]:
    spec_fields = {
        "f:metadata": {
            "f:generateName": {},
            "f:labels": {
                ".": {},
                "f:app": {},
                "f:pod-template-hash": {},
                "f:team": {},
                "f:tier": {},
                "f:version": {},
            },
            "f:annotations": {
                ".": {},
                "f:kubectl.kubernetes.io/restartedAt": {},
                "f:prometheus.io/scrape": {},
            },
            "f:ownerReferences": {".": {}, 'k:{"uid":"' + _uid(rng) + '"}': {}},
        },
        "f:spec": {
            "f:containers": {
                'k:{"name":"app"}': {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {},
                    "f:resources": {},
                    "f:env": {},
                },
                'k:{"name":"sidecar"}': {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}},
            },
            "f:dnsPolicy": {},
            "f:restartPolicy": {},
            "f:schedulerName": {},
            "f:securityContext": {},
            "f:terminationGracePeriodSeconds": {},
            "f:volumes": {
                ".": {},
                'k:{"name":"config"}': {".": {}, "f:configMap": {}, "f:name": {}},
            },
        },
    }
    status_fields: dict[str, Any] = {
        "f:status": {
            "f:conditions": {
                'k:{"type":"ContainersReady"}': {
                    ".": {},
                    "f:lastProbeTime": {},
                    "f:lastTransitionTime": {},
                    "f:status": {},
                    "f:type": {},
                },
                'k:{"type":"Initialized"}': {
                    ".": {},
                    "f:lastProbeTime": {},
                    "f:lastTransitionTime": {},
                    "f:status": {},
                    "f:type": {},
                },
                'k:{"type":"Ready"}': {
                    ".": {},
                    "f:lastProbeTime": {},
                    "f:lastTransitionTime": {},
                    "f:status": {},
                    "f:type": {},
                },
            },
            "f:containerStatuses": {},
            "f:hostIP": {},
            "f:phase": {},
            "f:podIP": {},
            "f:podIPs": {".": {}, 'k:{"ip":"10.0.0.1"}': {".": {}, "f:ip": {}}},
            "f:startTime": {},
        }
    }
    return [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": _ts(rng),
            "fieldsType": "FieldsV1",
            "fieldsV1": spec_fields,
        },
        {
            "manager": "kube-scheduler",
            "operation": "Update",
            "apiVersion": "v1",
            "time": _ts(rng),
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:status": {
                    "f:conditions": {
                        ".": {},
                        'k:{"type":"PodScheduled"}': {".": {}, "f:status": {}, "f:type": {}},
                    }
                }
            },
            "subresource": "status",
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": _ts(rng),
            "fieldsType": "FieldsV1",
            "fieldsV1": status_fields,
            "subresource": "status",
        },
    ]


def make_pod(i: int, rng: random.Random, namespaces: int = 50) -> dict[str, Any]:
    """Return pod number ``i``; ``rng`` supplies every random choice."""
    app = _APPS[i % len(_APPS)]
    ns = f"ns-{i % namespaces:03d}"
    rs_hash = f"{rng.getrandbits(40):010x}"[:10]
    name = f"{app}-{rs_hash}-{rng.getrandbits(25):05x}"[:63]
    node = f"node-{rng.randint(0, 499):03d}"
    ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    start = _ts(rng)
    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": _ts(rng)}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{i}",
            "generateName": f"{app}-{rs_hash}-",
            "namespace": ns,
            "uid": _uid(rng),
            "resourceVersion": str(1000 + i),
            "creationTimestamp": start,
            "labels": {
                "app": app,
                "pod-template-hash": rs_hash,
                "team": rng.choice(_TEAMS),
                "tier": rng.choice(["frontend", "backend"]),
                "version": f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}",
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": _ts(rng),
                "prometheus.io/scrape": "true",
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{rs_hash}",
                    "uid": _uid(rng),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": _managed_fields(rng),
        },
        "spec": {
            "containers": [
                _container("app", f"registry.example.com/{app}:{rng.randint(1, 300)}", rng, True),
                _container("sidecar", "registry.example.com/envoy:1.29.1", rng, False),
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
                {
                    "name": "kube-api-access",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                        ],
                    },
                },
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": node,
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "nodeSelector": {"topology.kubernetes.io/zone": rng.choice(_ZONES)},
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
        },
        "status": {
            "phase": rng.choice(_PHASES),
            "conditions": conditions,
            "hostIP": f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": start,
            "qosClass": "Burstable",
            "containerStatuses": [
                {
                    "name": c,
                    "ready": True,
                    "restartCount": rng.randint(0, 3),
                    "image": f"registry.example.com/{c}:1",
                    "imageID": f"registry.example.com/{c}@sha256:{rng.getrandbits(256):064x}",
                    "containerID": f"containerd://{rng.getrandbits(256):064x}",
                    "started": True,
                    "state": {"running": {"startedAt": start}},
                }
                for c in ("app", "sidecar")
            ],
        },
    }


def make_pods(count: int, seed: int = 42, namespaces: int = 50) -> list[dict[str, Any]]:
    """Return ``count`` distinct pods spread over ``namespaces`` namespaces, deterministically."""
    rng = random.Random(seed)
    return [make_pod(i, rng, namespaces) for i in range(count)]


def pod_size(pod: dict[str, Any]) -> int:
    """Size of ``pod`` as compact JSON, in bytes."""
    import orjson

    return len(orjson.dumps(pod))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    pods = make_pods(args.count, args.seed)
    sizes = [pod_size(p) for p in pods]
    mean = sum(sizes) / len(sizes)
    print(f"{len(pods)} pods, mean {mean:.0f} B, min {min(sizes)}, max {max(sizes)}")


if __name__ == "__main__":
    main()
