"""A throw-away etcd member process for tests, demos and benchmarks.

Part of the kvstore layer. ``EtcdServer`` starts the ``etcd`` binary on 127.0.0.1
with free non-default ports, a private data directory and fast raft timings, waits
until ``GET /health`` (on a plain-HTTP metrics listener) reports healthy, and can
``kill()`` (SIGKILL) and ``restart()`` it on the same data directory and ports, which
is how the fault tests produce a crashed server. Alone it is a single-member
cluster; ``EtcdCluster`` (``etcd_cluster.py``) makes several of them one cluster. The
client listener can serve TLS with client-certificate auth (``EtcdServerTLS``). It is
a plain process helper: no etcd client is needed.
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
from dataclasses import dataclass
from pathlib import Path

from kubemirror import errors, lifecycle

__all__ = ["EtcdServer", "EtcdServerTLS", "find_etcd_binary", "free_port"]

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


@dataclass(frozen=True, slots=True)
class EtcdServerTLS:
    """PEM files for a member's TLS client listener (``https://``).

    With ``client_cert_auth`` the member accepts only clients presenting a
    certificate signed by ``ca_file`` (etcd's ``--client-cert-auth``).
    """

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_auth: bool = True


class EtcdServer(lifecycle.BlockingService):
    """One etcd member in a child process, bound to 127.0.0.1 only.

    ``work_dir`` holds ``data/`` (the member's data directory) and ``etcd.log``; a
    temporary directory is created (and removed by ``cleanup()``) when it is None.
    Ports are picked once and kept across ``restart()``. The server is configured with
    ``--heartbeat-interval 10 --election-timeout 100`` so that it elects itself within
    a fraction of a second. ``name`` and ``initial_cluster`` (``name=peer-url,...``;
    by default this member alone) make it a member of a larger cluster; ``tls``
    serves the client port over TLS. Health and metrics are always served over
    plain HTTP on ``metrics_port``.

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
        name: str = "kubemirror",
        initial_cluster: str | None = None,
        tls: EtcdServerTLS | None = None,
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
        self.metrics_port = self._other_free_port()
        self.name = name
        self.initial_cluster = initial_cluster
        self.tls = tls
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.election_timeout_ms = election_timeout_ms
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def _other_free_port(self) -> int:
        port = free_port()
        while port in (self.client_port, self.peer_port):
            port = free_port()
        return port

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
        """``http://127.0.0.1:<client port>`` (``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        """``http://127.0.0.1:<peer port>``, this member's address for its peers."""
        return f"http://{_HOST}:{self.peer_port}"

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:<metrics port>``: ``/health`` and ``/metrics``, no TLS."""
        return f"http://{_HOST}:{self.metrics_port}"

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
        tls_args: list[str] = []
        if self.tls is not None:
            tls_args = [
                "--trusted-ca-file", self.tls.ca_file,
                "--cert-file", self.tls.cert_file,
                "--key-file", self.tls.key_file,
                *(["--client-cert-auth"] if self.tls.client_cert_auth else []),
            ]
        return [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state", "new",
            "--listen-metrics-urls", self.metrics_url,
            "--heartbeat-interval", str(self.heartbeat_interval_ms),
            "--election-timeout", str(self.election_timeout_ms),
            "--logger", "zap",
            "--log-outputs", "stderr",
            *tls_args,
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
                self.metrics_port = self._other_free_port()

    def _start_once(self) -> None:
        self.spawn()
        self._wait_healthy()

    def spawn(self) -> None:
        """Start the process without waiting for it to be healthy (no-op while running).

        A member of a new multi-member cluster is healthy only once a quorum runs, so
        ``EtcdCluster`` spawns every member first, then calls ``wait_healthy()``.
        """
        if self.running:
            return
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

    def wait_healthy(self) -> None:
        """Block until ``healthy()`` (``KVStoreError`` with the log tail on timeout or exit)."""
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
            with urllib.request.urlopen(f"{self.metrics_url}/health", timeout=1.0) as resp:
                body = json.loads(resp.read() or b"{}")
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def is_leader(self) -> bool:
        """True if this member is the raft leader right now (from ``/metrics``)."""
        try:
            with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=1.0) as resp:
                text = resp.read().decode()
        except (OSError, urllib.error.URLError):
            return False
        return "\netcd_server_is_leader 1" in text

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the running process has used (Linux ``/proc``)."""
        pid = self.pid
        if pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

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
            proc.kill()  # SIGKILL also ends a paused (SIGSTOPped) process
        proc.wait()
        self._reap()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers.

        This is how tests produce a partitioned member; ``resume()`` thaws it.
        """
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a ``pause()``d process (SIGCONT)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

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

    def close(self) -> None:
        """What leaving ``with``/``async with`` does: ``cleanup()``."""
        self.cleanup()

    async def astop(self, grace: float = 10.0) -> None:
        """``stop()`` without blocking the event loop."""
        await asyncio.to_thread(self.stop, grace)

    async def arestart(self) -> None:
        """``restart()`` without blocking the event loop."""
        await asyncio.to_thread(self.restart)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EtcdServer({self.endpoint}, {state}, data_dir={str(self.data_dir)!r})"
