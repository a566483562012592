"""The ``kubemirror watch`` and ``kubemirror serve`` commands against the genuine kube-apiserver.

Both run as subprocesses (``python -m kubemirror``) with the session's admin
kubeconfig (context ``envtest``). ``watch -o json`` must report exactly the
creates, updates and deletes made on the real server. ``serve`` mirrors it, and
the served objects are compared with the real ones object by object, through
kubectl, the official ``kubernetes`` Python client, plain HTTP and the
``/clusters/real`` paths, before and after the real server changes.

What the mirror changes in an object, and nothing else:

- ``metadata.resourceVersion`` becomes ``<prefix>.<index>.<member's rv>``
  (``multicluster.resource_version``): the member's own version is the third part;
  lists carry ``<prefix>.<index>``;
- ``metadata.annotations`` gains ``shadow.clusterpedia.io/cluster-name: real``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest

from kubemirror.client import KubeClient, ListOptions
from kubemirror.envtest import EnvTest
from kubemirror.multicluster.resource_version import (
    parse_list_resource_version,
    parse_memory_resource_version,
)
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from kubemirror.types import GroupVersionResource
from tests.cli.conftest import KUBECTL, Running, Spawn
from tests.real_apiserver.conftest import (
    CONFIGMAPS,
    DEPLOYMENTS,
    PODS,
    configmap,
    deployment,
    pod,
    unique,
)

pytestmark = [pytest.mark.kubectl]

Obj = dict[str, Any]


# -- helpers --------------------------------------------------------------------------------


async def kubectl(kubeconfig: str | os.PathLike[str], *args: str) -> str:
    """Run kubectl; its stdout (fails the test on a non-zero exit)."""
    assert KUBECTL is not None, "kubectl is required"
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", os.fspath(kubeconfig), *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def kubectl_json(kubeconfig: str | os.PathLike[str], *args: str) -> Obj:
    doc: Obj = json.loads(await kubectl(kubeconfig, *args, "-o", "json"))
    return doc


def by_name(items: list[Obj]) -> dict[str, Obj]:
    return {item["metadata"]["name"]: item for item in items}


def unmirrored(obj: Obj) -> Obj:
    """``obj`` as the member cluster has it: the mirror's two changes undone (checked)."""
    out: Obj = json.loads(json.dumps(obj))
    meta = out["metadata"]
    annotations = meta.get("annotations") or {}
    assert annotations.get(CLUSTER_ANNOTATION) == "real", meta
    del annotations[CLUSTER_ANNOTATION]
    if not annotations:
        meta.pop("annotations", None)
    _prefix, _index, original = parse_memory_resource_version(meta["resourceVersion"])
    meta["resourceVersion"] = original
    return out


def typed(item: Obj, api_version: str = "v1", kind: str = "ConfigMap") -> Obj:
    """A list item with the apiVersion and kind kube-apiserver leaves out of lists."""
    return {"apiVersion": api_version, "kind": kind, **item}


def assert_same_objects(served: list[Obj], real: list[Obj], what: str) -> None:
    """Same names; each served object equals the real one once ``unmirrored``."""
    mirrored, members = by_name(served), by_name(real)
    assert sorted(mirrored) == sorted(members), what
    for name, obj in members.items():
        assert unmirrored(mirrored[name]) == obj, f"{what}: {name}"


def versions(items: list[Obj], *, served: bool = False) -> dict[str, str]:
    """``namespace/name`` -> the member's resourceVersion."""
    out = {}
    for item in items:
        meta = item["metadata"]
        rv = meta["resourceVersion"]
        if served:
            rv = parse_memory_resource_version(rv)[2]
        out[f"{meta.get('namespace', '')}/{meta['name']}"] = rv
    return out


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's columns: the header words and the rows' cells (split on 2+ spaces)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "kubectl printed nothing"

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.split("  ") if c.strip()]

    return cells(lines[0]), [cells(line) for line in lines[1:]]


async def real_list(client: KubeClient, gvr: GroupVersionResource, ns: str | None) -> list[Obj]:
    return list((await client.list(gvr, ns, ListOptions())).items)


# -- kubemirror watch -------------------------------------------------------------------------


