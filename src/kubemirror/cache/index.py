"""Indexer: a ``Store`` with named secondary indices, the informer's local cache.

Part of the cache layer (client-go ``tools/cache`` ``Indexer``, ``NewIndexer``,
``NewStore``). An Indexer computes each object's key with its key function and keeps
objects in a ``ThreadSafeStore``; index functions such as
``keys.meta_namespace_index_func`` let readers fetch "all pods in namespace x" in
O(bucket) instead of scanning.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from kubemirror import keys, types
from kubemirror.cache import store, thread_safe_store

__all__ = ["NAMESPACE_INDEX", "Indexer", "new_store"]

NAMESPACE_INDEX = "namespace"
"""Conventional name of the index built by ``keys.meta_namespace_index_func``."""


class Indexer:
    """A thread-safe ``Store`` of objects by key, plus named indices over them.

    ``key_func`` (default ``keys.meta_namespace_key``: ``"ns/name"``) computes the key
    of every object written; ``indexers`` maps index names to index functions. The
    index API (``index``, ``by_index``, ``index_keys``, ``list_index_func_values``,
    ``get_indexers``, ``add_indexers``) is that of ``ThreadSafeStore``, whose docstring
    gives the locking rules and complexity; in short: safe from any thread, O(1)
    ``get_by_key``, indices exact after every write, user functions never called
    under the lock.

    Immutability: reads return the stored objects themselves, shared with every other
    reader. Do not mutate them; pass ``copy=True`` to get a deep copy you own (see
    ``store.deep_copy``). Writers replace objects, so an object handed out is never
    changed by a later write.

    Errors: writes raise ``KeyFuncError`` (no key) or ``IndexFuncError`` (an index
    function failed) and leave the store unchanged; index reads raise
    ``UnknownIndexError`` for an unknown index name.
    """

    __slots__ = ("_items", "_key_func", "_lock", "_store")

    def __init__(
        self,
        key_func: types.KeyFunc = keys.meta_namespace_key,
        indexers: thread_safe_store.Indexers | None = None,
    ) -> None:
        self._key_func = key_func
        self._store = thread_safe_store.ThreadSafeStore(indexers)
        # Direct references for the read fast path (the store never rebinds them).
        self._lock = self._store._lock
        self._items = self._store._items

    def __repr__(self) -> str:
        return f"<Indexer {len(self._items)} objects, indices {sorted(self._store._indices)}>"

    def key_of(self, obj: Any) -> str:
        """Return ``obj``'s key; raises ``KeyFuncError`` naming the object."""
        return store.key_of(self._key_func, obj)

    # -- Store ---------------------------------------------------------------

    def add(self, obj: Any) -> None:
        """Insert or overwrite ``obj`` under its key. Raises ``KeyFuncError``/``IndexFuncError``."""
        self._store.update(store.key_of(self._key_func, obj), obj)

    def update(self, obj: Any) -> None:
        """Same as ``add``: store ``obj`` under its key, replacing the previous object."""
        self._store.update(store.key_of(self._key_func, obj), obj)

    def delete(self, obj: Any) -> None:
        """Remove the object with ``obj``'s key (a tombstone or ``ExplicitKey`` works too)."""
        self._store.delete(self.key_of(obj))

    def update_by_key(self, key: str, obj: Any) -> None:
        """Store ``obj`` under ``key``, which the caller computed with ``key_of``.

        Raises ``IndexFuncError`` (store unchanged). See ``store.KeyedIndexer``.
        """
        self._store.update(key, obj)

    def swap_by_key(self, key: str, obj: Any) -> Any | None:
        """``update_by_key``, returning the object replaced (``None`` for a new key)."""
        return self._store.update(key, obj)

    def delete_by_key(self, key: str) -> None:
        """Remove ``key`` (absent: ignored)."""
        self._store.delete(key)

    def list(self, *, copy: bool = False) -> builtins.list[Any]:
        """Return every stored object, in insertion order (shared unless ``copy``)."""
        with self._lock:
            objs = list(self._items.values())
        return [store.deep_copy(o) for o in objs] if copy else objs

    def list_keys(self) -> builtins.list[str]:
        """Return every key, in insertion order."""
        with self._lock:
            return list(self._items)

    def get(self, obj: Any, *, copy: bool = False) -> Any | None:
        """Return the stored object with ``obj``'s key, or ``None`` (shared unless ``copy``)."""
        return self.get_by_key(self.key_of(obj), copy=copy)

    def get_by_key(self, key: str, *, copy: bool = False) -> Any | None:
        """Return the object stored under ``key``, or ``None`` (shared unless ``copy``). O(1)."""
        if not copy:
            with self._lock:
                return self._items.get(key)
        with self._lock:
            obj = self._items.get(key)
        return None if obj is None else store.deep_copy(obj)

    def get_view_by_key(self, key: str) -> Any | None:
        """The object stored under ``key`` (shared), or ``None``: for a decoded store
        its view is the object itself. See ``store.KeyedIndexer``."""
        with self._lock:
            return self._items.get(key)

    def list_views(self) -> builtins.list[Any]:
        """Every stored object, shared, in insertion order (same as ``list()``)."""
        return self.list()

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Swap the whole content for ``objs`` atomically and rebuild every index.

        ``resource_version`` is accepted for the ``Store`` protocol and not kept.
        Raises ``KeyFuncError``/``IndexFuncError`` (store unchanged). O(n).
        """
        key_of = self.key_of
        self._store.replace({key_of(obj): obj for obj in objs})

    def resync(self) -> None:
        """Nothing to do for a plain store (part of the ``Store`` protocol)."""

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # -- indices -------------------------------------------------------------

    def index(self, index_name: str, obj: Any, *, copy: bool = False) -> builtins.list[Any]:
        """Return stored objects sharing an ``index_name`` value with ``obj``.

        Shared unless ``copy``. Raises ``UnknownIndexError``/``IndexFuncError``.
        """
        objs = self._store.index(index_name, obj)
        return [store.deep_copy(o) for o in objs] if copy else objs

    def by_index(self, index_name: str, value: str, *, copy: bool = False) -> builtins.list[Any]:
        """Return stored objects whose ``index_name`` values include ``value``.

        Shared unless ``copy``. O(bucket), in no particular order. Raises
        ``UnknownIndexError``.
        """
        objs = self._store.by_index(index_name, value)
        return [store.deep_copy(o) for o in objs] if copy else objs

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Return the keys of the objects whose ``index_name`` values include ``value``."""
        return self._store.index_keys(index_name, value)

    def list_index_func_values(self, index_name: str) -> builtins.list[str]:
        """Return every value of ``index_name`` held by at least one stored object."""
        return self._store.list_index_func_values(index_name)

    def get_indexers(self) -> dict[str, types.IndexFunc]:
        """Return a new dict of index name -> index function."""
        return self._store.get_indexers()

    def add_indexers(self, indexers: thread_safe_store.Indexers) -> None:
        """Add indices, indexing the objects already stored. See ``ThreadSafeStore``."""
        self._store.add_indexers(indexers)


def new_store(key_func: types.KeyFunc = keys.meta_namespace_key) -> Indexer:
    """Return a plain ``Store``: an ``Indexer`` without indices (client-go ``NewStore``)."""
    return Indexer(key_func)
