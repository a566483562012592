"""One cluster's stored entries of one resource type in key order (multicluster layer).

What ``storage.ResourceStorage`` cuts LIST snapshots from: the keys sorted and
the entries beside them, kept in step with every write (a bisect and, for an
object added or removed, one ``list`` insert or delete) so that a snapshot of
the whole cluster is one list copy -- no per-object lookup, no re-sort after a
write. Not thread-safe: the owning storage's lock guards it.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from kubemirror.multicluster.watch_cache import StoredObject

__all__ = ["KeyOrder"]


class KeyOrder:
    """Sorted keys and their entries. ``put`` and ``remove`` are O(log n) plus a
    ``list`` insert or delete (a memmove) when membership changes; ``copy_into`` is
    O(result)."""

    __slots__ = ("_entries", "_keys")

    def __init__(self, objects: Mapping[str, StoredObject]) -> None:
        self._keys = sorted(objects)
        self._entries = [objects[k] for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys)

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

    def copy_into(self, out: list[StoredObject], namespace: str = "") -> None:
        """Append the entries (of keys ``<namespace>/...`` when ``namespace`` is set) to
        ``out``, in key order: one copy, no intermediate list."""
        if not namespace:
            out.extend(self._entries)
            return
        lo = bisect.bisect_left(self._keys, namespace + "/")
        hi = bisect.bisect_left(self._keys, namespace + "0")  # "0" sorts right after "/"
        out.extend(self._entries[lo:hi])
