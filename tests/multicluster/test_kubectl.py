"""kubectl (the real binary) against KubeApiServer over HTTP(S), asserting what it prints."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION, MemoryStorage
from kubemirror.testing import PODS, make_pod, make_self_signed_cert, new_storage, seed

KUBECTL = shutil.which("kubectl")

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(
        KUBECTL is None and os.environ.get("KUBEMIRROR_REQUIRE_KUBECTL") != "1",
        reason="kubectl is not installed (set KUBEMIRROR_REQUIRE_KUBECTL=1 to fail instead)",
    ),
]


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    async def run(self, *args: str, check: bool = True, stdin: bytes | None = None) -> str:
        assert KUBECTL is not None, "kubectl is required (KUBEMIRROR_REQUIRE_KUBECTL=1)"
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "--kubeconfig",
            self.kubeconfig,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate(stdin)
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
        return (out + (b"" if check else err)).decode()


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


@pytest_asyncio.fixture
async def server(kube_storage: MemoryStorage) -> AsyncIterator[KubeApiServer]:
    kube_storage.prepare_cluster("east")
    seed(
        kube_storage,
        [
            make_pod("web-0", "shop", {"app": "web"}),
            make_pod("web-1", "shop", {"app": "web"}, phase="Pending"),
            make_pod("db-0", "shop", {"app": "db"}),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        ],
    )
    seed(kube_storage, [make_pod("edge-0", "edge", {"app": "edge"})], cluster="east")
    async with KubeApiServer(kube_storage) as srv:
        yield srv


@pytest.fixture
def kubectl(server: KubeApiServer, tmp_path: Path) -> Kubectl:
    return Kubectl(server.write_kubeconfig(tmp_path / "config"))


async def test_get_pods_all_namespaces(kubectl: Kubectl) -> None:
    out = rows(await kubectl.run("get", "pods", "-A"))
    assert out[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert sorted((r[0], r[1], r[3]) for r in out[1:]) == [
        ("edge", "edge-0", "Running"),
        ("shop", "db-0", "Running"),
        ("shop", "web-0", "Running"),
        ("shop", "web-1", "Pending"),
    ]


async def test_label_and_field_selectors(kubectl: Kubectl) -> None:
    out = rows(await kubectl.run("get", "pods", "-n", "shop", "-l", "app=web"))
    assert [r[0] for r in out[1:]] == ["web-0", "web-1"]
    out = rows(await kubectl.run("get", "pods", "-A", "--field-selector", "status.phase=Pending"))
    assert [r[1] for r in out[1:]] == ["web-1"]
    out = rows(await kubectl.run("get", "pods", "-A", "-o", "wide", "-l", "app in (edge)"))
    assert out[0][-1] == "CLUSTER"
    assert out[1][1] == "edge-0"
    assert out[1][-1] == "east"


async def test_chunked_list_over_many_objects(
    kubectl: Kubectl, kube_storage: MemoryStorage
) -> None:
    seed(kube_storage, [make_pod(f"bulk-{i:04d}", "bulk") for i in range(1000)])
    output = await kubectl.run(
        "get", "pods", "-n", "bulk", "--chunk-size", "50", "-v6", check=False
    )
    requests = [ln for ln in output.splitlines() if "limit=50 200 OK" in ln]
    assert len(requests) == 20
    names = [line.split()[0] for line in output.splitlines() if line.startswith("bulk-")]
    assert names == [f"bulk-{i:04d}" for i in range(1000)]


async def test_watch_sees_live_changes(kubectl: Kubectl, kube_storage: MemoryStorage) -> None:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        kubectl.kubeconfig,
        "get",
        "pods",
        "-n",
        "shop",
        "-w",
        "--output-watch-events",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            lines = [await proc.stdout.readline() for _ in range(4)]  # header + 3 pods
            assert lines[0].split()[:2] == [b"EVENT", b"NAME"]
            seed(kube_storage, [make_pod("web-2", "shop", {"app": "web"})])
            added = (await proc.stdout.readline()).split()
            kube_storage.resource_storage(PODS).delete("default", make_pod("db-0", "shop"))
            deleted = (await proc.stdout.readline()).split()
    finally:
        proc.kill()
        await proc.wait()
    assert added[:2] == [b"ADDED", b"web-2"]
    assert deleted[:2] == [b"DELETED", b"db-0"]


async def test_api_resources(kubectl: Kubectl) -> None:
    out = rows(await kubectl.run("api-resources"))
    by_name = {r[0]: r for r in out[1:]}
    assert by_name["pods"][1:] == ["po", "v1", "true", "Pod"]
    assert by_name["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert by_name["nodes"][-2:] == ["false", "Node"]


async def test_json_round_trip_and_replace(kubectl: Kubectl, kube_storage: MemoryStorage) -> None:
    text = await kubectl.run(
        "get", "pod", "web-0", "-n", "shop", "-o", "json", "--show-managed-fields"
    )
    obj = json.loads(text)
    stored = kube_storage.resource_storage(PODS).get("default", "shop", "web-0")
    assert obj == stored
    obj["metadata"]["labels"]["tier"] = "front"
    await kubectl.run("replace", "-f", "-", stdin=json.dumps(obj).encode())
    after = kube_storage.resource_storage(PODS).get("default", "shop", "web-0")
    assert after is not None
    assert after["metadata"]["labels"]["tier"] == "front"
    stale = await kubectl.run("replace", "-f", "-", stdin=json.dumps(obj).encode(), check=False)
    assert "the object has been modified" in stale
    await kubectl.run("label", "pod", "web-0", "-n", "shop", "tier-")
    after = kube_storage.resource_storage(PODS).get("default", "shop", "web-0")
    assert after is not None
    assert "tier" not in after["metadata"]["labels"]


async def test_apply_create_and_delete(kubectl: Kubectl, kube_storage: MemoryStorage) -> None:
    manifest = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"mode": "a"},
        }
    )
    assert "created" in await kubectl.run("apply", "-f", "-", stdin=manifest.encode())
    manifest = manifest.replace('"a"', '"b"')
    assert "configured" in await kubectl.run("apply", "-f", "-", stdin=manifest.encode())
    data = await kubectl.run("get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.mode}")
    assert data == "b"
    assert "deleted" in await kubectl.run("delete", "cm", "settings", "-n", "shop")
    missing = await kubectl.run("get", "cm", "settings", "-n", "shop", check=False)
    assert 'configmaps "settings" not found' in missing


async def test_per_cluster_server_url(kubectl: Kubectl, server: KubeApiServer) -> None:
    out = rows(await kubectl.run("--server", server.cluster_url("east"), "get", "pods", "-A"))
    assert [r[1] for r in out[1:]] == ["edge-0"]
    missing = await kubectl.run("--server", server.cluster_url("west"), "get", "pods", check=False)
    assert "NotFound" in missing or "not found" in missing


async def test_tls_and_token(tmp_path: Path) -> None:
    cert, key, ca = make_self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    storage = new_storage()
    seed(storage, [make_pod("secure-0")])
    async with KubeApiServer(storage, ssl_context=context, tokens={"t0ken"}, ca_data=ca) as srv:
        good = Kubectl(srv.write_kubeconfig(tmp_path / "good", token="t0ken"))
        out = rows(await good.run("get", "pods"))
        assert [r[0] for r in out[1:]] == ["secure-0"]
        bad = Kubectl(srv.write_kubeconfig(tmp_path / "bad", token="wrong"))
        denied = await bad.run("get", "pods", check=False)
        assert "Unauthorized" in denied or "must be logged in" in denied
        per_cluster = Kubectl(
            srv.write_kubeconfig(tmp_path / "pc", token="t0ken", cluster="default")
        )
        out = rows(await per_cluster.run("get", "pods", "-o", "wide"))
        assert out[1][0] == "secure-0"


def test_cluster_annotation_is_documented() -> None:
    assert CLUSTER_ANNOTATION == "shadow.clusterpedia.io/cluster-name"
