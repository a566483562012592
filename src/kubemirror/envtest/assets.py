"""Where the real ``kube-apiserver`` and ``etcd`` binaries come from.

Part of the ``envtest`` layer. The envtest convention of controller-runtime: an
*assets directory* holds ``kube-apiserver``, ``etcd`` and optionally ``kubectl``.
``find_assets`` looks, in order, at

1. ``$KUBEBUILDER_ASSETS`` (an error naming what is missing if it is set but
   incomplete: a user who set it meant it);
2. the cache, ``$KUBEMIRROR_ENVTEST_CACHE`` or ``~/.cache/kubemirror/envtest``, in a
   directory named after the pinned releases and a hash of the build recipe
   (``k8s-v1.37.2-etcd-v3.7.0-1a2b3c4d``: a new ``go.sum`` or new flags build anew);

and ``setup_assets`` builds into the cache with ``go`` when both miss. The Go module
that pins the releases ships inside this package (``gobuild/``: ``go.mod``/``go.sum``
pin ``k8s.io/kubernetes`` and every staging module, ``etcd/main.go`` is etcd's own
``etcdmain.Main``), so only the Go module proxy is contacted and every build of one
kubemirror release gives the same binaries. kube-apiserver is stamped with its
release as the Kubernetes release build does (``-X k8s.io/component-base/version...``),
so ``/version`` and ``kubectl version`` report ``v1.37.2``. A build goes to a temporary directory
beside the cache entry and is renamed into place, under a file lock, so concurrent
builds (two pytest runs) never see half-written binaries.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kubemirror import errors

__all__ = [
    "ASSETS_ENV",
    "Assets",
    "GO_MODULE_DIR",
    "PinnedVersions",
    "cache_root",
    "find_assets",
    "pinned_versions",
    "setup_assets",
]

ASSETS_ENV = "KUBEBUILDER_ASSETS"
"""The envtest convention's variable naming an assets directory."""

CACHE_ENV = "KUBEMIRROR_ENVTEST_CACHE"
"""Overrides the cache root (default ``~/.cache/kubemirror/envtest``)."""

GO_MODULE_DIR = Path(__file__).with_name("gobuild")
"""The Go module that pins and builds the binaries."""

_REQUIRED = ("kube-apiserver", "etcd")


@dataclass(frozen=True, slots=True)
class PinnedVersions:
    """The releases the shipped Go module builds."""

    kubernetes: str
    etcd: str

    @property
    def cache_key(self) -> str:
        """The cache directory's name, e.g. ``k8s-v1.37.2-etcd-v3.7.0-1a2b3c4d``: the
        releases and a hash of the build recipe (module files and flags)."""
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum", "etcd/main.go"):
            digest.update((GO_MODULE_DIR / name).read_bytes())
        digest.update(" ".join(_version_ldflags(self.kubernetes)).encode())
        return f"k8s-{self.kubernetes}-etcd-{self.etcd}-{digest.hexdigest()[:8]}"


def _version_ldflags(release: str) -> list[str]:
    """``-X`` flags stamping ``release`` into kube-apiserver, as Kubernetes' own build
    does (a fixed build date keeps the build reproducible)."""
    major, minor = release.removeprefix("v").split(".")[:2]
    values = {"gitVersion": release, "gitMajor": major, "gitMinor": minor,
              "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z"}
    return [f"-X {package}.{name}={value}"
            for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for name, value in values.items()]


@dataclass(frozen=True, slots=True)
class Assets:
    """An assets directory with the paths of its binaries."""

    directory: Path
    source: str
    """How it was found: ``KUBEBUILDER_ASSETS``, ``cache`` or ``built``."""

    @property
    def kube_apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    @property
    def kubectl(self) -> Path | None:
        """``kubectl`` in the directory, else on ``PATH``, else None."""
        own = self.directory / "kubectl"
        if _is_executable(own):
            return own
        found = shutil.which("kubectl")
        return Path(found) if found else None


