"""Pytest plugin, fixtures and helpers for testing against kubemirror's embedded API server
and against a real kube-apiserver.

Loaded automatically by pytest through the ``pytest11`` entry point. Fixtures:
``kube_storage`` (a fresh ``MemoryStorage``) and ``kube_api_server`` (a started
``KubeApiServer`` on a free 127.0.0.1 port, stopped after the test);
``envtest_assets`` (the real binaries, see ``kubemirror.envtest``) and
``real_kube_apiserver`` (one real etcd + kube-apiserver for the whole session, an
``EnvTest``). Those two skip the test with the reason when no binaries can be found
or built, and fail it instead when ``KUBEMIRROR_REQUIRE_REAL_APISERVER=1``. When a
collected test uses them and the binaries are missing, they are built with Go once,
after collection and before the first test (so no test timeout applies). Helpers
usable outside pytest: ``make_pod`` (a realistic Pod dict) and ``seed`` (write
objects into a storage). The plugin stays import-light: the storage and the
server (and aiohttp) are imported only when a fixture or helper is used.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from kubemirror.types import GroupVersionResource, MutableObj, Obj

if TYPE_CHECKING:
    from kubemirror.envtest import Assets, EnvTest
    from kubemirror.multicluster.server import KubeApiServer
    from kubemirror.multicluster.storage import MemoryStorage

__all__ = [
    "PODS",
    "REQUIRE_REAL_APISERVER_ENV",
    "envtest_assets",
    "kube_api_server",
    "kube_storage",
    "make_pod",
    "make_self_signed_cert",
    "new_storage",
    "real_kube_apiserver",
    "seed",
]

REQUIRE_REAL_APISERVER_ENV = "KUBEMIRROR_REQUIRE_REAL_APISERVER"
"""Set to ``1`` to fail, not skip, tests that need a real kube-apiserver without one."""

_REAL_FIXTURES = frozenset({"envtest_assets", "real_kube_apiserver"})

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


@pytest.fixture
def kube_storage() -> MemoryStorage:
    """A fresh ``MemoryStorage`` with the built-in resource types registered."""
    return new_storage()


@pytest_asyncio.fixture
async def kube_api_server(kube_storage: MemoryStorage) -> AsyncIterator[KubeApiServer]:
    """A started ``KubeApiServer`` over ``kube_storage`` on a free 127.0.0.1 port."""
    from kubemirror.multicluster.server import KubeApiServer

    async with KubeApiServer(kube_storage) as server:
        yield server


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

_build_failure: str | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the real binaries (first time only) if a collected test needs them."""
    global _build_failure
    if not any(_REAL_FIXTURES & set(getattr(item, "fixturenames", ()))
               for item in session.items):
        return
    from kubemirror import errors
    from kubemirror.envtest import find_assets, setup_assets

    try:
        if find_assets() is not None:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")

        def log(line: str) -> None:
            if reporter is not None:
                reporter.write_line(f"kubemirror envtest: {line}")

        setup_assets(log=log)
    except (errors.CommandError, errors.ConfigError) as exc:
        _build_failure = str(exc)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_REAL_APISERVER_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_REAL_APISERVER_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def envtest_assets() -> Assets:
    """The real kube-apiserver and etcd binaries (``kubemirror.envtest.Assets``)."""
    from kubemirror import errors
    from kubemirror.envtest import pki, setup_assets

    try:
        pki.require_cryptography()
        return setup_assets(build=False)
    except (errors.CommandError, errors.ConfigError) as exc:
        _skip_or_fail(f"no real kube-apiserver: {_build_failure or exc}")
        raise  # pragma: no cover - skip and fail raise


@pytest.fixture(scope="session")
def real_kube_apiserver(envtest_assets: Assets) -> Iterator[EnvTest]:
    """A real etcd and kube-apiserver shared by the session (``kubemirror.envtest.EnvTest``).

    Use ``.client_config`` (admin), ``.kubeconfig_path`` or ``.url``; give each test
    its own namespace, since the server is shared.
    """
    from kubemirror.envtest import EnvTest

    env = EnvTest(envtest_assets)
    env.start()
    try:
        yield env
    finally:
        env.stop()