async def read_changes(running: Running, want: dict[str, int], within: float = 20.0) -> None:
    """Add up the JSON ``change`` lines until every count reaches ``want`` (fails beyond)."""
    totals = dict.fromkeys(want, 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while any(totals[k] < want[k] for k in want):
        remaining = deadline - loop.time()
        assert remaining > 0, f"change lines add up to {totals}, expected {want}"
        line = json.loads(await running.line_matching(lambda s: '"change"' in s, remaining))
        for key in totals:
            totals[key] += line[key]
    assert totals == want, f"more changes reported than made: {totals} != {want}"


async def test_watch_configmaps_reports_exactly_the_real_changes(
    real_env: EnvTest, real_client: KubeClient, namespace: str, spawn: Spawn
) -> None:
    for i in range(3):
        await real_client.create(CONFIGMAPS, configmap(f"old-{i}", {"i": str(i)}), namespace)
    running = await spawn(
        "watch", "configmaps", "-n", namespace, "-o", "json",
        "--kubeconfig", str(real_env.kubeconfig_path), "--debounce", "0.05", "--duration", "6",
    )  # fmt: skip
    synced = json.loads(await running.line_matching(lambda s: '"synced"' in s))
    assert synced["resource"] == "configmaps.v1"
    assert synced["count"] == 3, "the namespace's configmaps only"

    for i in range(4):
        await real_client.create(CONFIGMAPS, configmap(f"new-{i}"), namespace)
    for name in ("old-0", "old-1", "new-0"):
        obj = await real_client.get(CONFIGMAPS, name, namespace)
        obj["data"] = {"changed": name}
        await real_client.replace(CONFIGMAPS, obj, namespace)
    # An update that changes nothing: kube-apiserver keeps the resourceVersion and sends
    # no event, so it must not be counted.
    same = await real_client.get(CONFIGMAPS, "old-2", namespace)
    again = await real_client.replace(CONFIGMAPS, same, namespace)
    assert again["metadata"]["resourceVersion"] == same["metadata"]["resourceVersion"]
    for name in ("old-1", "new-3"):
        await real_client.delete(CONFIGMAPS, name, namespace)
    elsewhere = unique("elsewhere")
    await real_client.create(CONFIGMAPS, configmap(elsewhere), "default")  # not watched
    await read_changes(running, {"created": 4, "modified": 3, "deleted": 2})

    result = await running.finish(within=30)  # --duration ends it
    assert result.returncode == 0, result.stderr
    stopped = json.loads(result.stdout.strip().splitlines()[-1])
    assert stopped["type"] == "stopped"
    assert (stopped["synced"], stopped["created"], stopped["modified"], stopped["deleted"]) == (
        3, 4, 3, 2,
    )
    assert stopped["size"] == len(await real_list(real_client, CONFIGMAPS, namespace)) == 5
    await real_client.delete(CONFIGMAPS, elsewhere, "default")


async def test_watch_pods_in_all_namespaces(
    real_env: EnvTest, real_client: KubeClient, namespace: str, spawn: Spawn
) -> None:
    for i in range(2):
        await real_client.create(PODS, pod(f"before-{i}"), namespace)
    everywhere = len(await real_list(real_client, PODS, None))
    running = await spawn(
        "watch", "pods", "-A", "-o", "json", "--kubeconfig", str(real_env.kubeconfig_path),
        "--debounce", "0.05", "--duration", "6",
    )  # fmt: skip
    synced = json.loads(await running.line_matching(lambda s: '"synced"' in s))
    assert synced["resource"] == "pods.v1"
    assert synced["count"] == everywhere

    other = unique("other")
    await real_client.create(
        GroupVersionResource("", "v1", "namespaces"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}},
    )
    await real_client.create(PODS, pod("a"), namespace)
    await real_client.create(PODS, pod("b"), other)
    labelled = await real_client.get(PODS, "before-0", namespace)
    labelled["metadata"]["labels"]["tier"] = "front"
    await real_client.replace(PODS, labelled, namespace)
    # Deleting even an unscheduled pod (no spec.nodeName, so no grace period) is two
    # events on kube-apiserver: MODIFIED (deletionTimestamp, deletionGracePeriodSeconds 0)
    # then DELETED; the DELETE answers with the Pod, not a Status. Two modifications.
    answer = await real_client.delete(PODS, "before-1", namespace)
    assert answer["kind"] == "Pod"
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 0
    await read_changes(running, {"created": 2, "modified": 2, "deleted": 1})

    result = await running.finish(within=30)
    assert result.returncode == 0, result.stderr
    stopped = json.loads(result.stdout.strip().splitlines()[-1])
    assert (stopped["created"], stopped["modified"], stopped["deleted"]) == (2, 2, 1)
    assert stopped["size"] == everywhere + 1 == len(await real_list(real_client, PODS, None))


