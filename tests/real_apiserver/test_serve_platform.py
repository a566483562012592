"""``kubemirror serve`` as a platform in front of a genuine kube-apiserver member.

Each test gets a private etcd + kube-apiserver (``EnvTest``, function scope) and
runs ``python -m kubemirror serve --cluster real=envtest`` against it:

- the member's kube-apiserver is killed: ``/readyz`` turns 503 with the reason
  (``cluster real: unreachable for N s: connection refused``) once the outage
  passes ``--unready-after``, ``/metrics`` shows the member down and stale, the
  retries are logged as one line each; after a restart both recover;
- ``/clusters/<unknown>`` answers a 404 Status naming the known clusters;
- with ``--read-write``, ``kubectl apply``, ``patch`` and ``delete`` through the
  served API change the real member (checked with a client of the member), and
  the next ``kubectl get`` through the served API already sees the change
  (read-your-writes); without it writes are refused with 405.

The figures (readyz flip latencies, write round trips) are printed: ``pytest -s``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from kubemirror import errors
from kubemirror.client import KubeClient
from kubemirror.envtest import Assets, EnvTest
from kubemirror.multicluster.resource_version import parse_memory_resource_version
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from tests.cli.conftest import KUBECTL, Running, Spawn
from tests.real_apiserver.conftest import CONFIGMAPS, configmap, create_namespace

pytestmark = [pytest.mark.kubectl]

Obj = dict[str, Any]


@pytest_asyncio.fixture
async def env(envtest_assets: Assets) -> AsyncIterator[EnvTest]:
    """A private control plane: the tests kill its kube-apiserver."""
    async with EnvTest(envtest_assets) as private:
        yield private


async def start_serve(spawn: Spawn, env: EnvTest, *extra: str) -> tuple[Running, str]:
    running = await spawn(
        "serve", "--cluster", "real=envtest", "--kubeconfig", str(env.kubeconfig_path),
        "--resource", "configmaps", "--port", "0", *extra,
    )  # fmt: skip
    header = await running.line_matching(lambda s: s.startswith("kubemirror serve: "))
    url = header.split()[2]
    assert url.startswith("http://127.0.0.1:"), header
    await readyz_becomes(url, 200)
    return running, url


async def readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(f"{url}/readyz") as resp:
        return resp.status, await resp.text()


async def readyz_becomes(url: str, code: int, within: float = 60.0) -> tuple[float, str]:
    """Poll ``/readyz`` until it answers ``code``; (seconds taken, body)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last = ""
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                status, text = await readyz(http, url)
                if status == code:
                    return loop.time() - start, text
                last = f"{status} {text}"
            except aiohttp.ClientError as exc:
                last = repr(exc)
            assert loop.time() - start < within, f"/readyz not {code} within {within}s: {last}"
            await asyncio.sleep(0.05)


