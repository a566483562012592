"""Helpers for testing with kubemirror, without pytest: realistic objects, seeded storages,
self-signed certificates.

``make_pod`` (a realistic Pod dict), ``new_storage`` (a ``MemoryStorage`` with the
built-in types) and ``seed`` (write objects into it) serve tests, the demo and the
benchmarks alike; ``make_self_signed_cert`` needs the ``cryptography`` package. The
pytest fixtures are in ``kubemirror.testing.plugin``, which pytest loads through the
``pytest11`` entry point; this module never imports pytest, so ``kubemirror demo``
runs on a plain ``pip install kubemirror``. Storage and server modules are imported
only when a helper needs them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kubemirror.types import GroupVersionResource, MutableObj, Obj

if TYPE_CHECKING:
    from kubemirror.multicluster.storage import MemoryStorage

__all__ = [
    "PODS",
    "REQUIRE_REAL_APISERVER_ENV",
    "make_pod",
    "make_self_signed_cert",
    "new_storage",
    "seed",
]

REQUIRE_REAL_APISERVER_ENV = "KUBEMIRROR_REQUIRE_REAL_APISERVER"
"""Set to ``1`` to fail, not skip, tests that need a real kube-apiserver without one."""

PODS = GroupVersionResource("", "v1", "pods")
"""The core/v1 pods resource."""


def make_pod(
    name: str,
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
    node: str | None = None,
    *,
    phase: str = "Running",
    image: str = "registry.example/app:1.0",
    resource_version: str = "",
    annotations: Mapping[str, str] | None = None,
    containers: int = 2,
    managed_fields: bool = True,
) -> MutableObj:
    """A realistic-ish Pod (~5 KB of JSON with the defaults): labels, an owner, containers,
    conditions and ``managedFields``. ``resource_version`` empty leaves it unset.
    """
    labels = dict(labels) if labels is not None else {"app": name.rsplit("-", 1)[0]}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod/{namespace}/{name}")),
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "labels": labels,
        "annotations": {
            "kubernetes.io/psp": "restricted",
            "prometheus.io/scrape": "true",
            **(annotations or {}),
        },
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{name}-rs",
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rs/{namespace}/{name}")),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if resource_version:
        meta["resourceVersion"] = resource_version
    if managed_fields:
        meta["managedFields"] = [
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {f"f:{k}": {} for k in labels}}},
            }
            for manager in ("kube-controller-manager", "kubelet")
        ]
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": f"c{i}",
                "image": image,
                "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "env": [{"name": "MODE", "value": "production"}],
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }
            for i in range(containers)
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "schedulerName": "default-scheduler",
    }
    if node:
        spec["nodeName"] = node
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": phase,
            "conditions": conditions,
            "podIP": "10.0.0.1",
            "containerStatuses": [
                {
                    "name": f"c{i}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": image,
                    "imageID": f"{image}@sha256:{'0' * 64}",
                    "containerID": f"containerd://{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}",
                    "state": {"running": {"startedAt": "2024-01-01T00:00:01Z"}},
                }
                for i in range(containers)
            ],
        },
    }


def new_storage(**kwargs: Any) -> MemoryStorage:
    """A fresh ``MemoryStorage`` with every built-in resource type registered."""
    from kubemirror.multicluster import resources, storage

    mem = storage.MemoryStorage(**kwargs)
    for info in resources.BUILTIN_RESOURCES:
        mem.new_resource_storage(info)
    return mem


def seed(
    storage: MemoryStorage,
    objs: Iterable[Obj],
    cluster: str = "default",
    gvr: GroupVersionResource | None = None,
) -> list[Obj]:
    """Write ``objs`` into ``storage`` under ``cluster`` (prepared if needed).

    The resource type is ``gvr``, else found from each object's apiVersion/kind
    among the registered types. Returns the stored versions.
    """
    storage.prepare_cluster(cluster)
    by_kind = {(rs.info.api_version, rs.info.kind): rs for rs in storage.resource_storages()}
    out: list[Obj] = []
    for obj in objs:
        if gvr is not None:
            rs = storage.resource_storage(gvr)
        else:
            rs = by_kind[(str(obj.get("apiVersion", "v1")), str(obj.get("kind", "Pod")))]
        out.append(rs.upsert(cluster, obj))
    return out


def make_self_signed_cert(directory: str | os.PathLike[str]) -> tuple[str, str, bytes]:
    """Write a self-signed certificate for ``127.0.0.1``/``localhost`` into ``directory``.

    Returns ``(cert_path, key_path, cert_pem)``; the PEM doubles as the CA bundle.
    Needs the ``cryptography`` package (a test dependency).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubemirror-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_path = os.path.join(directory, "tls.crt")
    key_path = os.path.join(directory, "tls.key")
    with open(cert_path, "wb") as fh:
        fh.write(cert_pem)
    with open(key_path, "wb") as fh:
        fh.write(key_pem)
    return cert_path, key_path, cert_pem


# -- the real kube-apiserver -------------------------------------------------------------
