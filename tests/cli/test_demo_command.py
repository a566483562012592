"""``kubemirror demo`` run for real: in a pipe, on a pseudo-terminal, and in tmux."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.cli.conftest import cli_command, cli_env, run_cli, strip_ansi

SYNCED = re.compile(r"Synced ([\d,]+) pods in ")


async def test_demo_with_duration_exits_0_and_reports_the_synced_count() -> None:
    result = await run_cli("demo", "--pods", "300", "--churn", "80", "--duration", "2.5")
    assert result.returncode == 0, result.stderr
    match = SYNCED.search(result.stdout)
    assert match is not None, result.stdout
    assert int(match.group(1).replace(",", "")) == 300
    assert "kubectl --server http://127.0.0.1:" in result.stdout
    assert "The mirror matches the server" in result.stdout
    events = re.search(r"then mirrored ([\d,]+) watch events", result.stdout)
    assert events is not None, result.stdout
    assert int(events.group(1).replace(",", "")) > 0, result.stdout


async def test_demo_on_a_busy_port_fails_with_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await run_cli("demo", "--pods", "10", "--port", str(port), "--duration", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "already in use" in lines[0]
    assert "--port" in lines[0]
    assert "Traceback" not in result.stderr


async def test_demo_serves_kubectl_style_clients() -> None:
    """While the demo runs, its server answers a LIST at the URL it printed."""
    import aiohttp

    proc = await asyncio.create_subprocess_exec(
        *cli_command("demo", "--pods", "120", "--churn", "20", "--duration", "20"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            first = (await proc.stdout.readline()).decode()
        url = first.split(" at ")[1].strip()
        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v1/pods") as resp:
            body = await resp.json()
        assert resp.status == 200
        assert len(body["items"]) >= 100
        async with asyncio.timeout(30):  # the mirror's sync line, so SIGINT cannot precede it
            line = b""
            while not line.startswith(b"synced "):
                line = await proc.stdout.readline()
                assert line, "the demo ended before its mirror synced"
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "Synced 120 pods" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


# -- on a terminal ------------------------------------------------------------------------


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 120, 0, 0))
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def _read_until(master: int, needles: list[str], within: float) -> str:
    """Read the terminal until every needle appeared in the (escape-free) output."""
    deadline = time.monotonic() + within
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            text = strip_ansi(data)
            if all(n in text for n in needles):
                return text
    raise AssertionError(f"terminal never showed {needles!r}; got:\n{strip_ansi(data)[-3000:]}")


def test_demo_on_a_terminal_shows_progress_then_the_stats_table(
    pty_pair: tuple[int, int],
) -> None:
    """On a (pseudo) terminal: the sync bar, the stats table, the namespace index table;
    Ctrl-C (SIGINT, as the terminal sends it) ends it cleanly with the summary."""
    master, slave = pty_pair
    env = cli_env(TERM="xterm-256color")
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        cli_command("demo", "--pods", "400", "--churn", "50"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    try:
        screen = _read_until(
            master,
            [
                "Initial sync of pods",
                "400 pods in",
                "store size",
                "changes since sync",
                "watch events/s",
                "write→mirror latency",
                "Pods per namespace",
                "kubectl --server http://127.0.0.1:",
            ],
            within=40,
        )
        assert "Traceback" not in screen
        proc.send_signal(signal.SIGINT)
        tail = _read_until(master, ["The mirror matches the server"], within=30)
        assert re.search(r"Synced 400 pods in", tail)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


TMUX = shutil.which("tmux")


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
def test_demo_screen_in_tmux() -> None:
    """The real screen, as tmux renders it: progress bar and tables in place; Ctrl-C keys exit."""
    assert TMUX is not None
    socket_name = f"kubemirror-test-{uuid.uuid4().hex[:8]}"
    env = cli_env(TERM="xterm-256color")
    env.pop("COLUMNS", None)
    command = " ".join(cli_command("demo", "--pods", "500", "--churn", "50"))
    base = [TMUX, "-L", socket_name, "-f", "/dev/null"]
    subprocess.run(
        [*base, "new-session", "-d", "-s", "demo", "-x", "120", "-y", "45",
         f"{command}; echo EXIT=$?; sleep 60"],
        check=True,
        env=env,
    )  # fmt: skip

    def screen() -> str:
        out = subprocess.run(
            [*base, "capture-pane", "-p", "-t", "demo"], capture_output=True, check=True
        )
        return out.stdout.decode()

    def wait_for(needles: list[str], within: float) -> str:
        deadline = time.monotonic() + within
        text = ""
        while time.monotonic() < deadline:
            text = screen()
            if all(n in text for n in needles):
                return text
            time.sleep(0.2)
        raise AssertionError(f"screen never showed {needles!r}:\n{text}")

    try:
        shown = wait_for(["✔ Initial sync of pods", "500 pods in", "Pods per namespace"], 40)
        lines = shown.splitlines()
        bar = next(line for line in lines if "Initial sync of pods" in line)
        assert "━" in bar
        assert any(line.startswith("store size") for line in lines)
        assert any(line.startswith("watch events/s") for line in lines)
        subprocess.run([*base, "send-keys", "-t", "demo", "C-c"], check=True)
        final = wait_for(["EXIT="], 30)
        assert "EXIT=0" in final, final
        assert "The mirror matches the server" in final
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True)
