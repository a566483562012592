"""Bulk loading: keep CPython's collector and glibc's allocator out of the way of a big decode.

Bottom layer of kubemirror (imports nothing of ours). ``load()`` is what the
Reflector wraps every (re)list in and what decoders wrap a page in:

- ``paused_gc()`` disables the cyclic garbage collector: decoding 100k objects
  creates millions of containers that would otherwise trigger repeated full
  collections (perf-baselines lesson 1).
- ``tune_allocator()`` fixes glibc malloc's thresholds (mmap above 32 MiB, trim
  above 64 MiB). A LIST page passes through buffers of a few MiB (socket chunks,
  the body, its parse); with glibc's adaptive defaults they are handed back to
  the kernel and faulted in again page after page. Measured on 100k pods: 1.25 M
  minor faults without, 0.80 M with (the store itself needs 0.80 M). Applied once
  per process and kept (any ``mallopt`` call switches glibc's adaptive thresholds
  off for good); logged at INFO when applied. Off with the environment variable
  ``KUBEMIRROR_TUNE_MALLOC=0`` or ``set_allocator_tuning(False)`` before the
  first load. A no-op where the C library is not glibc.
- ``release_freed_memory()`` (``malloc_trim``) returns what the load freed once
  the outermost load ends, so the process settles at its store's size.

Everything here is process-wide. Loads are reference counted under a lock, so
concurrent loads on any tasks or threads nest: the collector is restored and
memory trimmed when the last one ends, never under another's feet.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "allocator_tuned",
    "load",
    "paused_gc",
    "release_freed_memory",
    "set_allocator_tuning",
    "tune_allocator",
]

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 << 20
"""Blocks at least this big get their own mapping (glibc's adaptive ceiling on 64-bit)."""
TRIM_THRESHOLD = 64 << 20
"""Free memory at the top of the heap is handed back only past this size."""

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_ENV = "KUBEMIRROR_TUNE_MALLOC"

_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False
_loads = 0
_tuning_enabled = os.environ.get(_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
_tuned = False
_libc: ctypes.CDLL | None = None
_libc_probed = False


def _glibc() -> ctypes.CDLL | None:
    """glibc's handle, or None elsewhere (musl, macOS, Windows). Call under ``_lock``."""
    global _libc, _libc_probed
    if not _libc_probed:
        _libc_probed = True
        try:
            os.confstr("CS_GNU_LIBC_VERSION")  # raises off glibc
            _libc = ctypes.CDLL("libc.so.6")
            _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (ValueError, OSError, AttributeError):
            _libc = None
    return _libc


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic GC for the block; the outermost exit restores its previous state.

    Nests across tasks and threads (reference counted); restores even when the
    block raises. Objects created meanwhile are collected normally afterwards.
    """
    global _gc_pauses, _gc_was_enabled
    with _lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def set_allocator_tuning(enabled: bool) -> None:
    """Allow or forbid ``tune_allocator`` (overrides ``KUBEMIRROR_TUNE_MALLOC``).

    Forbidding it after the thresholds were applied does not undo them.
    """
    global _tuning_enabled
    with _lock:
        _tuning_enabled = enabled


def allocator_tuned() -> bool:
    """True once this process's malloc thresholds were fixed by ``tune_allocator``."""
    return _tuned


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds once per process; True if they are in force.

    Idempotent and thread-safe. Returns False (and changes nothing) when tuning is
    switched off or the C library is not glibc.
    """
    global _tuned
    with _lock:
        if _tuned or not _tuning_enabled:
            return _tuned
        libc = _glibc()
        if libc is None:
            return False
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
        _tuned = ok
    if ok:
        log.info("glibc malloc tuned for bulk loads: mmap threshold %d MiB, trim threshold "
                 "%d MiB (set %s=0 to keep glibc's defaults)",
                 MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20, _ENV)
    else:  # pragma: no cover - mallopt refuses only out-of-range values
        log.warning("glibc refused the malloc thresholds; keeping its defaults")
    return ok


def release_freed_memory() -> bool:
    """Hand memory the allocator holds free back to the kernel (``malloc_trim``).

    Returns True if glibc released anything; False when nothing was released or
    the C library is not glibc. Takes milliseconds per GiB of heap.
    """
    with _lock:
        libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


@contextmanager
def load() -> Iterator[None]:
    """A bulk load: GC paused, allocator tuned, freed memory released when the last load ends.

    Nests across tasks and threads; safe to use around every LIST.
    """
    global _loads
    tune_allocator()
    with _lock:
        _loads += 1
    try:
        with paused_gc():
            yield
    finally:
        with _lock:
            _loads -= 1
            last = _loads == 0
        if last:
            release_freed_memory()
