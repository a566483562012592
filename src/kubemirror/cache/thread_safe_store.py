"""ThreadSafeStore: key-addressed objects plus secondary indices under one lock.

The storage engine under ``Indexer`` (client-go ``tools/cache`` ``ThreadSafeStore``),
at the bottom of the cache layer. It knows nothing about key functions: callers pass
the key. Index functions are user code, so they run *before* the lock is taken; the
values they returned are remembered per key, so an update or delete never has to
re-run them on the old object to find which index entries to drop.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubemirror import errors, types

__all__ = ["Indexers", "ThreadSafeStore"]

Indexers = Mapping[str, types.IndexFunc]
"""Index name -> index function (which returns the object's values for that index)."""

_Values = tuple[tuple[str, ...], ...]
"""An object's values for every index, aligned with ``ThreadSafeStore._funcs``."""


class ThreadSafeStore:
    """Objects by key, with any number of named secondary indices kept exact.

    An index maps each value its function returned for an object to the set of keys
    of the objects that produced it. Indices stay exact under every write: an update
    moves the key from the buckets of its old values to those of its new ones, a
    delete removes it, and a bucket that becomes empty is dropped (so
    ``list_index_func_values`` only lists values some stored object has).

    Thread safety: every method may be called from any thread. One ``threading.Lock``
    guards the items, the indices and the per-key index values together, so readers
    always see them consistent. The lock is never held while user code runs: index
    functions are called before it is taken (if ``add_indexers`` races with a write,
    the write recomputes its values; objects written *during* an ``add_indexers``
    call are the one case where the new index functions run under the lock).

    Immutability: objects are stored and returned as given, shared with every reader.
    Do not mutate them (neither before nor after storing them): an index does not
    notice a mutation, and other readers would see it. Writers replace objects.

    Errors: an index function that raises, or returns something other than a list of
    strings, makes the write raise ``IndexFuncError``; the store is left unchanged.
    Reading an index that does not exist raises ``UnknownIndexError``.

    Complexity: ``get`` O(1); ``add``/``update``/``delete`` O(number of indices +
    values); ``by_index``/``index_keys`` O(size of the bucket); ``list``/``replace``
    O(n). Result lists of ``by_index`` and ``index_keys`` are in no particular order.
    """

    __slots__ = ("_funcs", "_indices", "_items", "_lock", "_names", "_values", "_view_of")

    def __init__(
        self,
        indexers: Indexers | None = None,
        *,
        view_of: Callable[[Any], Any] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        # What index functions see of a stored object (``None``: the object itself).
        # A store keeping encoded objects (``CompactIndexer``) passes its decoder here.
        self._view_of = view_of
        self._items: dict[str, Any] = {}
        # Index names, functions and their indices, position-aligned; the tuple
        # ``_funcs`` is replaced (never mutated) so writers can detect a change.
        self._names: tuple[str, ...] = ()
        self._funcs: tuple[types.IndexFunc, ...] = ()
        self._indices: dict[str, dict[str, set[str]]] = {}
        # key -> the values its object produced for each index (only when indexed).
        self._values: dict[str, _Values] = {}
        if indexers:
            self.add_indexers(indexers)

    # -- writes --------------------------------------------------------------

    def add(self, key: str, obj: Any) -> None:
        """Store ``obj`` under ``key`` (same as ``update``). Raises ``IndexFuncError``."""
        self.update(key, obj)

    def update(self, key: str, obj: Any, view: Any = None) -> Any | None:
        """Store ``obj`` under ``key``, replacing any previous object and its index entries;
        returns the object replaced (``None`` for a new key).

        Index functions run on ``view`` when given (what the object looks like to
        them, for stores that keep objects encoded), else on ``obj``. Raises
        ``IndexFuncError`` (store unchanged) if an index function fails.
        """
        funcs = self._funcs
        if not funcs:
            with self._lock:
                if not self._funcs:
                    items = self._items
                    replaced = items.get(key)
                    items[key] = obj
                    return replaced
        while True:
            funcs = self._funcs
            values = _compute(self._names, funcs, obj if view is None else view)
            with self._lock:
                if funcs is self._funcs:
                    items = self._items
                    replaced = items.get(key)
                    items[key] = obj
                    old = self._values.get(key)
                    self._values[key] = values
                    if old is None:
                        self._insert_locked(key, values)
                    else:
                        self._move_locked(key, old, values)
                    return replaced
            # add_indexers ran meanwhile: recompute with the new set of functions.

    def delete(self, key: str) -> None:
        """Remove ``key`` and its index entries; an absent key is ignored."""
        with self._lock:
            if self._items.pop(key, _MISSING) is _MISSING:
                return
            old = self._values.pop(key, None)
            if old is not None:
                indices = self._indices
                for name, vals in zip(self._names, old, strict=True):
                    index = indices[name]
                    for value in vals:
                        _discard(index, value, key)

    def replace(
        self, items: Mapping[str, Any], views: Mapping[str, Any] | None = None
    ) -> None:
        """Swap the whole content for ``items`` (key -> object) and rebuild the indices.

        Index functions run on every object (or on ``views[key]`` when ``views`` is
        given) before the lock is taken; if one fails the store is left unchanged
        (``IndexFuncError``). O(n).
        """
        new_items = dict(items)
        seen = new_items if views is None else views
        while True:
            names, funcs = self._names, self._funcs
            values = (
                {key: _compute(names, funcs, seen[key]) for key in new_items}
                if funcs
                else {}
            )
            with self._lock:
                if funcs is self._funcs:
                    # Mutate in place: ``Indexer`` keeps a reference to ``_items``.
                    self._items.clear()
                    self._items.update(new_items)
                    self._values = values
                    self._indices = {name: {} for name in names}
                    for key, vals in values.items():
                        self._insert_locked(key, vals)
                    return

    def add_indexers(self, indexers: Indexers) -> None:
        """Add more indices; objects already stored are indexed right away.

        Raises ``ConfigError`` if a name is already in use and ``IndexFuncError`` if a
        new function fails on a stored object; in both cases nothing changes.
        """
        new_names = tuple(indexers)
        new_funcs = tuple(indexers.values())
        if not new_names:
            return
        with self._lock:
            self._check_conflict_locked(new_names)
            snapshot = dict(self._items)
        # Index what was there, outside the lock (index functions are user code).
        view_of = self._view_of or _identity
        computed = {
            key: _compute(new_names, new_funcs, view_of(obj)) for key, obj in snapshot.items()
        }
        with self._lock:
            self._check_conflict_locked(new_names)
            items = self._items
            # Objects written since the snapshot must be computed now, under the lock,
            # before anything is changed (so a failure still leaves the store intact).
            for key, obj in items.items():
                if snapshot.get(key, _MISSING) is not obj:
                    computed[key] = _compute(new_names, new_funcs, view_of(obj))
            self._names = self._names + new_names
            self._funcs = self._funcs + new_funcs
            indices = self._indices
            for name in new_names:
                indices[name] = {}
            values = self._values
            for key in items:
                vals = computed[key]
                values[key] = values.get(key, ()) + vals
                _insert(indices, new_names, vals, key)

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Any | None:
        """Return the object stored under ``key`` (shared: do not mutate), or ``None``."""
        with self._lock:
            return self._items.get(key)

    def list(self) -> builtins.list[Any]:
        """Return every stored object (shared: do not mutate), in insertion order."""
        with self._lock:
            return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        """Return every key, in insertion order."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def index(self, index_name: str, obj: Any) -> builtins.list[Any]:
        """Return the stored objects sharing at least one ``index_name`` value with ``obj``.

        Runs the index function on ``obj`` (outside the lock). Objects are shared: do
        not mutate. Raises ``UnknownIndexError`` or ``IndexFuncError``.
        """
        func = self._func(index_name)
        values = _compute((index_name,), (func,), obj)[0]
        with self._lock:
            index = self._index_locked(index_name)
            items = self._items
            if len(values) == 1:
                return [items[key] for key in index.get(values[0], ())]
            keys: set[str] = set()
            for value in values:
                keys.update(index.get(value, ()))
            return [items[key] for key in keys]

    def by_index(self, index_name: str, value: str) -> builtins.list[Any]:
        """Return the stored objects whose ``index_name`` values include ``value``.

        Objects are shared: do not mutate. Raises ``UnknownIndexError``.
        """
        with self._lock:
            bucket = self._index_locked(index_name).get(value)
            if bucket is None:
                return []
            items = self._items
            return [items[key] for key in bucket]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Return the keys of the objects whose ``index_name`` values include ``value``."""
        with self._lock:
            bucket = self._index_locked(index_name).get(value)
            return [] if bucket is None else list(bucket)

    def list_index_func_values(self, index_name: str) -> builtins.list[str]:
        """Return every value of ``index_name`` that at least one stored object has;
        ``[]`` for an unknown index, as client-go's ``ListIndexFuncValues`` (where
        ``by_index`` and ``index_keys`` raise ``UnknownIndexError``)."""
        with self._lock:
            return list(self._indices.get(index_name, ()))

    def get_indexers(self) -> dict[str, types.IndexFunc]:
        """Return a new dict of index name -> index function."""
        with self._lock:
            return dict(zip(self._names, self._funcs, strict=True))

    # -- internals (callers hold the lock where the name says so) ------------

    def _func(self, index_name: str) -> types.IndexFunc:
        names = self._names
        try:
            return self._funcs[names.index(index_name)]
        except ValueError:
            raise errors.UnknownIndexError(index_name, names) from None

    def _index_locked(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise errors.UnknownIndexError(index_name, self._names) from None

    def _check_conflict_locked(self, new_names: tuple[str, ...]) -> None:
        clash = sorted(set(new_names) & set(self._names))
        if clash:
            raise errors.ConfigError(
                "an index with this name already exists", field="indexers", expression=clash[0]
            )

    def _insert_locked(self, key: str, values: _Values) -> None:
        _insert(self._indices, self._names, values, key)

    def _move_locked(self, key: str, old: _Values, new: _Values) -> None:
        indices = self._indices
        for name, old_vals, new_vals in zip(self._names, old, new, strict=True):
            if old_vals == new_vals:
                continue  # the common case: an update that keeps its index values
            index = indices[name]
            for value in old_vals:
                if value not in new_vals:
                    _discard(index, value, key)
            for value in new_vals:
                if value not in old_vals:
                    _add(index, value, key)


_MISSING: Any = object()


def _identity(obj: Any) -> Any:
    return obj


def _insert(
    indices: dict[str, dict[str, set[str]]], names: tuple[str, ...], values: _Values, key: str
) -> None:
    """File ``key`` under each of its ``values`` in the index of the same position in ``names``."""
    for name, vals in zip(names, values, strict=True):
        index = indices[name]
        for value in vals:
            _add(index, value, key)


def _add(index: dict[str, set[str]], value: str, key: str) -> None:
    bucket = index.get(value)
    if bucket is None:
        index[value] = {key}
    else:
        bucket.add(key)


def _discard(index: dict[str, set[str]], value: str, key: str) -> None:
    bucket = index.get(value)
    if bucket is not None:
        bucket.discard(key)
        if not bucket:
            del index[value]


def _compute(names: tuple[str, ...], funcs: tuple[types.IndexFunc, ...], obj: Any) -> _Values:
    """Run every index function on ``obj`` and check what they return."""
    out: list[tuple[str, ...]] = []
    for i, func in enumerate(funcs):
        try:
            vals = func(obj)
        except Exception as exc:
            raise errors.IndexFuncError(names[i], obj, repr(exc)) from exc
        if type(vals) is list:
            for value in vals:
                if type(value) is not str:
                    vals = _coerce(names[i], obj, vals)
                    break
        else:
            vals = _coerce(names[i], obj, vals)
        out.append(tuple(vals))  # our own immutable copy, and untracked by the GC
    return tuple(out)


def _coerce(name: str, obj: Any, vals: object) -> list[str]:
    """Accept any iterable of ``str`` (subclasses too); reject everything else."""
    if isinstance(vals, str | bytes) or not isinstance(vals, Iterable):
        raise errors.IndexFuncError(
            name, obj, f"index functions return a list of strings, got {type(vals).__name__}"
        )
    out = list(vals)
    for value in out:
        if not isinstance(value, str):
            raise errors.IndexFuncError(
                name, obj, f"index values must be strings, got {type(value).__name__} {value!r}"
            )
    return out
