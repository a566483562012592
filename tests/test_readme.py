"""Every fenced Python block of README.md runs, as written, as a script (or, for a block
of pytest tests, under pytest), so the README cannot rot.

Blocks that call ``load_config()`` run against ``kubemirror demo --write-kubeconfig``
with ``KUBECONFIG`` set, as the README tells readers to; a block that starts a real
control plane or etcd needs those binaries (skipped with the reason, or failed under
``KUBEMIRROR_REQUIRE_REAL_APISERVER``/``KUBEMIRROR_REQUIRE_ETCD``, like the tests of
those parts).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kvstore.conftest import _require_etcd

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^#+ (.+)$", re.M)


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced Python block: the heading it sits under and its code."""

    heading: str
    line: int
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{slug}-L{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """The Python blocks of ``text`` in order, each with its nearest heading above it."""
    headings = [(m.start(), m.group(1)) for m in _HEADING.finditer(text)]
    blocks = []
    for match in _FENCE.finditer(text):
        above = [title for start, title in headings if start < match.start()]
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(above[-1] if above else "top", line, match.group(1)))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 6
    assert readme_blocks("# A\n```python\nx = 1\n```\n## B\n```python\ny = 2\n```\n") == [
        Block("A", 2, "x = 1\n"),
        Block("B", 6, "y = 2\n"),
    ]


@pytest.fixture(scope="module")
def demo_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``kubemirror demo --write-kubeconfig`` in a child process, until the module ends."""
    path = tmp_path_factory.mktemp("demo") / "demo.kubeconfig"
    command = [sys.executable, "-m", "kubemirror", "demo", "--pods", "2000", "--churn", "50",
               "--write-kubeconfig", str(path)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as demo:
        try:
            deadline = time.monotonic() + 60
            while not path.exists():
                if demo.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the demo did not write {path}")
                time.sleep(0.05)
            yield path
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    assert not path.exists(), "the demo removes its kubeconfig on exit"


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_python_block_runs(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = dict(os.environ)
    if "EnvTest" in block.code or "real_kube_apiserver" in block.code:
        assets = request.getfixturevalue("envtest_assets")
        env["KUBEBUILDER_ASSETS"] = str(assets.directory)
    if "EtcdServer" in block.code or "EtcdCluster" in block.code:
        env["KUBEMIRROR_ETCD"] = _require_etcd()
    if "load_config()" in block.code:
        env["KUBECONFIG"] = str(request.getfixturevalue("demo_kubeconfig"))
    script = tmp_path / ("test_block.py" if "def test_" in block.code else "block.py")
    script.write_text(block.code, encoding="utf-8")
    command = [sys.executable, str(script)]
    if "def test_" in block.code:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, (
        f"README block under '{block.heading}' (line {block.line}) failed:\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    if "pods mirrored" in block.code:
        assert re.search(r"^[1-9]\d* pods mirrored$", done.stdout, re.M), done.stdout
