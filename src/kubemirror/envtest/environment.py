"""``EnvTest``: a real etcd and a real kube-apiserver on loopback, for tests and demos.

Part of the ``envtest`` layer. What controller-runtime's envtest gives Go users: the
genuine control plane (no controllers, no kubelet), started in seconds, with

- etcd on free 127.0.0.1 ports (``kvstore.EtcdServer`` with the pinned etcd binary);
- kube-apiserver on a free 127.0.0.1 port with a generated CA and serving
  certificate, client-certificate authentication (the admin user is in
  ``system:masters``), a static bearer token for the same admin, service-account
  signing keys (so the TokenRequest API issues real tokens), and RBAC authorization;
- the ``ServiceAccount`` admission plugin off, as in envtest: no controller-manager
  creates the ``default`` service account that it would require of every pod.

Everything lives in one work directory (certificates, data, logs) removed on
``stop()``; both processes are killed with their process groups, so nothing
outlives the environment. ``kill_apiserver``/``restart_apiserver`` and
``kill_etcd``/``restart_etcd`` crash and revive one component on the same ports and
data, which is how fault tests produce a real outage.

Blocking methods wait for the processes; the ``a``-prefixed twins and ``async with``
run them in a worker thread so an event loop keeps serving. Not thread-safe.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kubemirror import errors, lifecycle
from kubemirror.client.config import ClientConfig, make_ssl_context
from kubemirror.envtest.assets import Assets, setup_assets
from kubemirror.envtest.pki import CertificateAuthority, service_account_key_pair
from kubemirror.kvstore.etcd_server import EtcdServer, free_port

__all__ = ["ADMIN_USER", "EnvTest"]

ADMIN_USER = "kubemirror-admin"
"""The admin user's name; it is in the ``system:masters`` group."""

