"""``kubemirror envtest setup`` and ``serve``: the real binaries found, a real control plane
run until a signal or ``--duration``, and nothing left behind (kubeconfig, processes,
work directory) when it ends."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from kubemirror.client import KubeClient, ListOptions, load_kube_config
from kubemirror.envtest import Assets
from kubemirror.types import GroupVersionResource
from tests.cli.conftest import KUBECTL, Running, Spawn, run_cli, skip_without_kubectl

NAMESPACES = GroupVersionResource("", "v1", "namespaces")
READY = re.compile(
    r"kube-apiserver (https://127\.0\.0\.1:(\d+)) ready \(etcd (http://127\.0\.0\.1:\d+), "
    r"binaries in (\S+)\)"
)


def children(parent: int) -> dict[int, str]:
    """pid -> program name of the live (non-zombie) child processes of ``parent``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if int(fields["PPid"]) == parent and not fields["State"].startswith("Z"):
            found[int(entry.name)] = os.path.basename(os.fsdecode(argv0))
    return found


def cmdline(pid: int) -> list[str]:
    return [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in pids if alive(pid)]


async def kubectl(kubeconfig: Path, *args: str) -> str:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "cache"),
        *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def mode(path: Path) -> int | None:
    """The permission bits of ``path``, or None when it does not exist."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


def executables(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and os.access(p, os.X_OK))


def expected_source(assets: Assets) -> str:
    """What a later lookup reports: binaries built by this session are then in the cache."""
    return "cache" if assets.source == "built" else assets.source


# -- setup -----------------------------------------------------------------------------------


@pytest.mark.real_apiserver
async def test_setup_prints_the_assets_directory_last(envtest_assets: Assets) -> None:
    result = await run_cli("envtest", "setup", within=25)
    assert result.returncode == 0, result.stderr
    last = Path(result.stdout.splitlines()[-1])
    assert last == envtest_assets.directory
    assert {"etcd", "kube-apiserver"} <= set(executables(last))
    assert result.stderr == (
        f"kubemirror envtest: kube-apiserver and etcd from {expected_source(envtest_assets)}\n")


async def test_setup_with_an_empty_kubebuilder_assets_fails(tmp_path: Path) -> None:
    empty = tmp_path / "assets"
    empty.mkdir()
    result = await run_cli("envtest", "setup", within=25, KUBEBUILDER_ASSETS=str(empty))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "error: KUBEBUILDER_ASSETS: names a directory without kube-apiserver and etcd (unset it "
        f"to use kubemirror's cache, or put the binaries there) '{empty}'"
    ]


async def test_setup_without_binaries_and_no_build_fails(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = await run_cli("envtest", "setup", "--no-build", within=25,
                           KUBEBUILDER_ASSETS="", KUBEMIRROR_ENVTEST_CACHE=str(cache))
    assert (result.returncode, result.stdout) == (1, "")
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "error: no kube-apiserver/etcd binaries: KUBEBUILDER_ASSETS is unset and "
        f"{cache}/k8s-v")
    assert line.endswith("run `kubemirror envtest setup` to build them")


# -- serve -----------------------------------------------------------------------------------


async def serve_until_ready(spawn: Spawn, kubeconfig: Path) -> tuple[Running, re.Match[str]]:
    running = await spawn("envtest", "serve", "--write-kubeconfig", str(kubeconfig))
    line = await running.line_matching(lambda text: " ready (" in text, within=25)
    ready = READY.fullmatch(line)
    assert ready is not None, line
    await running.line_matching(lambda text: text == f"  export KUBECONFIG={kubeconfig}")
    await running.line_matching(
        lambda text: text == f"  kubectl --kubeconfig {kubeconfig} get ns")
    assert mode(kubeconfig) == 0o600
    return running, ready


def control_plane(running: Running, ready: re.Match[str]) -> tuple[dict[str, int], Path]:
    """The serve command's kube-apiserver and etcd (name -> pid) and their work directory."""
    kids = children(running.proc.pid)
    by_name = {name: pid for pid, name in kids.items()}
    assert set(by_name) == {"kube-apiserver", "etcd"}, kids
    apiserver_args = cmdline(by_name["kube-apiserver"])
    assert f"--secure-port={ready.group(2)}" in apiserver_args
    assert f"--etcd-servers={ready.group(3)}" in apiserver_args
    [cert_dir] = [a.split("=", 1)[1] for a in apiserver_args if a.startswith("--cert-dir=")]
    work_dir = Path(cert_dir).parent
    assert work_dir.name.startswith("kubemirror-envtest-")
    assert any(str(work_dir) in arg for arg in cmdline(by_name["etcd"]))
    return by_name, work_dir