# -- kubemirror serve -------------------------------------------------------------------------


class Served:
    """A running ``kubemirror serve`` of the real server (cluster ``real``)."""

    def __init__(self, running: Running, url: str, kubeconfig: Path) -> None:
        self.running = running
        self.url = url
        self.kubeconfig = kubeconfig

    async def get(self, path: str) -> Obj:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as resp:
            assert resp.status == 200, f"GET {path}: {resp.status} {await resp.text()}"
            body: Obj = await resp.json()
            return body


async def start_serve(spawn: Spawn, kubeconfig: Path, served: Path) -> Served:
    running = await spawn(
        "serve", "--cluster", "real=envtest", "--kubeconfig", str(kubeconfig),
        "--resource", "pods,configmaps,deployments.apps", "--port", "0",
        "--write-kubeconfig", str(served),
    )  # fmt: skip
    header = await running.line_matching(lambda s: s.startswith("kubemirror serve: "))
    url = header.split()[2]
    assert url.startswith("http://127.0.0.1:"), header
    await wait_ready(url)
    return Served(running, url, served)


async def wait_ready(url: str, within: float = 30.0) -> None:
    """Poll ``/readyz`` until it answers 200 (503 while syncing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = ""
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
                    last = f"{resp.status} {await resp.text()}"
            except aiohttp.ClientError as exc:
                last = repr(exc)
            assert loop.time() < deadline, f"/readyz not 200 within {within}s: {last}"
            await asyncio.sleep(0.05)


def python_client_configmaps(kubeconfig: Path, namespace: str) -> tuple[str, list[Obj]]:
    """The official client's ``list_namespaced_config_map``: list RV and items as dicts."""
    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        result = kubernetes.client.CoreV1Api(api).list_namespaced_config_map(namespace)
        items = [api.sanitize_for_serialization(item) for item in result.items]
        assert result.metadata is not None
        return str(result.metadata.resource_version), items
    finally:
        api.close()


async def seed_namespace(client: KubeClient, namespace: str) -> None:
    for i in range(3):
        await client.create(
            CONFIGMAPS,
            configmap(f"cm-{i}", {"index": str(i), "text": "é€ ✓"}, {"app": "demo", "i": str(i)}),
            namespace,
        )
    for i in range(2):
        await client.create(PODS, pod(f"web-{i}"), namespace)
    await client.create(DEPLOYMENTS, deployment("api", replicas=2), namespace)


