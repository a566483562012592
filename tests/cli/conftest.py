"""Helpers for the CLI tests: run the real ``kubemirror`` command in a subprocess.

Most commands need the watcher and client layers. Until both are on the branch,
the test modules that need them are not collected, and the report header says so.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
import pytest_asyncio


def _missing_layers() -> list[str]:
    missing = []
    for name in ("kubemirror.watcher", "kubemirror.client.transport"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


MISSING_LAYERS = _missing_layers()
_STANDALONE = ["test_workload.py", "test_kv_command.py"]  # need neither watcher nor client
collect_ignore_glob = (
    [f for f in (p.name for p in Path(__file__).parent.glob("test_*.py")) if f not in _STANDALONE]
    if MISSING_LAYERS
    else []
)


def pytest_report_header() -> str | None:
    if not MISSING_LAYERS:
        return None
    return (
        f"tests/cli: {len(collect_ignore_glob)} modules not collected: "
        f"{', '.join(MISSING_LAYERS)} has not landed yet"
    )

KUBECTL = shutil.which("kubectl")
ANSI = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>])")

skip_without_kubectl = pytest.mark.skipif(
    KUBECTL is None and os.environ.get("KUBEMIRROR_REQUIRE_KUBECTL") != "1",
    reason="kubectl is not installed (set KUBEMIRROR_REQUIRE_KUBECTL=1 to fail instead)",
)
"""With ``pytest.mark.kubectl``: skip when kubectl is absent, unless CI requires it."""


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout's ``src`` first, no kubeconfig."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    env.pop("KUBEMIRROR_DEBUG", None)
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubemirror", *args]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(*args: str, within: float = 60.0, **env: str) -> Result:
    """Run ``python -m kubemirror ARGS`` to completion."""
    proc = await asyncio.create_subprocess_exec(
        *cli_command(*args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(**env),
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class Running:
    """A CLI subprocess whose stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line_matching(
        self, predicate: Callable[[str], bool], within: float = 30.0
    ) -> str:
        """Read stdout until a line satisfies ``predicate`` (fails after ``within`` s)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = b""
                    if self.proc.stderr is not None:
                        err = await self.proc.stderr.read()
                    raise AssertionError(
                        f"process ended; stdout so far: {self.lines!r}; stderr: {err.decode()}"
                    )
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if predicate(line):
                    return line

    async def finish(self, within: float = 30.0) -> Result:
        """Wait for the process to exit; returns everything it printed after what was read."""
        async with asyncio.timeout(within):
            out, err = await self.proc.communicate()
        assert self.proc.returncode is not None
        return Result(self.proc.returncode, out.decode(), err.decode())


class Spawn(Protocol):
    async def __call__(self, *args: str, **env: str) -> Running: ...


@pytest_asyncio.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """``await spawn(*args)`` starts the CLI; every process is killed after the test."""
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str, **env: str) -> Running:
        proc = await asyncio.create_subprocess_exec(
            *cli_command(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(**env),
        )
        started.append(proc)
        return Running(proc)

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


def strip_ansi(data: bytes) -> str:
    """Terminal output without escape sequences."""
    return ANSI.sub(b"", data).decode("utf-8", "replace")
