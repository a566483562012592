"""``kubemirror watch`` against the project's API server over HTTP, changed through kubectl."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from kubemirror.client import ClientConfig, KubeClient
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, seed
from tests.cli.conftest import KUBECTL, Spawn, run_cli, skip_without_kubectl
from tests.faultproxy import FaultProxy

POD_YAML = """
apiVersion: v1
kind: Pod
metadata:
  name: added-by-kubectl
  namespace: default
  labels: {app: web}
spec:
  containers: [{name: c, image: nginx}]
"""


@pytest.fixture
def kubeconfig(
    tmp_path: Path, kube_storage: MemoryStorage, kube_api_server: KubeApiServer
) -> str:
    seed(
        kube_storage,
        [make_pod(f"web-{i}", "default", {"app": "web"}) for i in range(4)]
        + [make_pod(f"db-{i}", "data", {"app": "db"}) for i in range(3)],
    )
    return kube_api_server.write_kubeconfig(tmp_path / "kubeconfig")


async def kubectl(kubeconfig: str, *args: str, stdin: bytes | None = None) -> str:
    assert KUBECTL is not None, "kubectl is required (KUBEMIRROR_REQUIRE_KUBECTL=1)"
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        kubeconfig,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


@pytest.mark.kubectl
@skip_without_kubectl
async def test_watch_sees_kubectl_changes_as_json_lines(kubeconfig: str, spawn: Spawn) -> None:
    """Created, modified and deleted through kubectl: each shows up in the JSON change lines."""
    running = await spawn(
        "watch", "pods", "--kubeconfig", kubeconfig, "-o", "json", "--debounce", "0.05"
    )
    synced = json.loads(await running.line_matching(lambda line: '"synced"' in line))
    assert synced["count"] == 4, "the context's namespace (default) only"
    assert synced["resource"] == "pods.v1"

    totals = {"created": 0, "modified": 0, "deleted": 0}

    async def until(field: str) -> None:
        while totals[field] == 0:
            line = json.loads(await running.line_matching(lambda s: '"change"' in s))
            for key in totals:
                totals[key] += line[key]

    await kubectl(kubeconfig, "apply", "-f", "-", stdin=POD_YAML.encode())
    await until("created")
    await kubectl(kubeconfig, "label", "pod", "web-1", "tier=frontend")
    await until("modified")
    await kubectl(kubeconfig, "delete", "pod", "web-2")
    await until("deleted")
    await kubectl(kubeconfig, "label", "pod", "db-0", "-n", "data", "tier=db")  # not watched

    running.proc.send_signal(signal.SIGINT)
    result = await running.finish()
    assert result.returncode == 0, result.stderr
    stopped = json.loads(result.stdout.strip().splitlines()[-1])
    assert stopped["type"] == "stopped"
    assert stopped["size"] == 4  # 4 + 1 created - 1 deleted
    assert stopped["created"] >= 1
    assert stopped["deleted"] >= 1


@pytest.mark.kubectl
@skip_without_kubectl
async def test_watch_text_lines_with_selector_and_index(kubeconfig: str, spawn: Spawn) -> None:
    """Without a terminal: a 'synced' line, then one line per debounced batch."""
    running = await spawn(
        "watch", "po", "-A", "-l", "app=web", "--index-by", "metadata.labels['app']",
        "--ignore-field", "metadata.managedFields", "--kubeconfig", kubeconfig,
        "--debounce", "0.05",
    )  # fmt: skip
    line = await running.line_matching(lambda s: s.startswith("synced"))
    assert line.startswith("synced 4 pods in ")
    await kubectl(kubeconfig, "delete", "pod", "web-3")
    change = await running.line_matching(lambda s: "-1" in s)
    assert change.endswith("+0 ~0 -1  (3 pods)")
    running.proc.send_signal(signal.SIGTERM)
    result = await running.finish()
    assert result.returncode == 0
    assert "store holds 3 pods" in result.stdout


async def test_watch_with_duration_exits_0(kubeconfig: str) -> None:
    result = await run_cli(
        "watch", "deployments.apps", "-A", "--kubeconfig", kubeconfig, "--duration", "0.5"
    )
    assert result.returncode == 0, result.stderr
    assert "synced 0 deployments in" in result.stdout


async def test_watch_a_bare_server_url(kube_api_server: KubeApiServer, kubeconfig: str) -> None:
    """``--server URL`` needs no kubeconfig (the demo's server is used this way)."""
    result = await run_cli("watch", "pods", "-n", "data", "--server", kube_api_server.url,
                           "--duration", "0.5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "synced 3 pods in" in result.stdout
    both = await run_cli("watch", "pods", "--server", kube_api_server.url,
                         "--kubeconfig", kubeconfig)  # fmt: skip
    assert both.returncode == 1
    assert "--server cannot be combined" in both.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["podz"], ["no resource type 'podz'", "kubectl api-resources"]),
        (["pods", "-l", "app in (web"], ["invalid selector 'app in (web'", "key in (a,b)"]),
        (["pods", "--index-by", "metadata.labels["], ["invalid field path", "--index-by"]),
        (["pods", "--context", "nope"], ["context 'nope'", "--context NAME"]),
        (["pods", "--repair-drift"], ["--repair-drift needs --check-drift", "--check-drift 60"]),
    ],
    ids=["unknown-resource", "bad-selector", "bad-index-path", "unknown-context",
         "repair-without-check"],
)
async def test_bad_requests_fail_with_one_line(
    kubeconfig: str, args: list[str], expected: list[str]
) -> None:
    result = await run_cli("watch", *args, "--kubeconfig", kubeconfig)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]
    assert result.stdout == ""


