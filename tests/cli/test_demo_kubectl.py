"""kubectl against a running ``kubemirror demo --port P``: wide tables and explain."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from tests.cli.conftest import cli_command, cli_env

KUBECTL = shutil.which("kubectl")

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(
        KUBECTL is None and os.environ.get("KUBEMIRROR_REQUIRE_KUBECTL") != "1",
        reason="kubectl is not installed (set KUBEMIRROR_REQUIRE_KUBECTL=1 to fail instead)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _kubectl(url: str, cache: Path, *args: str) -> tuple[int, str, str]:
    assert KUBECTL is not None, "kubectl is required (KUBEMIRROR_REQUIRE_KUBECTL=1)"
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--server", url, "--cache-dir", str(cache), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig"},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_get_wide_and_explain_against_the_demo(tmp_path: Path) -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *cli_command("demo", "--pods", "60", "--churn", "5", "--duration", "60",
                     "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            first = (await proc.stdout.readline()).decode()
        url = first.split(" at ")[1].strip()
        assert url == f"http://127.0.0.1:{port}"

        code, out, err = await _kubectl(url, tmp_path, "get", "pods", "-A", "-o", "wide")
        assert code == 0, err
        lines = out.strip().splitlines()
        assert lines[0].split() == [
            "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
            "NOMINATED", "NODE", "READINESS", "GATES", "CLUSTER",
        ]
        assert len(lines) > 30
        statuses = {line.split()[3] for line in lines[1:]}
        assert statuses & {"Running", "Pending", "Succeeded", "Failed"}, statuses

        code, out, err = await _kubectl(url, tmp_path, "explain", "pods.spec")
        assert code == 0, err
        assert "FIELD: spec <PodSpec>" in out
        assert "containers\t<[]Container> -required-" in out
        assert "NodeName indicates in which node this pod is scheduled." in out
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(30):
                    await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.communicate()
