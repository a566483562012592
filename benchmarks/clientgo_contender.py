"""The ``client-go`` row of run_all: build ``benchmarks/clientgo`` once, run it per round.

The Go program (its own ``go.mod``: client-go v0.37.2, the release of the envtest
kube-apiserver) is built with the ``go`` on PATH into a cache directory named after
a hash of its sources and of ``go version`` (``~/.cache/kubemirror/bench/clientgo-
<hash>/clientgo``, or under ``$KUBEMIRROR_BENCH_CACHE``), so a changed recipe builds
anew and an unchanged one never rebuilds. The build goes to a temporary file that
is renamed into place, so a half-written binary is never run. Only the Go module
proxy is contacted (``go build`` with ``-mod=mod`` resolves the pinned ``go.sum``).

``find_or_build()`` returns the binary, or ``None`` with the reason printed when
``go`` is absent or the build fails: run_all then leaves the row out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("clientgo")
_FILES = ("go.mod", "go.sum", "main.go")


def cache_dir() -> Path:
    root = os.environ.get("KUBEMIRROR_BENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "kubemirror" / "bench"


def find_or_build(log: Any = None) -> Path | None:
    """The built contender, building it when its sources or Go changed; None (reason
    printed on stderr) when ``go`` is missing or the build fails."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    go = shutil.which("go")
    if go is None:
        say("client-go row skipped: no `go` on PATH to build benchmarks/clientgo")
        return None
    version = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for name in _FILES:
        digest.update((SOURCE / name).read_bytes())
    target = cache_dir() / f"clientgo-{digest.hexdigest()[:12]}" / "clientgo"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"building benchmarks/clientgo ({version}) into {target.parent} ...")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-")
    os.close(fd)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    out = subprocess.run([go, "build", "-trimpath", "-o", tmp, "."], cwd=SOURCE, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        os.unlink(tmp)
        say(f"client-go row skipped: go build failed:\n{out.stderr[-2000:]}")
        return None
    os.replace(tmp, target)
    return target


def command(binary: Path, url: str, kubeconfig: str | None, size: int, events: int
            ) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one run against the bench server (``url``,
    JSON, no streaming lists: it serves none) or a real server (``kubeconfig``)."""
    cmd = [str(binary), "-size", str(size), "-events", str(events)]
    env = dict(os.environ)
    if kubeconfig:
        cmd += ["-kubeconfig", kubeconfig]
    else:
        cmd += ["-server", url, "-go-url", url + "/go"]
        env["KUBE_FEATURE_WatchListClient"] = "false"
    return cmd, env


def parse(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result