_HOST = "127.0.0.1"
_SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class EnvTest(lifecycle.BlockingService):
    """A real control plane (etcd + kube-apiserver) in child processes on 127.0.0.1.

    ``assets`` defaults to ``setup_assets(build=build)``: ``$KUBEBUILDER_ASSETS``,
    then the cache, then (``build=True``) a Go build. ``apiserver_args`` are added
    to (and may override, being later) kube-apiserver's flags, e.g.
    ``("--watch-cache=false",)``. ``work_dir`` defaults to a new temporary
    directory, removed by ``stop()``.

    Raises ``CommandError`` when no binaries can be had, or with the end of the
    component's log when it does not become ready within ``start_timeout`` seconds
    (``KVStoreError`` for etcd).
    """

    def __init__(
        self,
        assets: Assets | None = None,
        *,
        apiserver_args: Sequence[str] = (),
        work_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 90.0,
        build: bool = True,
    ) -> None:
        self.assets = assets or setup_assets(build=build)
        self.apiserver_args = tuple(apiserver_args)
        self.start_timeout = start_timeout
        self._owns_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(
            tempfile.mkdtemp(prefix="kubemirror-envtest-")
        )
        self.pki_dir = self.work_dir / "pki"
        self.apiserver_log = self.work_dir / "kube-apiserver.log"
        self.secure_port = free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.etcd = EtcdServer(
            self.work_dir / "etcd",
            binary=str(self.assets.etcd),
            # kube-apiserver's defaults are tuned for real disks; a test member elects
            # itself at once but must not lose leadership under a loaded CI machine.
            heartbeat_interval_ms=50,
            election_timeout_ms=500,
            start_timeout=start_timeout,
            extra_args=("--unsafe-no-fsync",),
        )
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # -- addresses and credentials ------------------------------------------------

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>`` of kube-apiserver."""
        return f"https://{_HOST}:{self.secure_port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the serving and client certificates."""
        return self.pki_dir / "ca.crt"

    @property
    def admin_cert_file(self) -> Path:
        return self.pki_dir / "admin.crt"

    @property
    def admin_key_file(self) -> Path:
        return self.pki_dir / "admin.key"

    @property
    def kubeconfig_path(self) -> Path:
        """A kubeconfig for the admin (client certificate), written by ``start()``.

        It also has a context ``envtest-token`` that uses the admin's bearer token.
        """
        return self.work_dir / "kubeconfig"

    @property
    def client_config(self) -> ClientConfig:
        """The admin's ``ClientConfig`` (client certificate over verified TLS)."""
        return ClientConfig(
            self.url,
            ssl_context=self.ssl_context(client_cert=True),
            context_name="envtest",
        )

    def ssl_context(self, *, client_cert: bool = False) -> ssl.SSLContext:
        """An ``SSLContext`` trusting this server's CA, with the admin's certificate
        when ``client_cert``."""
        return make_ssl_context(
            ca_file=self.ca_file,
            cert_file=self.admin_cert_file if client_cert else None,
            key_file=self.admin_key_file if client_cert else None,
        )

    def token_client_config(self, token: str) -> ClientConfig:
        """A ``ClientConfig`` that authenticates with a bearer ``token`` only."""
        header = f"Bearer {token}"

        async def auth() -> str:
            return header

        return ClientConfig(self.url, ssl_context=self.ssl_context(), auth=auth)

    def kubeconfig(self, *, token: str | None = None) -> dict[str, Any]:
        """The kubeconfig document: the admin's client certificate, or ``token``."""
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        if token is None:
            user: dict[str, str] = {
                "client-certificate-data": base64.b64encode(
                    self.admin_cert_file.read_bytes()).decode(),
                "client-key-data": base64.b64encode(self.admin_key_file.read_bytes()).decode(),
            }
        else:
            user = {"token": token}
        users = [{"name": "envtest-admin", "user": user}]
        contexts = [{"name": "envtest",
                     "context": {"cluster": "envtest", "user": "envtest-admin"}}]
        if token is None:
            users.append({"name": "envtest-token", "user": {"token": self.admin_token}})
            contexts.append({"name": "envtest-token",
                             "context": {"cluster": "envtest", "user": "envtest-token"}})
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": self.url, "certificate-authority-data": ca}}],
            "users": users,
            "contexts": contexts,
            "current-context": "envtest",
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], *, token: str | None = None) -> Path:
        """Write ``kubeconfig(token=token)`` to ``path`` (mode 0600); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.kubeconfig(token=token), fh, sort_keys=False)
        return target

    # -- lifecycle ---------------------------------------------------------------

    def _prepare(self) -> None:
        if self._prepared:
            return
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority()
        (self.pki_dir / "ca.crt").write_bytes(ca.cert_pem)
        ca.serving_pair().write(self.pki_dir, "serving")
        ca.client_pair(ADMIN_USER, groups=("system:masters",)).write(self.pki_dir, "admin")
        service_account_key_pair().write(self.pki_dir, "service-account")
        tokens = self.pki_dir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        self.write_kubeconfig(self.kubeconfig_path)
        self._prepared = True

    def _apiserver_command(self) -> list[str]:
        pki = self.pki_dir
        return [
            str(self.assets.kube_apiserver),
            f"--etcd-servers={self.etcd.client_url}",
            f"--bind-address={_HOST}",
            f"--advertise-address={_HOST}",
            f"--secure-port={self.secure_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-issuer={_SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.crt'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # the "kubernetes" Service's endpoints would need a non-loopback address
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false",
            *self.apiserver_args,
        ]

    def start(self) -> None:
        """Start etcd, then kube-apiserver; return once ``/readyz`` answers 200."""
        try:
            self._prepare()
            self.etcd.start()
            self._start_apiserver()
        except BaseException:
            self.stop()
            raise

    def _start_apiserver(self) -> None:
        if self.apiserver_running:
            return
        deadline = time.monotonic() + self.start_timeout
        while True:
            offset = self.apiserver_log.stat().st_size if self.apiserver_log.exists() else 0
            with open(self.apiserver_log, "ab") as log:
                self._apiserver = subprocess.Popen(
                    self._apiserver_command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            try:
                self._wait_ready(deadline)
                return
            except errors.CommandError:
                # A port freed by a SIGKILL may still be held for a moment.
                busy = "address already in use" in self._log_since(offset)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _wait_ready(self, deadline: float) -> None:
        context = self.ssl_context(client_cert=True)
        delay = 0.05
        while True:
            proc = self._apiserver
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._apiserver = None
                raise errors.CommandError(
                    f"kube-apiserver exited with code {code} during start:\n{self.log_tail(8)}",
                    hint=f"its log is {self.apiserver_log}",
                )
            if self._ready(context):
                return
            if time.monotonic() > deadline:
                self.kill_apiserver()
                raise errors.CommandError(
                    f"kube-apiserver not ready after {self.start_timeout:.0f} s:\n"
                    f"{self.log_tail(8)}",
                    hint=f"its log is {self.apiserver_log}",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _ready(self, context: ssl.SSLContext) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2.0,
                                        context=context) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    @property
    def apiserver_running(self) -> bool:
        """True while the kube-apiserver process is alive."""
        return self._apiserver is not None and self._apiserver.poll() is None

    def kill_apiserver(self) -> None:
        """Crash kube-apiserver (SIGKILL to its process group); etcd keeps running."""
        proc, self._apiserver = self._apiserver, None
        if proc is not None:
            _kill_group(proc, signal.SIGKILL)

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver if running and start it again on the same port."""
        self.kill_apiserver()
        self._start_apiserver()

    def kill_etcd(self) -> None:
        """Crash etcd (SIGKILL); its data stays, kube-apiserver keeps running."""
        self.etcd.kill()

    def restart_etcd(self) -> None:
        """Start etcd again on the same data directory and ports."""
        self.etcd.restart()

    def stop(self) -> None:
        """Stop kube-apiserver (SIGTERM, then SIGKILL), then etcd; remove the work
        directory if this object created it. Safe to call twice."""
        proc, self._apiserver = self._apiserver, None
        if proc is not None:
            _kill_group(proc, signal.SIGTERM)
        self.etcd.stop(grace=5.0)
        if self._owns_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _log_since(self, offset: int) -> str:
        with contextlib.suppress(OSError), open(self.apiserver_log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
        return ""

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of kube-apiserver's log (for error messages)."""
        with contextlib.suppress(OSError):
            text = self.apiserver_log.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    # -- asyncio twins (astart, astop, with and async with: BlockingService) ----

    async def arestart_apiserver(self) -> None:
        """``restart_apiserver()`` without blocking the event loop."""
        await asyncio.to_thread(self.restart_apiserver)

    async def arestart_etcd(self) -> None:
        """``restart_etcd()`` without blocking the event loop."""
        await asyncio.to_thread(self.restart_etcd)

    def __repr__(self) -> str:
        state = "running" if self.apiserver_running else "stopped"
        return f"EnvTest({self.url}, {state}, etcd={self.etcd.endpoint})"


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals, grace: float = 15.0) -> None:
    """Signal the process group of ``proc`` and reap it (SIGKILL after ``grace`` s)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
