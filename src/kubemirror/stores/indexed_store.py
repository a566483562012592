"""The contract shared by the multi-key stores: ``IndexedStore``, ``ObjectRef``, helpers.

``IndexedStore`` is the seed's ``types.Store`` interface (haproxy-template-ic): objects
indexed by the values of the configured ``IndexBy`` field paths, one string per
path, looked up by all keys or by a prefix of them. ``MemoryStore`` and
``CachedStore`` implement it on ``IndexedStoreBase``; the watcher layer writes into
either.
"""

from __future__ import annotations

import abc
import builtins
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from kubemirror import errors, paths
from kubemirror.stores import key_index
from kubemirror.stores.key_index import NamespacedName
from kubemirror.types import Obj

__all__ = [
    "IndexedStore",
    "IndexedStoreBase",
    "ObjectRef",
    "compile_ignore_fields",
    "object_ref",
    "resource_version",
]


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """What a store knows about one object without holding it.

    ``keys`` is the composite index key it is stored under; ``resource_version`` is
    ``metadata.resourceVersion`` as last written (``""`` if the object had none).
    """

    namespace: str
    name: str
    keys: tuple[str, ...]
    resource_version: str


@runtime_checkable
class IndexedStore(Protocol):
    """Objects indexed by composite keys (one string per ``IndexBy`` path).

    Implementations are thread-safe. Reads share stored objects: never mutate what
    ``get``/``list`` return. An object is identified by its namespace/name: writing
    one that is already stored replaces it (moving it if its keys changed).
    """

    @property
    def num_keys(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def mod_count(self) -> int: ...

    def add(self, obj: Obj, keys: Sequence[str]) -> None: ...

    def update(self, obj: Obj, keys: Sequence[str]) -> None: ...

    def delete(self, *keys: str) -> int: ...

    def delete_by_name(self, namespace: str, name: str) -> bool: ...

    def clear(self) -> None: ...

    def get(self, *keys: str, copy: bool = False) -> Sequence[Obj]: ...

    async def aget(self, *keys: str, copy: bool = False) -> Sequence[Obj]: ...

    def list(self, copy: bool = False) -> builtins.list[Obj]: ...

    async def alist(self, copy: bool = False) -> builtins.list[Obj]: ...

    def ref(self, namespace: str, name: str) -> ObjectRef | None: ...

    def refs(self) -> builtins.list[ObjectRef]: ...


V = TypeVar("V")


class IndexedStoreBase(abc.ABC, Generic[V]):
    """What every ``IndexedStore`` here holds: a ``KeyIndex`` of ``V`` values (objects or
    ``ObjectRef`` s), the one lock guarding it, and the write counter.

    Subclasses implement ``update`` (``add`` is the same upsert) and the other reads
    and writes, holding ``_lock`` around every use of ``_index`` and bumping
    ``_mod_count`` on every write. The properties read without
    the lock (one int each). Raises ``StoreError`` for a ``num_keys`` that is not a
    positive integer.
    """

    __slots__ = ("_index", "_lock", "_mod_count")

    def __init__(self, num_keys: int) -> None:
        self._index: key_index.KeyIndex[V] = key_index.KeyIndex(num_keys)
        self._lock = threading.Lock()
        self._mod_count = 0

    @property
    def num_keys(self) -> int:
        """The number of index keys every object is stored under."""
        return self._index.num_keys

    @property
    def size(self) -> int:
        """The number of objects stored (for a ``CachedStore``: tracked, cached or not)."""
        return len(self._index)

    @property
    def mod_count(self) -> int:
        """Bumped by every ``add``, ``update``, ``delete*`` and ``clear`` call (not by reads
        or fetches).

        Always supported (the Go original reports support separately). Lets a layer
        above cache what it derived from the store and notice any change by
        comparing one integer.
        """
        return self._mod_count

    def add(self, obj: Obj, keys: Sequence[str]) -> None:
        """Store ``obj`` under ``keys``: an upsert, exactly like ``update``.

        Raises ``StoreError`` for a wrong number of keys or an object without
        ``metadata.name``.
        """
        self.update(obj, keys)

    @abc.abstractmethod
    def update(self, obj: Obj, keys: Sequence[str]) -> None:
        """Store ``obj`` under ``keys``, replacing the object with its namespace/name."""


def object_ref(obj: Obj, keys: Sequence[str]) -> tuple[NamespacedName, str]:
    """Return ``((namespace, name), resource_version)`` of ``obj``.

    Raises ``StoreError`` naming ``keys`` when the object has no string
    ``metadata.name``.
    """
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        raise errors.StoreError("object has no metadata", keys)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise errors.StoreError(f"object has no usable metadata.name ({name!r})", keys)
    namespace = meta.get("namespace") or ""
    if not isinstance(namespace, str):
        raise errors.StoreError(f"metadata.namespace must be a string, got {namespace!r}", keys)
    rv = meta.get("resourceVersion") or ""
    return (namespace, name), rv if isinstance(rv, str) else str(rv)


def compile_ignore_fields(
    ignore_fields: Iterable[str | paths.FieldPath],
) -> tuple[paths.FieldPath, ...]:
    """Compile ``IgnoreFields`` expressions (``FieldPath`` values pass through).

    Raises ``FieldPathError`` (a ``ConfigError``) naming ``ignore_fields[i]``.
    """
    items = list(ignore_fields)
    exprs = [item for item in items if isinstance(item, str)]
    compiled = iter(paths.compile_all(exprs, "ignore_fields"))
    return tuple(next(compiled) if isinstance(item, str) else item for item in items)


def resource_version(obj: Obj) -> str:
    """``metadata.resourceVersion`` of ``obj``, or ``""``."""
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""
