"""``EnvTest``: a real etcd + kube-apiserver that starts, serves kubectl and kubemirror,
survives the crash of either component without losing data, and leaves nothing behind.

Each test starts its own control plane (about 3 s), so there are few of them: five.
Processes are found through ``/proc``: every process of an environment has its work
directory on its command line (kube-apiserver's certificates, etcd's data directory).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubemirror import errors
from kubemirror.cli import failures
from kubemirror.client import Discovery, KubeClient, ListOptions
from kubemirror.envtest import ADMIN_USER, Assets, EnvTest
from kubemirror.types import GroupVersionResource
from tests.cli.conftest import KUBECTL, skip_without_kubectl

pytestmark = pytest.mark.real_apiserver

CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")
NAMESPACES = GroupVersionResource("", "v1", "namespaces")
REPR = re.compile(r"EnvTest\(https://127\.0\.0\.1:(\d+), (running|stopped), "
                  r"etcd=127\.0\.0\.1:(\d+)\)")


def processes_under(directory: Path) -> dict[int, str]:
    """pid -> program name of every live process whose command line mentions ``directory``."""
    found: dict[int, str] = {}
    marker = os.fsencode(directory)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # exited meanwhile
            continue
        if state != "Z" and any(marker in arg for arg in argv[1:]):
            found[int(entry.name)] = os.path.basename(os.fsdecode(argv[0]))
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_by_name(env: EnvTest) -> dict[str, int]:
    found = processes_under(env.work_dir)
    by_name = {name: pid for pid, name in found.items()}
    assert len(by_name) == len(found) == 2, found
    return by_name


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"kept": "yes"}}


async def whoami(client: KubeClient) -> dict[str, Any]:
    review = await client.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    info: dict[str, Any] = review["status"]["userInfo"]
    return info


def kubectl(env: EnvTest, *args: str) -> str:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(env.kubeconfig_path),
                           "--cache-dir", str(env.work_dir / "kubectl-cache"), *args],
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_start_and_stop_leave_nothing_behind(envtest_assets: Assets) -> None:
    env = EnvTest(envtest_assets)
    work_dir = env.work_dir
    try:
        before = REPR.fullmatch(repr(env))
        assert before is not None
        assert before.groups() == (str(env.secure_port), "stopped", str(env.etcd.client_port))
        assert env.url == f"https://127.0.0.1:{env.secure_port}"
        assert not env.apiserver_running

        env.start()
        assert repr(env) == (f"EnvTest({env.url}, running, etcd=127.0.0.1:"
                             f"{env.etcd.client_port})")
        assert env.apiserver_running
        assert env.etcd.running
        pids = pids_by_name(env)
        assert set(pids) == {"kube-apiserver", "etcd"}
        assert pids["etcd"] == env.etcd.pid
        assert all(alive(pid) for pid in pids.values())
        for path in (env.kubeconfig_path, env.ca_file, env.admin_cert_file,
                     env.admin_key_file, env.apiserver_log):
            assert path.is_file(), path
        assert env.kubeconfig_path.stat().st_mode & 0o777 == 0o600
    finally:
        env.stop()
    assert repr(env) == f"EnvTest({env.url}, stopped, etcd=127.0.0.1:{env.etcd.client_port})"
    assert not env.apiserver_running
    assert not env.etcd.running
    assert [pid for pid in pids.values() if alive(pid)] == []
    assert processes_under(work_dir) == {}
    assert not work_dir.exists()
    env.stop()  # a second stop is a no-op
    assert not work_dir.exists()


@skip_without_kubectl
@pytest.mark.kubectl
def test_kubectl_works_with_both_contexts(envtest_assets: Assets) -> None:
    with EnvTest(envtest_assets) as env:
        namespaces = kubectl(env, "get", "ns", "-o", "name").split()
        assert {"namespace/default", "namespace/kube-system",
                "namespace/kube-public"} <= set(namespaces)
        assert all(line.startswith("namespace/") for line in namespaces)

        api_resources = set(kubectl(env, "api-resources", "-o", "name").split())

        async def preferred_resources() -> set[str]:
            async with KubeClient(env.client_config) as client:
                resources = await Discovery(client).resources()
            return {f"{r.gvr.resource}.{r.gvr.group}" if r.gvr.group else r.gvr.resource
                    for r in resources if r.preferred}

        # kubectl lists each resource once, at its group's preferred version
        assert api_resources == asyncio.run(preferred_resources())
        assert {"pods", "deployments.apps", "leases.coordination.k8s.io",
                "customresourcedefinitions.apiextensions.k8s.io"} <= api_resources

        by_cert = json.loads(kubectl(env, "auth", "whoami", "-o", "json"))["status"]["userInfo"]
        assert by_cert["username"] == ADMIN_USER
        assert by_cert["groups"] == ["system:masters", "system:authenticated"]
        assert by_cert["extra"]["authentication.kubernetes.io/credential-id"][0].startswith(
            "X509SHA256=")
        by_token = json.loads(kubectl(env, "--context", "envtest-token", "auth", "whoami",
                                      "-o", "json"))["status"]["userInfo"]
        assert by_token == {"username": ADMIN_USER, "uid": ADMIN_USER,
                            "groups": ["system:masters", "system:authenticated"]}


async def test_async_context_manager_and_the_admin_token(envtest_assets: Assets) -> None:
    async with EnvTest(envtest_assets) as env:
        work_dir = env.work_dir
        pids = pids_by_name(env)
        async with KubeClient(env.token_client_config(env.admin_token)) as client:
            assert await whoami(client) == {
                "username": ADMIN_USER, "uid": ADMIN_USER,
                "groups": ["system:masters", "system:authenticated"]}
            listed = await client.list(NAMESPACES, None, ListOptions())
            assert "kube-system" in {item["metadata"]["name"] for item in listed.items}
        async with KubeClient(env.token_client_config(env.admin_token + "x")) as client:
            with pytest.raises(errors.UnauthorizedError) as caught:
                await client.request("GET", "/api")
            assert caught.value.code == 401
    assert [pid for pid in pids.values() if alive(pid)] == []
    assert not work_dir.exists()


async def test_apiserver_crash_and_restart_keep_the_data(envtest_assets: Assets,
                                                          tmp_path: Path) -> None:
    work_dir = tmp_path / "env"
    env = EnvTest(envtest_assets, work_dir=work_dir)
    async with env, KubeClient(env.client_config) as client:
        created = await client.create(CONFIGMAPS, configmap("before-crash"), "default")
        pids = pids_by_name(env)

        env.kill_apiserver()
        assert not env.apiserver_running
        assert not alive(pids["kube-apiserver"])
        assert env.etcd.pid == pids["etcd"]  # etcd is untouched
        assert "stopped" in repr(env)
        with pytest.raises(errors.TransportError) as caught:
            await client.get(CONFIGMAPS, "before-crash", "default")
        assert isinstance(failures.root_cause(caught.value), ConnectionRefusedError)

        await env.arestart_apiserver()
        assert env.url == f"https://127.0.0.1:{env.secure_port}"
        assert await client.get(CONFIGMAPS, "before-crash", "default") == created
        after = await client.create(CONFIGMAPS, configmap("after-crash"), "default")
        assert int(after["metadata"]["resourceVersion"]) > int(
            created["metadata"]["resourceVersion"])
        restarted = pids_by_name(env)
        assert restarted["etcd"] == pids["etcd"]
        assert restarted["kube-apiserver"] != pids["kube-apiserver"]
    # a work_dir given by the caller is kept; the processes are not
    assert [pid for pid in restarted.values() if alive(pid)] == []
    assert (work_dir / "kube-apiserver.log").is_file()
    assert processes_under(work_dir) == {}


async def test_etcd_crash_and_restart_keep_the_data(envtest_assets: Assets) -> None:
    env = EnvTest(envtest_assets)
    async with env, KubeClient(env.client_config, request_timeout=5.0) as client:
        created = await client.create(CONFIGMAPS, configmap("before-crash"), "default")
        pids = pids_by_name(env)

        env.kill_etcd()
        assert not env.etcd.running
        assert not alive(pids["etcd"])
        assert env.apiserver_running  # kube-apiserver outlives its storage

        await env.arestart_etcd()
        assert env.etcd.pid != pids["etcd"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:  # kube-apiserver reconnects on its own
            try:
                fetched = await client.get(CONFIGMAPS, "before-crash", "default")
                break
            except (errors.ApiError, errors.TransportError):
                assert loop.time() < deadline, "kube-apiserver did not reconnect to etcd"
                await asyncio.sleep(0.05)
        assert fetched == created
        after = await client.create(CONFIGMAPS, configmap("after-crash"), "default")
        assert int(after["metadata"]["resourceVersion"]) > int(
            created["metadata"]["resourceVersion"])
        assert pids_by_name(env)["kube-apiserver"] == pids["kube-apiserver"]
