"""One cluster's stored entries of one resource type in key order (multicluster layer).

What ``storage.ResourceStorage`` cuts LIST pages from (``paging.cut_page``): the
keys sorted and the entries beside them, kept in step with every write (a bisect
and, for an object added or removed, one ``list`` insert or delete), so that a
page starting after any key is a bisect and a walk of the page, never a copy of
the cluster or a re-sort after a write. Not thread-safe: the owning storage's
lock guards it, also while a reader walks ``keys`` and ``entries``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from kubemirror.multicluster.watch_cache import StoredObject

__all__ = ["KeyOrder"]


class KeyOrder:
    """Sorted keys and their entries. ``put`` and ``remove`` are O(log n) plus a
    ``list`` insert or delete (a memmove) when membership changes; ``span`` is
    O(log n); ``copy_into`` is O(result)."""

    __slots__ = ("_entries", "_keys")

    def __init__(self, objects: Mapping[str, StoredObject]) -> None:
        self._keys = sorted(objects)
        self._entries = [objects[k] for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        pos = bisect.bisect_left(self._keys, key)
        return pos < len(self._keys) and self._keys[pos] == key

    @property
    def keys(self) -> Sequence[str]:
        """The keys, sorted (live: read under the owner's lock, never mutate)."""
        return self._keys

    @property
    def entries(self) -> Sequence[StoredObject]:
        """The entries, beside ``keys`` (live: read under the owner's lock)."""
        return self._entries

    def put(self, key: str, entry: StoredObject) -> None:
        """Store ``entry`` under ``key`` (replacing the entry there, or inserting it)."""
        keys = self._keys
        pos = bisect.bisect_left(keys, key)
        if pos < len(keys) and keys[pos] == key:
            self._entries[pos] = entry
        else:
            keys.insert(pos, key)
            self._entries.insert(pos, entry)

    def remove(self, key: str) -> None:
        """Forget ``key`` (absent keys are ignored)."""
        keys = self._keys
        pos = bisect.bisect_left(keys, key)
        if pos < len(keys) and keys[pos] == key:
            del keys[pos]
            del self._entries[pos]

    def span(self, namespace: str = "", after: str | None = None) -> tuple[int, int]:
        """The positions ``[lo, hi)`` of the keys (``<namespace>/...`` when ``namespace``
        is set) sorting after ``after`` (all when ``None``)."""
        keys = self._keys
        if namespace:
            lo = bisect.bisect_left(keys, namespace + "/")
            hi = bisect.bisect_left(keys, namespace + "0")  # "0" sorts right after "/"
        else:
            lo, hi = 0, len(keys)
        if after is not None:
            lo = max(lo, bisect.bisect_right(keys, after, lo, hi))
        return lo, hi

    def copy_into(self, out: list[StoredObject], namespace: str = "") -> None:
        """Append the entries (of keys ``<namespace>/...`` when ``namespace`` is set) to
        ``out``, in key order: one copy, no intermediate list."""
        if not namespace:
            out.extend(self._entries)
            return
        lo, hi = self.span(namespace)
        out.extend(self._entries[lo:hi])
