"""One cluster's entries that carry a given label, in key order (multicluster layer).

What ``storage.ResourceStorage`` cuts a LIST page with a label equality
(``app=api``, ``app in (api)``) from: for each (label key, value) asked for, a
``key_order.KeyOrder`` of the entries carrying it, built on first use from the
cluster's ``KeyOrder`` and kept in step with every write after that. A page
then walks the entries that carry the label instead of skipping the ones that
do not. The least recently used orders beyond a capacity are dropped. Not
thread-safe: the owning storage's lock guards it.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

from kubemirror.multicluster.key_order import KeyOrder
from kubemirror.multicluster.watch_cache import StoredObject

__all__ = ["LabelOrders", "labels_of"]


def labels_of(entry: StoredObject) -> Mapping[str, str]:
    """``metadata.labels`` of ``entry`` (read from a compact entry's skeleton; empty
    when it has none)."""
    meta = entry.selectable.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


class LabelOrders:
    """The ``KeyOrder``s of one cluster's entries by (label key, value), at most
    ``capacity`` of them (least recently used out first). Building one is O(n) over
    the cluster; a write is O(orders * log n) plus a ``list`` insert or delete in
    the orders whose membership it changes."""

    __slots__ = ("_capacity", "_orders")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._orders: collections.OrderedDict[tuple[str, str], KeyOrder] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._orders)

    def order(self, label: tuple[str, str], everything: KeyOrder) -> KeyOrder:
        """The entries carrying ``label`` (``(key, value)``), taken from ``everything``
        (the cluster's ``KeyOrder``) the first time."""
        found = self._orders.get(label)
        if found is not None:
            self._orders.move_to_end(label)
            return found
        name, value = label
        found = KeyOrder(
            {
                key: entry
                for key, entry in zip(everything.keys, everything.entries, strict=True)
                if labels_of(entry).get(name) == value
            }
        )
        self._orders[label] = found
        while len(self._orders) > self._capacity:
            self._orders.popitem(last=False)
        return found

    def write(self, key: str, entry: StoredObject | None) -> None:
        """Keep every order in step with ``key`` now stored as ``entry`` (``None``:
        deleted)."""
        if not self._orders:
            return
        labels = labels_of(entry) if entry is not None else {}
        for (name, value), order in self._orders.items():
            if entry is not None and labels.get(name) == value:
                order.put(key, entry)
            else:
                order.remove(key)