async def test_serve_mirrors_the_real_server_object_by_object(
    real_env: EnvTest, real_client: KubeClient, namespace: str, spawn: Spawn, tmp_path: Path
) -> None:
    await seed_namespace(real_client, namespace)
    kubeconfig = real_env.kubeconfig_path
    served = await start_serve(spawn, kubeconfig, tmp_path / "served")
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    # kubectl: same objects (kubectl hides managedFields in both)
    mine = await kubectl_json(served.kubeconfig, "get", "configmaps", "-n", namespace)
    theirs = await kubectl_json(kubeconfig, "get", "configmaps", "-n", namespace)
    assert_same_objects(mine["items"], theirs["items"], "kubectl get configmaps -o json")
    cm0 = by_name(mine["items"])["cm-0"]
    assert cm0["data"] == {"index": "0", "text": "é€ ✓"}
    assert cm0["metadata"]["labels"] == {"app": "demo", "i": "0"}
    assert cm0["metadata"]["uid"] == by_name(theirs["items"])["cm-0"]["metadata"]["uid"]

    # plain HTTP, aggregated and per cluster: every field of the objects (managedFields too).
    # kube-apiserver's list items carry no apiVersion/kind (KubeClient.list fills them in);
    # the mirror's do, as they were stored from the member's watch events.
    raw: Obj = await real_client.request("GET", path)
    assert all("kind" not in item and "apiVersion" not in item for item in raw["items"])
    real_items = await real_list(real_client, CONFIGMAPS, namespace)
    assert all(item["metadata"].get("managedFields") for item in real_items)
    assert [typed(item) for item in raw["items"]] == real_items
    for prefix in ("", "/clusters/real"):
        listed = await served.get(prefix + path)
        assert listed["kind"] == "ConfigMapList"
        parse_list_resource_version(listed["metadata"]["resourceVersion"])  # <prefix>.<index>
        assert_same_objects(listed["items"], real_items, f"GET {prefix + path}")
        one = await served.get(f"{prefix}{path}/cm-1")
        assert unmirrored(one) == by_name(real_items)["cm-1"]

    # the official Python client (which leaves the real items' apiVersion/kind unset)
    list_rv, items = await asyncio.to_thread(python_client_configmaps, served.kubeconfig,
                                             namespace)
    real_rv, real_py = await asyncio.to_thread(python_client_configmaps, kubeconfig, namespace)
    parse_list_resource_version(list_rv)
    assert real_rv.isdigit(), "kube-apiserver: the etcd revision"
    assert_same_objects(items, [typed(item) for item in real_py],
                        "CoreV1Api.list_namespaced_config_map")

    # kubectl's tables: same columns (plus the mirror's CLUSTER with -o wide), same cells
    mine_head, mine_rows = table(await kubectl(served.kubeconfig, "get", "pods", "-A"))
    real_head, real_rows = table(await kubectl(kubeconfig, "get", "pods", "-A"))
    assert mine_head == real_head == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    age = real_head.index("AGE")  # printed a moment apart

    def cut(rows: list[list[str]], upto: int = age) -> list[list[str]]:
        return sorted(row[:upto] for row in rows)

    assert cut(mine_rows) == cut(real_rows)
    assert [namespace, "web-0", "0/1", "Pending", "0"] in cut(mine_rows)
    mine_head, mine_rows = table(await kubectl(served.kubeconfig, "get", "deploy", "-A",
                                               "-o", "wide"))
    real_head, real_rows = table(await kubectl(kubeconfig, "get", "deploy", "-A", "-o", "wide"))
    assert mine_head == [*real_head, "CLUSTER"]
    age = real_head.index("AGE")
    assert [row[:age] for row in mine_rows] == [row[:age] for row in real_rows]
    assert [row[age + 1:] for row in mine_rows] == [[*row[age + 1:], "real"] for row in real_rows]

    # the real server changes: the mirror follows, deletes included
    await real_client.create(CONFIGMAPS, configmap("cm-new", {"fresh": "yes"}), namespace)
    changed = await real_client.get(CONFIGMAPS, "cm-1", namespace)
    changed["data"]["index"] = "one"
    changed["metadata"]["labels"]["edited"] = "true"
    await real_client.replace(CONFIGMAPS, changed, namespace)
    await real_client.delete(CONFIGMAPS, "cm-2", namespace)
    await real_client.delete(PODS, "web-0", namespace)
    await real_client.create(PODS, pod("web-9"), namespace)
    scaled = await real_client.get(DEPLOYMENTS, "api", namespace)
    scaled["spec"]["replicas"] = 5
    await real_client.replace(DEPLOYMENTS, scaled, namespace)

    wanted = {
        gvr: await real_list(real_client, gvr, namespace)
        for gvr in (CONFIGMAPS, PODS, DEPLOYMENTS)
    }
    assert sorted(by_name(wanted[CONFIGMAPS])) == ["cm-0", "cm-1", "cm-new"]
    paths = {
        CONFIGMAPS: path,
        PODS: f"/api/v1/namespaces/{namespace}/pods",
        DEPLOYMENTS: f"/apis/apps/v1/namespaces/{namespace}/deployments",
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        seen = {gvr: (await served.get(p))["items"] for gvr, p in paths.items()}
        if all(versions(seen[g], served=True) == versions(wanted[g]) for g in paths):
            break
        assert loop.time() < deadline, "the mirror did not reach the real server's state"
        await asyncio.sleep(0.05)
    for gvr in paths:
        assert_same_objects(seen[gvr], wanted[gvr], f"{gvr} after the changes")
    mine = await kubectl_json(served.kubeconfig, "get", "configmaps", "-n", namespace)
    theirs = await kubectl_json(kubeconfig, "get", "configmaps", "-n", namespace)
    assert_same_objects(mine["items"], theirs["items"], "kubectl after the changes")
    assert by_name(mine["items"])["cm-1"]["metadata"]["labels"]["edited"] == "true"
    _, items = await asyncio.to_thread(python_client_configmaps, served.kubeconfig, namespace)
    assert sorted(by_name(items)) == ["cm-0", "cm-1", "cm-new"]
    deploy = await kubectl_json(served.kubeconfig, "get", "deploy", "api", "-n", namespace)
    assert deploy["spec"]["replicas"] == 5

    served.running.proc.send_signal(signal.SIGTERM)
    result = await served.running.finish()
    assert result.returncode == 0, result.stderr