def pinned_versions() -> PinnedVersions:
    """Read the pinned releases from the shipped ``go.mod``."""
    text = (GO_MODULE_DIR / "go.mod").read_text(encoding="utf-8")
    kube = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", text, re.MULTILINE)
    etcd = re.search(r"^\s*go\.etcd\.io/etcd/server/v3 (v\S+)", text, re.MULTILINE)
    if kube is None or etcd is None:  # pragma: no cover - the shipped file has both
        raise errors.ConfigError("go.mod pins no kubernetes/etcd release", field="go.mod")
    return PinnedVersions(kube.group(1), etcd.group(1))


def cache_root() -> Path:
    """``$KUBEMIRROR_ENVTEST_CACHE``, else ``$XDG_CACHE_HOME/kubemirror/envtest``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubemirror" / "envtest"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _missing(directory: Path) -> list[str]:
    return [name for name in _REQUIRED if not _is_executable(directory / name)]


def find_assets() -> Assets | None:
    """The assets directory from ``$KUBEBUILDER_ASSETS`` or the cache, or None.

    Raises ``ConfigError`` when ``$KUBEBUILDER_ASSETS`` is set but lacks a binary.
    """
    named = os.environ.get(ASSETS_ENV)
    if named:
        directory = Path(named).expanduser()
        missing = _missing(directory)
        if missing:
            raise errors.ConfigError(
                f"names a directory without {' and '.join(missing)} (unset it to use "
                "kubemirror's cache, or put the binaries there)",
                field=ASSETS_ENV,
                expression=str(directory),
            )
        return Assets(directory, ASSETS_ENV)
    cached = cache_root() / pinned_versions().cache_key
    if not _missing(cached):
        return Assets(cached, "cache")
    return None


def setup_assets(*, build: bool = True, log: Callable[[str], None] | None = None) -> Assets:
    """Find the binaries, else build them with Go into the cache (first time only).

    ``log`` receives progress lines (the build takes minutes). Raises
    ``CommandError`` with the fix when nothing is found and no build is possible,
    or naming the failing step with the end of Go's output when the build fails.
    """
    found = find_assets()
    if found is not None:
        return found
    versions = pinned_versions()
    target = cache_root() / versions.cache_key
    go = shutil.which("go")
    if not build or go is None:
        raise errors.CommandError(
            f"no kube-apiserver/etcd binaries: {ASSETS_ENV} is unset and {target} is empty",
            hint=(
                f"Set {ASSETS_ENV} to a directory holding kube-apiserver and etcd, or install "
                "Go (1.26+) and run `kubemirror envtest setup` to build them"
            ),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{versions.cache_key}.lock"):
        if not _missing(target):  # built by someone else while we waited
            return Assets(target, "cache")
        _build(go, versions, target, log or (lambda _line: None))
    return Assets(target, "built")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(go: str, versions: PinnedVersions, target: Path, log: Callable[[str], None]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{versions.cache_key}-", dir=target.parent))
    try:
        steps = (
            ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", versions.kubernetes,
             " ".join(_version_ldflags(versions.kubernetes))),
            ("etcd", "./etcd", versions.etcd, ""),
        )
        for name, package, version, ldflags in steps:
            log(f"building {name} {version} with {_go_version(go)} (first time only)")
            started = time.monotonic()
            command = [go, "build", "-trimpath", "-buildvcs=false", "-mod=readonly",
                       f"-ldflags={ldflags}", "-o", str(staging / name), package]
            proc = subprocess.run(
                command,
                cwd=GO_MODULE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stdout.decode(errors="replace").splitlines()[-15:])
                raise errors.CommandError(
                    f"go build of {name} failed (exit {proc.returncode}): {tail}",
                    hint="Check that the Go module proxy is reachable (GOPROXY) and Go is 1.26+",
                )
            log(f"built {name} in {time.monotonic() - started:.0f} s")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _go_version(go: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
        if out.stdout.strip():
            return out.stdout.strip()
    return "go"
