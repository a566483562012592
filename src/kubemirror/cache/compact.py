"""CompactIndexer: the ``Indexer`` API over objects kept as the JSON bytes received.

Part of the cache layer. A compact store keeps each object as its encoded JSON
(about 6 KB for a 6 KB Pod, against ~32 KB as a decoded dict and ~78 KB as an
official-client model; ~4 KB with ``strip_managed_fields``) and decodes on
read, through a small bounded LRU cache of decoded objects. Keys and index
values are computed once, at write time, on the object's *partial view* (see
``raw_object.PartialDecoder``), so writes never decode ``spec``/``status``.

The trade-off: reads cost a decode (~40 us for a 6 KB Pod) unless the object is
in the decode cache; ``list()`` and ``by_index`` decode every object they return.
Use it for large mirrors that are read sparsely (by key or by a selective
index), the decoded ``Indexer`` for mirrors read in bulk all the time.
"""

from __future__ import annotations

import builtins
import collections
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import orjson

from kubemirror import errors, keys, types
from kubemirror.cache import store, thread_safe_store
from kubemirror.cache.raw_object import PartialDecoder, RawObject

__all__ = ["DEFAULT_DECODE_CACHE_SIZE", "CompactIndexer"]

DEFAULT_DECODE_CACHE_SIZE = 256
"""Decoded objects a ``CompactIndexer`` keeps for repeated reads."""

_KEYED_AS_IS = (keys.DeletedFinalStateUnknown, keys.ExplicitKey)


