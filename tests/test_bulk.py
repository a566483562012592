"""Tests for kubemirror.bulk: the GC pause nests across threads, loads release memory
once when the outermost ends, and the glibc thresholds take effect in a fresh process.

The allocator tests run in subprocesses: the thresholds are process-wide and kept,
so only a fresh interpreter shows the before and after. They read glibc's own
``mallinfo2`` (no fake): a 1 MiB block is mmapped under glibc's defaults and
served from the heap once tuned.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading

import pytest

from kubemirror import bulk


def _is_glibc() -> bool:
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return False
    return True


def test_paused_gc_restores_the_previous_state_even_on_error() -> None:
    assert gc.isenabled()
    seen: list[bool] = []

    def decode() -> None:
        with bulk.paused_gc():
            seen.append(gc.isenabled())
            raise RuntimeError("decode failed")

    with pytest.raises(RuntimeError):
        decode()
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        with bulk.paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_paused_gc_nests_across_threads_and_only_the_last_exit_restores() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with bulk.paused_gc():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with bulk.paused_gc():
            second_in.set()
            first_out.wait(5)
            seen["after first left"] = gc.isenabled()
        seen["after both left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"after first left": False, "after both left": True}


def test_nested_loads_release_memory_once_when_the_outermost_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    releases: list[int] = []
    monkeypatch.setattr(bulk, "release_freed_memory", lambda: releases.append(1))
    with bulk.load():
        with bulk.load():
            assert not gc.isenabled()
        assert releases == []
    assert releases == [1]
    assert gc.isenabled()
    with pytest.raises(KeyError), bulk.load():
        raise KeyError("page")
    assert releases == [1, 1]
    assert gc.isenabled()


_PROBE = """
import ctypes, json, sys
from kubemirror import bulk

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
with bulk.load():
    before = libc.mallinfo2().hblks
    block = bytes(1 << 20)
    mmapped = libc.mallinfo2().hblks - before
    del block
print(json.dumps({"tuned": bulk.allocator_tuned(), "mmapped": mmapped,
                  "released": bulk.release_freed_memory() in (True, False)}))
"""


@pytest.mark.skipif(not _is_glibc(), reason="allocator tuning applies to glibc only")
@pytest.mark.parametrize(
    ("env", "tuned", "mmapped"),
    [({}, True, 0), ({"KUBEMIRROR_TUNE_MALLOC": "0"}, False, 1)],
    ids=["default-tuned", "switched-off-by-env"],
)
def test_a_load_fixes_glibc_thresholds_unless_switched_off(
    env: dict[str, str], tuned: bool, mmapped: int
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env},
        capture_output=True, text=True, check=True, timeout=60,
    )
    result = json.loads(out.stdout)
    assert result == {"tuned": tuned, "mmapped": mmapped, "released": True}


def test_set_allocator_tuning_false_before_the_first_load_keeps_the_defaults() -> None:
    code = ("from kubemirror import bulk\nbulk.set_allocator_tuning(False)\n"
            "with bulk.load():\n    pass\nprint(bulk.allocator_tuned(), bulk.tune_allocator())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]