async def assert_stops_cleanly(running: Running, sig: signal.Signals, kubeconfig: Path,
                               pids: dict[str, int], work_dir: Path) -> None:
    running.proc.send_signal(sig)
    result = await running.finish(within=25)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stopped\n"
    assert result.stderr == ""
    assert mode(kubeconfig) is None
    assert {name: pid for name, pid in pids.items() if alive(pid)} == {}
    assert mode(work_dir) is None


@pytest.mark.real_apiserver
@pytest.mark.kubectl
@skip_without_kubectl
async def test_serve_answers_kubectl_until_sigint(envtest_assets: Assets, spawn: Spawn,
                                                 tmp_path: Path) -> None:
    kubeconfig = tmp_path / "envtest.kubeconfig"
    running, ready = await serve_until_ready(spawn, kubeconfig)
    assert ready.group(4) == str(envtest_assets.directory)
    pids, work_dir = control_plane(running, ready)

    namespaces = (await kubectl(kubeconfig, "get", "ns", "-o", "name")).split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(
        namespaces)
    resources = (await kubectl(kubeconfig, "api-resources", "-o", "name")).split()
    assert {"pods", "configmaps", "deployments.apps", "leases.coordination.k8s.io",
            "customresourcedefinitions.apiextensions.k8s.io"} <= set(resources)
    server = await kubectl(kubeconfig, "config", "view", "--minify", "-o",
                           "jsonpath={.clusters[0].cluster.server}")
    assert server == ready.group(1)

    await assert_stops_cleanly(running, signal.SIGINT, kubeconfig, pids, work_dir)


@pytest.mark.real_apiserver
async def test_serve_answers_kubemirror_until_sigterm(envtest_assets: Assets, spawn: Spawn,
                                                     tmp_path: Path) -> None:
    kubeconfig = tmp_path / "nested" / "dir" / "envtest.kubeconfig"
    running, ready = await serve_until_ready(spawn, kubeconfig)
    pids, work_dir = control_plane(running, ready)

    config = await load_kube_config(kubeconfig)
    assert (config.server, config.context_name) == (ready.group(1), "envtest")
    async with KubeClient(config) as client:
        listed = await client.list(NAMESPACES, None, ListOptions())
    assert {"default", "kube-system", "kube-public"} <= {
        item["metadata"]["name"] for item in listed.items}

    await assert_stops_cleanly(running, signal.SIGTERM, kubeconfig, pids, work_dir)


@pytest.mark.real_apiserver
async def test_serve_with_duration_exits_by_itself(envtest_assets: Assets,
                                                  tmp_path: Path) -> None:
    kubeconfig = tmp_path / "envtest.kubeconfig"
    result = await run_cli("envtest", "serve", "--write-kubeconfig", str(kubeconfig),
                           "--duration", "5", within=28)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, lines
    ready = READY.fullmatch(lines[0])
    assert ready is not None, lines[0]
    assert lines[1:] == [f"  export KUBECONFIG={kubeconfig}",
                         f"  kubectl --kubeconfig {kubeconfig} get ns", "stopped"]
    assert result.stderr == ""
    assert mode(kubeconfig) is None
    # neither kube-apiserver (--secure-port) nor etcd (its client URL) is left running
    assert mentioning(f"--secure-port={ready.group(2)}") == []
    assert mentioning(ready.group(3)) == []