class CompactIndexer:
    """An ``Indexer`` (same methods, same errors) storing objects as JSON bytes.

    Writes accept a ``RawObject`` (what a ``KubeClient`` with a ``PartialDecoder``
    produces: no decoding at all here), JSON ``bytes``, or a plain mapping (encoded
    once, then treated as received bytes). ``key_func`` and index functions see
    the object's **partial view**, never the whole object: a dict with
    ``apiVersion``, ``kind``, the ``metadata`` fields of
    ``raw_object.DEFAULT_VIEW_METADATA`` (name, namespace, uid,
    resourceVersion, generation, generateName, creationTimestamp,
    deletionTimestamp, labels, annotations, ownerReferences, finalizers) and the
    dotted ``view_paths`` given here (``"spec.nodeName"``, ``"status"``). An
    index function that reads anything else sees it missing. The same view is
    used for ``add_indexers`` (recomputed from the stored bytes).

    Reads (``get``, ``get_by_key``, ``list``, ``by_index``, ``index``) return
    fully decoded dicts. Immutability: as for ``Indexer``, what a read returns is
    shared (through the decode cache) and must not be mutated (``copy=True`` gives
    a private copy); a later write never changes an object already handed out.
    Unlike ``Indexer``, reads return *equal* objects, not the very object written.
    ``get_view_by_key``/``get_raw_by_key`` read the stored form without decoding.

    Thread safety: as ``Indexer``; the decode cache has its own lock and decoding
    runs outside both locks. ``cache_size`` bounds the decode cache (0 disables it).
    Errors: ``KeyFuncError``, ``IndexFuncError``, ``UnknownIndexError`` as
    ``Indexer``; an object that is not a JSON object with a ``metadata`` mapping
    (or not JSON-encodable) is rejected with a ``KeyFuncError`` naming it.
    """

    __slots__ = ("_cache", "_cache_lock", "_cache_size", "_decoder", "_items", "_key_func",
                 "_lock", "_store")

    def __init__(
        self,
        key_func: types.KeyFunc = keys.meta_namespace_key,
        indexers: thread_safe_store.Indexers | None = None,
        *,
        view_paths: Iterable[str] = (),
        decoder: PartialDecoder | None = None,
        cache_size: int = DEFAULT_DECODE_CACHE_SIZE,
    ) -> None:
        if cache_size < 0:
            raise errors.ConfigError("cache_size must be >= 0", field="cache_size")
        self._key_func = key_func
        self._decoder = decoder or PartialDecoder(view_paths)
        self._store = thread_safe_store.ThreadSafeStore(indexers, view_of=self._view_of_stored)
        self._lock = self._store._lock
        self._items = self._store._items
        self._cache: collections.OrderedDict[str, tuple[bytes, Any]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return (f"<CompactIndexer {len(self._items)} objects, "
                f"indices {sorted(self._store._indices)}>")

    @property
    def decoder(self) -> PartialDecoder:
        """The decoder building partial views (give it to the client for zero-copy writes)."""
        return self._decoder

    # -- conversions ---------------------------------------------------------------------

    def _view_of_stored(self, data: bytes) -> RawObject:
        return self._decoder.view(data)

    def _as_raw(self, obj: Any) -> RawObject:
        """``obj`` as a ``RawObject``; raises ``KeyFuncError`` naming ``obj`` if it cannot be."""
        if type(obj) is RawObject:
            return obj
        if isinstance(obj, RawObject):
            return obj
        if isinstance(obj, bytes | bytearray | memoryview):
            data = bytes(obj)
        elif isinstance(obj, Mapping):
            try:
                encoded = orjson.dumps(obj)
            except TypeError as exc:
                raise errors.KeyFuncError(obj, f"not JSON-encodable: {exc}") from exc
            data = bytes(bytearray(encoded))  # exact size (orjson over-allocates)
        else:
            raise errors.KeyFuncError(obj, f"cannot store a {type(obj).__name__}")
        try:
            return self._decoder.view(data)
        except msgspec.DecodeError as exc:
            raise errors.KeyFuncError(obj, f"not a JSON object with metadata: {exc}") from exc

    def _keyed(self, obj: Any) -> tuple[str, RawObject]:
        raw = self._as_raw(obj)
        try:
            return store.key_of(self._key_func, raw), raw
        except errors.KeyFuncError as exc:
            if raw is obj:
                raise
            raise errors.KeyFuncError(obj, exc.reason) from exc

    def _decode(self, key: str, data: bytes) -> Any:
        size = self._cache_size
        if size:
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None and hit[0] is data:
                    self._cache.move_to_end(key)
                    return hit[1]
        obj = orjson.loads(data)
        if size:
            with self._cache_lock:
                self._cache[key] = (data, obj)
                self._cache.move_to_end(key)
                if len(self._cache) > size:
                    self._cache.popitem(last=False)
        return obj

    def _decode_all(self, pairs: Iterable[tuple[str, bytes]], copy: bool) -> builtins.list[Any]:
        if copy:
            return [orjson.loads(data) for _, data in pairs]
        return [self._decode(key, data) for key, data in pairs]

    def key_of(self, obj: Any) -> str:
        """Return ``obj``'s key (computed on its partial view); raises ``KeyFuncError``.

        Tombstones (``DeletedFinalStateUnknown``) and ``ExplicitKey`` give their key.
        """
        if type(obj) is RawObject or isinstance(obj, _KEYED_AS_IS):
            return store.key_of(self._key_func, obj)  # a received object's view, or a key
        return self._keyed(obj)[0]

    # -- Store ---------------------------------------------------------------------------

    def add(self, obj: Any) -> None:
        """Insert or overwrite ``obj`` under its key. Raises ``KeyFuncError``/``IndexFuncError``."""
        self.update(obj)

    def update(self, obj: Any) -> None:
        """Store ``obj`` (as bytes) under its key, replacing the previous object."""
        key, raw = self._keyed(obj)
        self._store.update(key, raw.raw, raw)

    def delete(self, obj: Any) -> None:
        """Remove the object with ``obj``'s key (a tombstone or ``ExplicitKey`` works too)."""
        self._store.delete(self.key_of(obj))

    def update_by_key(self, key: str, obj: Any) -> None:
        """Store ``obj`` (as bytes) under ``key``, which the caller computed with ``key_of``.

        Raises ``KeyFuncError`` if ``obj`` cannot be stored, ``IndexFuncError``. See
        ``store.KeyedIndexer``.
        """
        raw = self._as_raw(obj)
        self._store.update(key, raw.raw, raw)

    def swap_by_key(self, key: str, obj: Any) -> RawObject | None:
        """``update_by_key``, returning the replaced object's ``RawObject`` (``None`` for a
        new key): its partial view is decoded, never the whole object."""
        raw = obj if type(obj) is RawObject else self._as_raw(obj)
        replaced: bytes | None = self._store.update(key, raw.raw, raw)
        return None if replaced is None else self._decoder.view(replaced)

    def delete_by_key(self, key: str) -> None:
        """Remove ``key`` (absent: ignored)."""
        self._store.delete(key)

    def list(self, *, copy: bool = False) -> builtins.list[Any]:
        """Every stored object, decoded, in insertion order. O(n) decodes."""
        with self._lock:
            pairs = builtins.list(self._items.items())
        return self._decode_all(pairs, copy)

    def list_keys(self) -> builtins.list[str]:
        """Return every key, in insertion order."""
        with self._lock:
            return builtins.list(self._items)

    def get(self, obj: Any, *, copy: bool = False) -> Any | None:
        """The stored object with ``obj``'s key, decoded, or ``None``."""
        return self.get_by_key(self.key_of(obj), copy=copy)

    def get_by_key(self, key: str, *, copy: bool = False) -> Any | None:
        """The object stored under ``key``, decoded (cached), or ``None``."""
        with self._lock:
            data = self._items.get(key)
        if data is None:
            return None
        return orjson.loads(data) if copy else self._decode(key, data)

    def get_raw_by_key(self, key: str) -> bytes | None:
        """The stored JSON bytes under ``key`` (no decoding), or ``None``."""
        with self._lock:
            data: bytes | None = self._items.get(key)
            return data

    def get_view_by_key(self, key: str) -> RawObject | None:
        """The stored object as a ``RawObject`` (partial view + bytes), or ``None``."""
        data = self.get_raw_by_key(key)
        return None if data is None else self._decoder.view(data)

    def list_views(self) -> builtins.list[RawObject]:
        """Every stored object as a ``RawObject`` (partial view + bytes), in insertion
        order; decodes views, never whole objects."""
        with self._lock:
            stored = builtins.list(self._items.values())
        view = self._decoder.view
        return [view(data) for data in stored]

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Swap the whole content for ``objs`` atomically and rebuild every index.

        Raises ``KeyFuncError``/``IndexFuncError`` (store unchanged). O(n).
        """
        keyed = self._keyed
        views: dict[str, RawObject] = {}
        for obj in objs:
            key, raw = keyed(obj)
            views[key] = raw
        self._store.replace({key: raw.raw for key, raw in views.items()}, views)
        with self._cache_lock:
            self._cache.clear()

    def resync(self) -> None:
        """Nothing to do for a plain store (part of the ``Store`` protocol)."""

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # -- indices -------------------------------------------------------------------------

    def index(self, index_name: str, obj: Any, *, copy: bool = False) -> builtins.list[Any]:
        """Stored objects sharing an ``index_name`` value with ``obj`` (its view), decoded."""
        func = self._store._func(index_name)
        view = self._as_raw(obj)
        values = thread_safe_store._compute((index_name,), (func,), view)[0]
        found: set[str] = set()
        for value in values:
            found.update(self._store.index_keys(index_name, value))
        return self._by_keys(found, copy)

    def by_index(self, index_name: str, value: str, *, copy: bool = False) -> builtins.list[Any]:
        """Stored objects whose ``index_name`` values include ``value``, decoded. O(bucket)."""
        return self._by_keys(self._store.index_keys(index_name, value), copy)

    def _by_keys(self, bucket: Iterable[str], copy: bool) -> builtins.list[Any]:
        with self._lock:
            items = self._items
            pairs = [(key, items[key]) for key in bucket if key in items]
        return self._decode_all(pairs, copy)

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
        """Add indices; stored objects are indexed on views decoded from their bytes."""
        self._store.add_indexers(indexers)
