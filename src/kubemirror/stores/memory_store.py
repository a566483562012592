"""``MemoryStore``: complete objects in memory, indexed by composite keys.

The fast, memory-hungry store of the stores/ layer (haproxy-template-ic
``store.MemoryStore``): every object is held, minus the configured
``IgnoreFields``, in a trie of buckets (``key_index.KeyIndex``), so a lookup by all
keys is O(number of keys) and a lookup by a key prefix visits only what it returns.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence

from kubemirror import paths
from kubemirror.cache import store
from kubemirror.stores import key_index
from kubemirror.stores.indexed_store import (
    IndexedStoreBase,
    ObjectRef,
    compile_ignore_fields,
    object_ref,
    resource_version,
)
from kubemirror.types import Obj

__all__ = ["MemoryStore"]


class MemoryStore(IndexedStoreBase[Obj]):
    """Complete objects indexed by ``num_keys`` string keys; non-unique keys allowed.

    * **Keys.** ``add``/``update`` take the object's composite key (one string per
      ``IndexBy`` path). Many objects may share a key (a *bucket*); an object is
      identified by its namespace/name, so writing one that is already stored
      replaces it, moving it to another bucket if its keys changed (``add`` and
      ``update`` are both upserts). A wrong number of keys raises ``StoreError``
      naming them.
    * **Reads.** ``get(*keys)`` with all keys returns the bucket itself: a tuple
      sorted by namespace/name, cached until the next write to that bucket. With a
      prefix of the keys it returns every object under the prefix, sorted by
      namespace/name. ``list()`` returns a fresh list, also sorted.
    * **Immutability.** Stored objects are shared, not copied: never mutate what
      ``get``/``list`` return (pass ``copy=True`` for private deep copies). Writers
      replace objects and buckets, never patch them, so a tuple or object a reader
      holds never changes under it. The store keeps a reference to what ``add``
      gets (after dropping ``ignore_fields``, which never mutates the caller's
      object): do not mutate an object after handing it to the store.
    * **Numbers.** JSON decoders already give ``int`` for integral numbers, so
      unlike the Go original no float-to-int conversion is needed before storing.
    * **Thread safety.** One lock guards the trie; no user code runs under it.
      Nothing blocks, so ``aget``/``alist`` just return ``get``/``list``.
    * **Complexity.** ``add``/``update``/``delete_by_name`` O(num_keys) (plus the
      cost of ``ignore_fields``); exact ``get`` O(num_keys) on a bucket read since its
      last write, else O(bucket); prefix ``get`` and ``list`` O(m log b) for m
      objects in b buckets.
    * **Memory.** Per object: the object itself plus a few hundred bytes of trie
      (see ``benchmarks/bench_stores.py``).
    """

    __slots__ = ("_ignore",)

    def __init__(
        self, num_keys: int, ignore_fields: Iterable[str | paths.FieldPath] = ()
    ) -> None:
        super().__init__(num_keys)
        self._ignore = compile_ignore_fields(ignore_fields)

    def update(self, obj: Obj, keys: Sequence[str]) -> None:
        """Replace the object with ``obj``'s namespace/name (or add it) under ``keys``.

        Raises ``StoreError`` for a wrong number of keys or an object without
        ``metadata.name``.
        """
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=False)
        ref, _ = object_ref(obj, key_tuple)
        stored = paths.remove_fields(obj, self._ignore) if self._ignore else obj
        with self._lock:
            self._index.put(ref, key_tuple, stored)
            self._mod_count += 1

    def delete(self, *keys: str) -> int:
        """Remove every object stored under exactly ``keys``; return how many.

        With non-unique keys this removes the whole bucket; use
        ``delete_by_name`` to remove one object. Raises ``StoreError`` for a wrong
        number of keys.
        """
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=False)
        with self._lock:
            removed = self._index.remove_bucket(key_tuple)
            self._mod_count += 1
        return len(removed)

    def delete_by_name(self, namespace: str, name: str) -> bool:
        """Remove the object ``namespace/name`` wherever it is stored; ``True`` if found."""
        with self._lock:
            found = self._index.remove((namespace, name)) is not None
            self._mod_count += 1
        return found

    def clear(self) -> None:
        """Remove every object."""
        with self._lock:
            self._index.clear()
            self._mod_count += 1

    def get(self, *keys: str, copy: bool = False) -> Sequence[Obj]:
        """Objects stored under ``keys`` (all keys, or a prefix), sorted by namespace/name.

        With all keys the result is the bucket's own tuple (shared, immutable).
        Do not mutate the objects; ``copy=True`` returns a list of deep copies.
        Raises ``StoreError`` unless 1 to ``num_keys`` string keys are given.
        """
        index = self._index
        if len(keys) == index.num_keys:
            # Hot path: validate the keys only when nothing is found (a stored bucket
            # can only be reached through string keys).
            try:
                with self._lock:
                    found = index.exact(keys)
            except TypeError:  # an unhashable key
                found = ()
            if not found:
                key_index.check_keys(keys, index.num_keys, partial=False)
        else:
            key_tuple = key_index.check_keys(keys, index.num_keys, partial=True)
            with self._lock:
                found = index.prefix(key_tuple)
        return [store.deep_copy(obj) for obj in found] if copy else found

    async def aget(self, *keys: str, copy: bool = False) -> Sequence[Obj]:
        """``get`` for asyncio callers (it never blocks)."""
        return self.get(*keys, copy=copy)

    def get_by_name(self, namespace: str, name: str) -> Obj | None:
        """The object ``namespace/name`` (shared: do not mutate it), or ``None``."""
        with self._lock:
            return self._index.value_of((namespace, name))

    def list(self, copy: bool = False) -> builtins.list[Obj]:
        """A fresh list of every object, sorted by namespace/name.

        The list is the caller's; the objects are shared (``copy=True`` for copies).
        """
        with self._lock:
            found = self._index.prefix(())
        return [store.deep_copy(obj) for obj in found] if copy else list(found)

    async def alist(self, copy: bool = False) -> builtins.list[Obj]:
        """``list`` for asyncio callers (it never blocks)."""
        return self.list(copy=copy)

    def ref(self, namespace: str, name: str) -> ObjectRef | None:
        """Where ``namespace/name`` is stored and at which resourceVersion, or ``None``."""
        with self._lock:
            keys = self._index.keys_of((namespace, name))
            if keys is None:
                return None
            obj = self._index.value_of((namespace, name))
        assert obj is not None
        return ObjectRef(namespace, name, keys, resource_version(obj))

    def refs(self) -> builtins.list[ObjectRef]:
        """An ``ObjectRef`` for every stored object (unordered)."""
        with self._lock:
            found = [
                (ref, self._index.keys_of(ref), obj) for ref, obj in self._index.items()
            ]
        return [
            ObjectRef(ref[0], ref[1], keys, resource_version(obj))
            for ref, keys, obj in found
            if keys is not None
        ]

