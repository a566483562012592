"""``kubemirror envtest``: find or build the real control plane's binaries, and run it.

Part of the ``cli`` layer. ``setup`` prints progress on stderr and the assets
directory as the last line of stdout, so ``export KUBEBUILDER_ASSETS=$(kubemirror
envtest setup | tail -1)`` works as with controller-runtime's setup-envtest.
``serve`` runs etcd and kube-apiserver until Ctrl-C, SIGTERM or ``--duration`` and
writes a kubeconfig for them; both processes and the work directory are gone when
it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from rich.console import Console

from kubemirror.cli import ui
from kubemirror.envtest import EnvTest, setup_assets

__all__ = ["run_serve", "run_setup"]


def _progress(line: str) -> None:
    print(f"kubemirror envtest: {line}", file=sys.stderr, flush=True)


async def run_setup(*, build: bool) -> int:
    """Print where the binaries are (building them first when needed); returns 0."""
    assets = await asyncio.to_thread(setup_assets, build=build, log=_progress)
    _progress(f"kube-apiserver and etcd from {assets.source}")
    print(assets.directory, flush=True)
    return 0


async def run_serve(target: Path, duration: float | None, console: Console) -> int:
    """Run a real control plane until stopped; the kubeconfig ``target`` (an expanded
    path) is removed on exit."""
    assets = await asyncio.to_thread(setup_assets, log=_progress)
    stop = asyncio.Event()
    ui.install_stop_handlers(stop)
    env = EnvTest(assets)
    async with env:
        env.write_kubeconfig(target)
        console.print(
            f"kube-apiserver {env.url} ready (etcd {env.etcd.client_url}, "
            f"binaries in {assets.directory})",
            highlight=False, soft_wrap=True,
        )
        console.print(f"  export KUBECONFIG={target}", highlight=False, soft_wrap=True)
        console.print(f"  kubectl --kubeconfig {target} get ns", highlight=False, soft_wrap=True)
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(target)
    console.print("stopped", highlight=False)
    return 0
