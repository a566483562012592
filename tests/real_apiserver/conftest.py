"""Fixtures for the suites that run against the genuine kube-apiserver.

Every test here runs against the session's ``real_kube_apiserver`` (a real etcd
and kube-apiserver from ``kubemirror.envtest``, see the plugin in
``kubemirror.testing``); the ``api`` fixture runs a test against both that server
and kubemirror's own ``KubeApiServer``, so one body shows where they differ. Tests
are skipped with the reason when no binaries can be found or built, and fail
instead under ``KUBEMIRROR_REQUIRE_REAL_APISERVER=1`` (CI).

Each test gets a namespace of its own (``namespace``): the real server is shared by
the session, and without a controller-manager a deleted namespace never finishes
terminating, so namespaces are left behind rather than deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from kubemirror.client import ClientConfig, KubeClient
from kubemirror.envtest import EnvTest
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import new_storage
from kubemirror.types import GroupVersionResource
from tests.cli.conftest import spawn  # noqa: F401 - the CLI-process fixture, shared

NAMESPACES = GroupVersionResource("", "v1", "namespaces")
CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")
PODS = GroupVersionResource("", "v1", "pods")
DEPLOYMENTS = GroupVersionResource("apps", "v1", "deployments")
CRDS = GroupVersionResource("apiextensions.k8s.io", "v1", "customresourcedefinitions")

REAL = "kube-apiserver"
OWN = "kubemirror"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``real_apiserver``."""
    for item in items:
        if "/real_apiserver/" in str(item.path):
            item.add_marker(pytest.mark.real_apiserver)


def unique(prefix: str) -> str:
    """A DNS-1123 name unique in the session."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_namespace(client: KubeClient, prefix: str = "t") -> str:
    name = unique(prefix)
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": name}})
    return name


def configmap(name: str, data: dict[str, str] | None = None,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data or {"k": "v"},
    }


def pod(name: str, labels: dict[str, str] | None = None, node: str | None = None) -> dict[str, Any]:
    """A minimal valid Pod (no kubelet runs it: it stays Pending)."""
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": spec,
    }


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    """A valid Deployment (no controller-manager acts on it)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }


@pytest.fixture(scope="session")
def real_env(real_kube_apiserver: EnvTest) -> EnvTest:
    """The session's real control plane."""
    return real_kube_apiserver


@pytest_asyncio.fixture
async def real_client(real_env: EnvTest) -> AsyncIterator[KubeClient]:
    """A ``KubeClient`` authenticated as the admin (client certificate)."""
    async with KubeClient(real_env.client_config) as client:
        yield client


@pytest_asyncio.fixture
async def namespace(real_client: KubeClient) -> str:
    """A fresh namespace on the real server."""
    return await create_namespace(real_client)


@dataclass
class ServerUnderTest:
    """One of the two API servers a parity test runs against."""

    kind: str  # REAL or OWN
    config: ClientConfig
    client: KubeClient
    namespace: str  # fresh, empty


@pytest_asyncio.fixture(params=[REAL, OWN])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[ServerUnderTest]:
    """The test runs twice: against the real kube-apiserver and kubemirror's own."""
    if request.param == REAL:
        env: EnvTest = request.getfixturevalue("real_kube_apiserver")
        config = env.client_config
        async with KubeClient(config) as client:
            yield ServerUnderTest(REAL, config, client, await create_namespace(client))
        return
    async with KubeApiServer(new_storage()) as server:
        config = ClientConfig(server.url)
        async with KubeClient(config) as client:
            yield ServerUnderTest(OWN, config, client, await create_namespace(client))
