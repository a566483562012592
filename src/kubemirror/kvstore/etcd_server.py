"""A throw-away single-member etcd server process for tests, demos and benchmarks.

Part of the kvstore layer. ``EtcdServer`` starts the ``etcd`` binary on 127.0.0.1
with free non-default ports, a private data directory and fast raft timings, waits
until ``GET /health`` reports healthy, and can ``kill()`` (SIGKILL) and ``restart()``
it on the same data directory and ports, which is how the fault tests produce a
crashed server. It is a plain process helper: no etcd client is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from kubemirror import errors

__all__ = ["EtcdServer", "find_etcd_binary", "free_port"]

_HOST = "127.0.0.1"


def find_etcd_binary(name: str = "etcd") -> str | None:
    """Return the path of the ``etcd`` executable, or None: ``$KUBEMIRROR_ETCD`` (used
    alone when set), then ``$KUBEBUILDER_ASSETS/etcd`` (the envtest convention, as
    ``kubemirror envtest setup`` prints it), then ``PATH``."""
    override = os.environ.get("KUBEMIRROR_ETCD")
    if override:
        return override if os.access(override, os.X_OK) else None
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidate = os.path.join(assets, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class EtcdServer:
    """One etcd member in a child process, bound to 127.0.0.1 only.

    ``work_dir`` holds ``data/`` (the member's data directory) and ``etcd.log``; a
    temporary directory is created (and removed by ``cleanup()``) when it is None.
    Ports are picked once and kept across ``restart()``. The server is configured with
    ``--heartbeat-interval 10 --election-timeout 100`` so that it elects itself within
    a fraction of a second.

    The blocking methods (``start``, ``stop``, ``restart``) wait for the process and
    its health endpoint; their ``a``-prefixed twins run them in a worker thread so an
    event loop keeps serving while etcd starts. Not thread-safe: drive one instance
    from one thread (or one event loop) at a time.

    Raises ``KVStoreError`` when the binary is missing or the server does not become
    healthy within ``start_timeout`` seconds (the message ends with the log tail).
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        binary: str | None = None,
        client_port: int | None = None,
        peer_port: int | None = None,
        heartbeat_interval_ms: int = 10,
        election_timeout_ms: int = 100,
        start_timeout: float = 15.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        found = binary or find_etcd_binary()
        if found is None:
            raise errors.KVStoreError(
                "etcd binary not found (install etcd-server or set KUBEMIRROR_ETCD)"
            )
        self.binary = found
        self._owns_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(
            tempfile.mkdtemp(prefix="kubemirror-etcd-")
        )
        self.data_dir = self.work_dir / "data"
        self.log_path = self.work_dir / "etcd.log"
        self._auto_ports = client_port is None and peer_port is None
        self._ever_started = False
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.election_timeout_ms = election_timeout_ms
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- addresses -------------------------------------------------------------

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return _HOST

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client URL, as ``EtcdBackend`` takes it."""
        return f"{_HOST}:{self.client_port}"

    @property
    def client_url(self) -> str:
        """``http://127.0.0.1:<client port>``."""
        return f"http://{self.endpoint}"

    @property
    def pid(self) -> int | None:
        """The process id while running, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive (healthy or not)."""
        return self.pid is not None

    # -- lifecycle -------------------------------------------------------------

    def _command(self) -> list[str]:
        peer_url = f"http://{_HOST}:{self.peer_port}"
        return [
            self.binary,
            "--name", "kubemirror",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"kubemirror={peer_url}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(self.heartbeat_interval_ms),
            "--election-timeout", str(self.election_timeout_ms),
            "--logger", "zap",
            "--log-outputs", "stderr",
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start the process (no-op while running) and wait until it is healthy.

        On the very first start with automatically chosen ports, a port taken by
        someone else in the meantime is replaced by a new free one (three tries).
        """
        if self.running:
            return
        for attempt in range(3):
            try:
                self._start_once()
                self._ever_started = True
                return
            except errors.KVStoreError:
                retry = (
                    self._auto_ports
                    and not self._ever_started
                    and attempt < 2
                    and "address already in use" in self._log_of_last_start()
                )
                if not retry:
                    raise
                self.client_port, self.peer_port = free_port(), free_port()

    def _start_once(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.02
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._reap()
                raise errors.KVStoreError(
                    f"etcd exited with code {code} during start:\n{self.log_tail()}"
                )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise errors.KVStoreError(
                    f"etcd not healthy after {self.start_timeout}s:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def healthy(self) -> bool:
        """True if ``GET /health`` answers ``{"health": "true"}`` right now."""
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1.0) as resp:
                body = json.loads(resp.read() or b"{}")
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def stop(self, grace: float = 10.0) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``grace`` s); no-op if stopped."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """Crash the server: SIGKILL, then reap the process. Data stays on disk."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._reap()

    def restart(self) -> None:
        """Start again on the same data directory and ports (kill first if running)."""
        self.kill()
        self._start_retrying_bind()

    def _start_retrying_bind(self) -> None:
        # The kernel may keep the old listening port for a moment after SIGKILL.
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self.start()
                return
            except errors.KVStoreError:
                busy = "address already in use" in self._log_of_last_start()
                if time.monotonic() > deadline or not busy:
                    raise
                time.sleep(0.1)

    def _reap(self) -> None:
        self._proc = None

    def cleanup(self) -> None:
        """Kill the server and remove ``work_dir`` if this object created it."""
        self.kill()
        if self._owns_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _log_of_last_start(self) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")
        return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of ``etcd.log`` (for error messages)."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    # -- asyncio twins ---------------------------------------------------------

    async def astart(self) -> None:
        """``start()`` without blocking the event loop."""
        await asyncio.to_thread(self.start)

    async def astop(self, grace: float = 10.0) -> None:
        """``stop()`` without blocking the event loop."""
        await asyncio.to_thread(self.stop, grace)

    async def arestart(self) -> None:
        """``restart()`` without blocking the event loop."""
        await asyncio.to_thread(self.restart)

    # -- context managers ------------------------------------------------------

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    async def __aenter__(self) -> EtcdServer:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.cleanup)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EtcdServer({self.endpoint}, {state}, data_dir={str(self.data_dir)!r})"
