"""A throw-away PostgreSQL server for tests and benchmarks (testing layer).

``PostgresServer`` runs ``initdb`` into a temporary directory and starts the
distribution's ``postgres`` on a free 127.0.0.1 port, with durability off
(``fsync``, ``synchronous_commit``) because the data dies with the test. The
binaries come from ``$KUBEMIRROR_POSTGRES_BIN`` or the newest
``/usr/lib/postgresql/<major>/bin`` (Debian's layout), else ``PATH``.
PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
system user (Debian's package creates it) through ``runuser``. Blocking calls,
meant for fixtures; not thread-safe. Imports no pytest and no driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from kubemirror import errors

__all__ = ["POSTGRES_BIN_ENV", "REQUIRE_POSTGRES_ENV", "PostgresServer", "find_postgres_bin"]

POSTGRES_BIN_ENV = "KUBEMIRROR_POSTGRES_BIN"
"""A directory holding ``initdb`` and ``postgres``; overrides the search."""

REQUIRE_POSTGRES_ENV = "KUBEMIRROR_REQUIRE_POSTGRES"
"""Set to ``1`` to fail, not skip, tests that need PostgreSQL when it is absent."""

_SYSTEM_USER = "postgres"


def find_postgres_bin() -> Path | None:
    """The directory with ``initdb`` and ``postgres``, or ``None`` when not installed."""
    configured = os.environ.get(POSTGRES_BIN_ENV)
    if configured:
        return Path(configured)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted(
            (p for p in debian.iterdir() if p.name.isdigit() and (p / "bin/initdb").exists()),
            key=lambda p: int(p.name),
        )
        if majors:
            return majors[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One temporary PostgreSQL cluster; ``start()`` / ``stop()`` or ``with``.

    ``dsn`` (``postgresql://kubemirror@127.0.0.1:<port>/postgres``, trust auth on
    loopback only) is valid between ``start`` and ``stop``. ``kill()`` ends the
    server without a shutdown (SIGKILL) for fault tests. ``stop`` removes the
    data directory. Raises ``ConfigError`` when the binaries or the ``postgres``
    user (needed as root) are missing, ``CommandError`` when the server fails.
    """

    def __init__(self, bin_dir: Path | None = None, *, startup_timeout: float = 30.0) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None or not (found / "initdb").exists():
            raise errors.ConfigError(
                "no PostgreSQL binaries found (install Debian's postgresql package or set "
                f"${POSTGRES_BIN_ENV})",
                field=POSTGRES_BIN_ENV,
            )
        self.bin_dir = found
        self.startup_timeout = startup_timeout
        self.port = 0
        self.user = "kubemirror"
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """The connection string of the running server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        if shutil.which("runuser") is None:
            raise errors.ConfigError("running as root needs runuser", field="runuser")
        return ["runuser", "-u", _SYSTEM_USER, "--", *argv]

    def start(self) -> Self:
        """initdb a fresh cluster and start the server; returns once it accepts connections."""
        root = Path(tempfile.mkdtemp(prefix="kubemirror-pg-"))
        self._dir = root
        data = root / "data"
        if os.geteuid() == 0:
            try:
                shutil.chown(root, _SYSTEM_USER, _SYSTEM_USER)
            except LookupError as exc:
                raise errors.ConfigError(
                    f"PostgreSQL refuses root and there is no {_SYSTEM_USER!r} user",
                    field="user",
                ) from exc
        initdb = subprocess.run(
            self._as_owner(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            check=False,
        )
        if initdb.returncode != 0:
            raise errors.CommandError(
                f"initdb failed (exit {initdb.returncode})",
                initdb.stderr.decode(errors="replace")[-2000:],
            )
        self.port = _free_port()
        log = open(root / "postgres.log", "wb")  # noqa: SIM115 - lives as long as the server
        try:
            self._process = subprocess.Popen(
                self._as_owner(
                    [
                        str(self.bin_dir / "postgres"),
                        "-D",
                        str(data),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.port),
                        "-k",
                        str(root),
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=200",
                    ]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            process = self._process
            if process is not None and process.poll() is not None:
                raise errors.CommandError(
                    f"postgres exited ({process.returncode})", self.log_tail()
                )
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5
            ):
                ready = subprocess.run(
                    [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    capture_output=True,
                    check=False,
                )
                if ready.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise errors.CommandError("postgres was not ready in time", self.log_tail())
            time.sleep(0.05)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's log (for error messages)."""
        if self._dir is None:
            return ""
        try:
            return (self._dir / "postgres.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server (no shutdown; the data directory stays until ``stop``)."""
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the data directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