async def test_unreachable_cluster_and_missing_kubeconfig(tmp_path: Path) -> None:
    dead = KubeApiServer(MemoryStorage())
    await dead.start()
    path = dead.write_kubeconfig(tmp_path / "dead")
    await dead.stop()  # the port is now closed
    result = await run_cli("watch", "pods", "--kubeconfig", path)
    assert result.returncode == 1
    assert f"cannot reach the cluster at {dead.url}: Connection refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    result = await run_cli("watch", "pods")  # KUBECONFIG points nowhere, not in a cluster
    assert result.returncode == 1
    assert "no kubeconfig found" in result.stderr

    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [\n")
    result = await run_cli("watch", "pods", "--kubeconfig", str(garbage))
    assert result.returncode == 1
    assert "cannot load the kubeconfig" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_debug_shows_the_traceback(kubeconfig: str) -> None:
    result = await run_cli("--debug", "watch", "podz", "--kubeconfig", kubeconfig)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ResourceNotFoundError" in result.stderr or "CommandError" in result.stderr


async def test_watch_check_drift_reports_and_repairs_a_lost_delete(
    kube_api_server: KubeApiServer, kubeconfig: str, spawn: Spawn
) -> None:
    """The proxy swallows one DELETED event (a real server never loses one on demand)."""
    async with FaultProxy(kube_api_server.url) as proxy, \
            KubeClient(ClientConfig(kube_api_server.url)) as writer:
        running = await spawn("watch", "pods", "-n", "default", "--server", proxy.url,
                              "-o", "json", "--check-drift", "0.1", "--repair-drift")
        await running.line_matching(lambda line: '"synced"' in line)
        proxy.swallow.append(lambda line: b'"DELETED"' in line)
        await writer.delete(PODS, "web-1", "default")
        await writer.create(PODS, make_pod("web-9", "default"), "default")  # moves the mirror on
        report = json.loads(await running.line_matching(lambda line: '"drift"' in line))
        assert [e["key"] for e in report["extra"]] == ["default/web-1"]
        assert report["missing"] == []
        assert report["exact"] is True
        assert report["repairing"] is True
        # The relist repairs it: the missed delete arrives as a change.
        await running.line_matching(lambda line: '"change"' in line and '"deleted":1' in line)
    assert len(proxy.stats.swallowed) == 1
