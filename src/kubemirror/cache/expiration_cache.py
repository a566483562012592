"""ExpirationCache and TTLStore: a ``Store`` whose entries expire, checked lazily on read.

Part of the cache layer (client-go ``tools/cache`` ``ExpirationCache``,
``ExpirationPolicy``, ``TTLPolicy``, ``NewTTLStore``). Useful to remember things
for a while (recent lookups, short-lived state) without a reaper thread. Time comes
from an injectable ``types.Clock``, so tests move time instead of sleeping.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kubemirror import keys, types
from kubemirror.cache import store

__all__ = ["ExpirationCache", "ExpirationPolicy", "TTLPolicy", "TTLStore", "TimestampedEntry"]


@dataclass(frozen=True, slots=True)
class TimestampedEntry:
    """A stored object, its key and when (``Clock.now()``) it was written."""

    obj: Any
    timestamp: float
    key: str


class ExpirationPolicy(Protocol):
    """Decides whether an entry has expired. Must be cheap and must not block."""

    def is_expired(self, entry: TimestampedEntry) -> bool: ...


class TTLPolicy:
    """Entries expire once older than ``ttl`` seconds; ``ttl <= 0`` means never.

    An entry written at ``t`` is still alive at exactly ``t + ttl`` and expired after.
    """

    __slots__ = ("clock", "ttl")

    def __init__(self, ttl: float, clock: types.Clock | None = None) -> None:
        self.ttl = ttl
        self.clock: types.Clock = clock if clock is not None else types.MonotonicClock()

    def is_expired(self, entry: TimestampedEntry) -> bool:
        return self.ttl > 0 and self.clock.now() - entry.timestamp > self.ttl


class ExpirationCache:
    """A thread-safe ``Store`` that time-stamps entries on write and expires them on read.

    Every write (``add``, ``update``, ``replace``) stamps its entries with
    ``clock.now()``; an update therefore refreshes the entry. Nothing runs in the
    background: ``get``, ``get_by_key``, ``list`` and ``list_keys`` ask ``policy``
    about the entries they touch and purge the expired ones, so an expired object is
    never returned. ``policy`` and ``clock`` run outside the lock; a purge removes an
    entry only if it was not rewritten meanwhile.

    Objects are stored as given and returned shared: do not mutate them. Writes raise
    ``KeyFuncError`` for an object without a key. All operations are O(1) except
    ``list``, ``list_keys`` and ``replace`` (O(n)).
    """

    __slots__ = ("_clock", "_items", "_key_func", "_lock", "_policy")

    def __init__(
        self,
        key_func: types.KeyFunc = keys.meta_namespace_key,
        policy: ExpirationPolicy | None = None,
        clock: types.Clock | None = None,
    ) -> None:
        self._key_func = key_func
        self._clock: types.Clock = clock if clock is not None else types.MonotonicClock()
        self._policy: ExpirationPolicy = policy if policy is not None else TTLPolicy(0, self._clock)
        self._lock = threading.Lock()
        self._items: dict[str, TimestampedEntry] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self._items)} entries (some may be expired)>"

    def key_of(self, obj: Any) -> str:
        """Return ``obj``'s key; raises ``KeyFuncError`` naming the object."""
        return store.key_of(self._key_func, obj)

    def add(self, obj: Any) -> None:
        """Store ``obj`` under its key with a fresh timestamp."""
        key = self.key_of(obj)
        entry = TimestampedEntry(obj, self._clock.now(), key)
        with self._lock:
            self._items[key] = entry

    def update(self, obj: Any) -> None:
        """Same as ``add`` (so it refreshes the timestamp)."""
        self.add(obj)

    def delete(self, obj: Any) -> None:
        """Remove the entry with ``obj``'s key, if any."""
        key = self.key_of(obj)
        with self._lock:
            self._items.pop(key, None)

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Swap the whole content for ``objs``, all stamped with the same time."""
        now = self._clock.now()
        key_of = self.key_of
        entries = {}
        for obj in objs:
            key = key_of(obj)
            entries[key] = TimestampedEntry(obj, now, key)
        with self._lock:
            self._items = entries

    def resync(self) -> None:
        """Nothing to do (part of the ``Store`` protocol)."""

    def get(self, obj: Any) -> Any | None:
        """Return the unexpired object with ``obj``'s key (shared: do not mutate), or ``None``."""
        return self.get_by_key(self.key_of(obj))

    def get_by_key(self, key: str) -> Any | None:
        """Return the unexpired object under ``key`` (shared: do not mutate), or ``None``."""
        with self._lock:
            entry = self._items.get(key)
        if entry is None:
            return None
        if self._policy.is_expired(entry):
            self._purge((entry,))
            return None
        return entry.obj

    def list(self) -> builtins.list[Any]:
        """Return every unexpired object (shared: do not mutate); purges expired ones."""
        return [entry.obj for entry in self._live_entries()]

    def list_keys(self) -> builtins.list[str]:
        """Return the keys of every unexpired entry; purges expired ones."""
        return [entry.key for entry in self._live_entries()]

    def _live_entries(self) -> builtins.list[TimestampedEntry]:
        with self._lock:
            entries = list(self._items.values())
        is_expired = self._policy.is_expired
        live: builtins.list[TimestampedEntry] = []
        dead: builtins.list[TimestampedEntry] = []
        for entry in entries:
            (dead if is_expired(entry) else live).append(entry)
        if dead:
            self._purge(dead)
        return live

    def _purge(self, entries: Iterable[TimestampedEntry]) -> None:
        with self._lock:
            items = self._items
            for entry in entries:
                if items.get(entry.key) is entry:
                    del items[entry.key]


class TTLStore(ExpirationCache):
    """An ``ExpirationCache`` whose entries live ``ttl`` seconds (``ttl <= 0``: forever).

    ``clock`` (default ``types.MonotonicClock``) both stamps entries and judges them.
    """

    __slots__ = ()

    def __init__(
        self,
        key_func: types.KeyFunc = keys.meta_namespace_key,
        ttl: float = 0.0,
        clock: types.Clock | None = None,
    ) -> None:
        clock = clock if clock is not None else types.MonotonicClock()
        super().__init__(key_func, TTLPolicy(ttl, clock), clock)