async def member_metrics(url: str) -> dict[str, float]:
    """The ``kubemirror_member_*`` samples of cluster ``real``."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(r'kubemirror_member_(\w+)\{cluster="real"\} (\S+)', line)
        if match:
            found[match[1]] = float(match[2])
    assert {"up", "stale_seconds", "last_success_timestamp_seconds", "failures_total"} <= set(
        found
    ), text
    return found


async def kubectl(kubeconfig: Path, *args: str, ok: bool = True) -> tuple[int, str, str]:
    assert KUBECTL is not None, "kubectl is required"
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", os.fspath(kubeconfig), *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    if ok:
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return proc.returncode, out.decode(), err.decode()


async def served_get(kubeconfig: Path, name: str, namespace: str) -> Obj:
    _, out, _ = await kubectl(kubeconfig, "get", "configmap", name, "-n", namespace, "-o", "json")
    obj: Obj = json.loads(out)
    return obj


def member_rv(served: Obj) -> str:
    return parse_memory_resource_version(served["metadata"]["resourceVersion"])[2]


# -- readiness, staleness and retry lines across a member outage -------------------------------


async def test_readyz_and_metrics_follow_an_unreachable_member(
    env: EnvTest, spawn: Spawn, tmp_path: Path
) -> None:
    running, url = await start_serve(spawn, env, "--unready-after", "2")
    healthy = await member_metrics(url)
    assert healthy["up"] == 1.0
    assert healthy["stale_seconds"] == 0.0
    assert abs(healthy["last_success_timestamp_seconds"] - time.time()) < 5

    killed = time.monotonic()
    env.kill_apiserver()
    took_down, reason = await readyz_becomes(url, 503, within=30)
    match = re.fullmatch(r"cluster real: unreachable for (\d+) s: (.+)", reason)
    assert match, reason
    assert int(match[1]) >= 2, "not before --unready-after"
    assert match[2] == "connection refused", reason
    down = await member_metrics(url)
    assert down["up"] == 0.0
    assert down["stale_seconds"] > 2.0
    assert down["last_success_timestamp_seconds"] <= time.time() - 2
    assert down["failures_total"] >= 1

    restarted = time.monotonic()
    await env.arestart_apiserver()
    apiserver_back = time.monotonic() - restarted
    took_up, body = await readyz_becomes(url, 200, within=60)
    assert body == "ok"
    back = await member_metrics(url)
    assert back["up"] == 1.0
    assert back["stale_seconds"] == 0.0

    # the mirror still serves the namespace's objects (and new ones) after the outage
    async with KubeClient(env.client_config) as admin:
        ns = await create_namespace(admin, "after")
        await admin.create(CONFIGMAPS, configmap("late"), ns)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/api/v1/namespaces/{ns}/configmaps/late") as resp:
                if resp.status == 200:
                    break
            assert loop.time() < deadline, "the mirror did not follow the member after restart"
            await asyncio.sleep(0.05)

    await running.line_matching(lambda s: "cluster real: reachable again" in s, within=10)
    running.proc.send_signal(signal.SIGTERM)
    result = await running.finish()
    assert result.returncode == 0, result.stderr
    stdout = "\n".join([*running.lines, result.stdout])
    assert "cluster real: unreachable for" in stdout
    assert "/readyz answers 503" in stdout
    assert "cluster real: reachable again" in stdout
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert warnings, "the outage was not reported"
    for line in warnings:
        assert re.fullmatch(r"\d\d:\d\d:\d\d warning: cluster real: .+", line), (
            f"not a one-line warning: {line!r}\nstderr:\n{result.stderr}"
        )
        assert not re.search(r"Error\(|<|>|Traceback", line), line
    refused = [line for line in warnings if "connection refused" in line]
    assert refused, result.stderr
    assert re.search(
        r"cluster real: connection refused to https://127\.0\.0\.1:\d+; retrying in [\d.]+ s",
        refused[0],
    ), refused[0]
    print(
        f"\n[serve readyz] member killed: /readyz 503 after {took_down:.2f} s "
        f"(--unready-after 2; {time.monotonic() - killed:.1f} s since kill at the end); "
        f"kube-apiserver restart took {apiserver_back:.2f} s, /readyz 200 {took_up:.2f} s "
        f"after it; {len(warnings)} warning lines: {warnings}"
    )


async def test_unknown_cluster_is_a_404_naming_the_known_ones(env: EnvTest, spawn: Spawn) -> None:
    running, url = await start_serve(spawn, env)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/clusters/nope/api/v1/configmaps") as resp:
            assert resp.status == 404
            body = await resp.json()
        async with http.get(f"{url}/clusters/real/api/v1/configmaps") as resp:
            assert resp.status == 200
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["message"] == 'cluster "nope" not found; known clusters: real'
    running.proc.send_signal(signal.SIGTERM)
    assert (await running.finish()).returncode == 0


# -- writes forwarded to the member ---------------------------------------------------------------


def write_manifest(path: Path, name: str, namespace: str, data: dict[str, str]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }
    path.write_text(json.dumps(doc))
    return path


async def test_read_write_forwards_kubectl_writes_to_the_member(
    env: EnvTest, spawn: Spawn, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    running, url = await start_serve(spawn, env, "--read-write", "--write-kubeconfig", str(served))
    assert "read-write: writes go to the member clusters" in "\n".join(running.lines)
    timings: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    async with KubeClient(env.client_config) as member:
        ns = await create_namespace(member, "rw")

        # kubectl apply (create): the member has it, the next served get sees it
        manifest = write_manifest(tmp_path / "cm.json", "app", ns, {"color": "blue"})
        start = loop.time()
        _, out, _ = await kubectl(served, "apply", "-f", str(manifest))
        timings["apply (create)"] = loop.time() - start
        assert "configmap/app created" in out
        real = await member.get(CONFIGMAPS, "app", ns)
        assert real["data"] == {"color": "blue"}
        assert CLUSTER_ANNOTATION not in (real["metadata"].get("annotations") or {})
        mine = await served_get(served, "app", ns)
        assert mine["data"] == {"color": "blue"}
        assert member_rv(mine) == real["metadata"]["resourceVersion"]
        assert mine["metadata"]["annotations"][CLUSTER_ANNOTATION] == "real"

        # kubectl apply (change): a strategic merge patch computed against the served object
        write_manifest(manifest, "app", ns, {"color": "green", "size": "L"})
        start = loop.time()
        _, out, _ = await kubectl(served, "apply", "-f", str(manifest))
        timings["apply (patch)"] = loop.time() - start
        assert "configmap/app configured" in out
        real = await member.get(CONFIGMAPS, "app", ns)
        assert real["data"] == {"color": "green", "size": "L"}
        mine = await served_get(served, "app", ns)
        assert mine["data"] == {"color": "green", "size": "L"}
        assert member_rv(mine) == real["metadata"]["resourceVersion"]

        # kubectl patch (what kubectl edit sends)
        start = loop.time()
        await kubectl(served, "patch", "configmap", "app", "-n", ns, "--type", "merge",
                      "-p", '{"data": {"size": "XL"}}')  # fmt: skip
        timings["patch"] = loop.time() - start
        real = await member.get(CONFIGMAPS, "app", ns)
        assert real["data"]["size"] == "XL"
        mine = await served_get(served, "app", ns)
        assert mine["data"]["size"] == "XL"

        # an edit carrying the served resourceVersion: current -> applied, stale -> the
        # member's 409; the answer carries the mirror's resourceVersion, a watch resumes there
        path = f"{url}/api/v1/namespaces/{ns}/configmaps/app"
        headers = {"Content-Type": "application/merge-patch+json"}
        current = mine["metadata"]["resourceVersion"]
        async with aiohttp.ClientSession() as http:
            edit = {"metadata": {"resourceVersion": current}, "data": {"size": "S"}}
            async with http.patch(path, data=json.dumps(edit), headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            assert answer["data"]["size"] == "S"
            parse_memory_resource_version(answer["metadata"]["resourceVersion"])
            async with http.get(path) as resp:  # at once: the mirror already has it
                assert await resp.json() == answer
            real = await member.get(CONFIGMAPS, "app", ns)
            assert member_rv(answer) == real["metadata"]["resourceVersion"]
            async with http.patch(path, data=json.dumps(edit), headers=headers) as resp:
                assert resp.status == 409, await resp.text()
                conflict = await resp.json()
            assert conflict["reason"] == "Conflict", conflict

            watch_url = (
                f"{url}/api/v1/namespaces/{ns}/configmaps?watch=1"
                f"&resourceVersion={answer['metadata']['resourceVersion']}&timeoutSeconds=20"
            )
            async with http.get(watch_url) as stream:
                assert stream.status == 200
                changed = await member.get(CONFIGMAPS, "app", ns)
                changed["data"]["size"] = "M"
                await member.replace(CONFIGMAPS, changed, ns)
                async with asyncio.timeout(15):
                    line = await stream.content.readline()
            event = json.loads(line)
            assert (event["type"], event["object"]["data"]["size"]) == ("MODIFIED", "M")

            # a create at the root with generateName: 201, named by the member
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"generateName": "gen-", "namespace": ns}, "data": {"a": "b"}}
            async with http.post(f"{url}/api/v1/namespaces/{ns}/configmaps",
                                 data=json.dumps(body),
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()  # fmt: skip
            generated = created["metadata"]["name"]
            assert re.fullmatch(r"gen-\w+", generated), generated
            async with http.get(f"{url}/clusters/real/api/v1/namespaces/{ns}/configmaps/"
                                f"{generated}") as resp:
                assert resp.status == 200, "read-your-writes under /clusters/real too"
            await member.get(CONFIGMAPS, generated, ns)

        # the member's errors come back as its Status (kubectl create -f sends JSON)
        code, _, err = await kubectl(served, "create", "-f", str(manifest), ok=False)
        assert code != 0
        assert "AlreadyExists" in err, err
        assert 'configmaps "app" already exists' in err, err

        # kubectl delete: gone on the member, and for the next served get
        start = loop.time()
        _, out, _ = await kubectl(served, "delete", "configmap", "app", "-n", ns)
        timings["delete"] = loop.time() - start
        assert 'configmap "app" deleted' in out
        with pytest.raises(errors.NotFoundError):
            await member.get(CONFIGMAPS, "app", ns)
        code, _, err = await kubectl(served, "get", "configmap", "app", "-n", ns, ok=False)
        assert code != 0
        assert "NotFound" in err, err

        # writes under /clusters/real: the same
        direct = write_manifest(tmp_path / "direct.json", "direct", ns, {"x": "y"})
        await kubectl(served, "--server", f"{url}/clusters/real", "apply", "-f", str(direct),
                      "--validate=false")  # fmt: skip
        assert (await member.get(CONFIGMAPS, "direct", ns))["data"] == {"x": "y"}
        assert (await served_get(served, "direct", ns))["data"] == {"x": "y"}

    running.proc.send_signal(signal.SIGTERM)
    result = await running.finish()
    assert result.returncode == 0, result.stderr
    print(
        "\n[serve --read-write] kubectl round trips through the mirror, read-your-writes: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
    )


async def test_read_only_refuses_writes_with_405(
    env: EnvTest, spawn: Spawn, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    running, _ = await start_serve(spawn, env, "--write-kubeconfig", str(served))
    async with KubeClient(env.client_config) as member:
        ns = await create_namespace(member, "ro")
        manifest = write_manifest(tmp_path / "cm.json", "app", ns, {"color": "blue"})
        code, _, err = await kubectl(served, "apply", "-f", str(manifest), ok=False)
        assert code != 0
        assert "read-only" in err, err
        with pytest.raises(errors.NotFoundError):
            await member.get(CONFIGMAPS, "app", ns)
    running.proc.send_signal(signal.SIGTERM)
    assert (await running.finish()).returncode == 0
