"""The ``Store`` seam of the cache layer and the copy helper behind its immutability contract.

``Store`` is what a Reflector writes into and what listers read from (client-go
``tools/cache`` ``Store``, ``KeyLister``, ``KeyGetter``). It is a Protocol: the
Indexer, UndeltaStore, ExpirationCache, the DeltaFIFO and the multicluster storage
all satisfy it without inheriting from anything. Stores share the objects they
hold with their readers; ``deep_copy`` is how a reader gets a private copy.
"""

from __future__ import annotations

import builtins
import copy as _copy
from collections.abc import Iterable
from typing import Any, NoReturn, Protocol, TypeVar, runtime_checkable

import orjson

from kubemirror import errors, types

__all__ = ["KeyGetter", "KeyLister", "KeyListerGetter", "KeyedIndexer", "Store", "deep_copy",
           "key_of"]

T = TypeVar("T")

_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


@runtime_checkable
class KeyLister(Protocol):
    """Anything that can list the keys it holds."""

    def list_keys(self) -> builtins.list[str]: ...


@runtime_checkable
class KeyGetter(Protocol):
    """Anything that can return the object stored under a key (``None`` if absent)."""

    def get_by_key(self, key: str) -> Any | None: ...


@runtime_checkable
class KeyListerGetter(KeyLister, KeyGetter, Protocol):
    """Both: what a ``DeltaFIFO`` consults as its "known objects"."""


@runtime_checkable
class Store(Protocol):
    """Key-addressed object storage that a Reflector can mirror a resource into.

    Keys come from the implementation's key function (``keys.meta_namespace_key`` by
    default). ``add`` and ``update`` both store the object under its key (insert or
    overwrite); ``delete`` removes it (absent keys are ignored); ``replace`` swaps the
    whole content for ``objs`` in one step (``resource_version`` is the list's RV, for
    implementations that track it); ``resync`` is a hook for queue-like stores and a
    no-op for plain ones. ``get``/``get_by_key`` return the stored object or ``None``.

    Implementations are thread-safe, and what they return is shared with the store:
    callers must not mutate it (use ``deep_copy``). Writers replace stored objects,
    they never mutate one in place, so an object handed out stays as it was.
    Write methods raise ``KeyFuncError`` when an object has no key.
    """

    def add(self, obj: Any) -> None: ...

    def update(self, obj: Any) -> None: ...

    def delete(self, obj: Any) -> None: ...

    def list(self) -> builtins.list[Any]: ...

    def list_keys(self) -> builtins.list[str]: ...

    def get(self, obj: Any) -> Any | None: ...

    def get_by_key(self, key: str) -> Any | None: ...

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None: ...

    def resync(self) -> None: ...


@runtime_checkable
class KeyedIndexer(KeyListerGetter, Protocol):
    """A store written by key and read in its stored form: what an informer mirrors into.

    ``index.Indexer`` (decoded dicts) and ``compact.CompactIndexer`` (JSON bytes)
    implement it, so the informer has one route for both. The writer computes
    each key once with ``key_of`` and passes it to ``update_by_key``/
    ``swap_by_key``/``delete_by_key``, which trust it (a wrong key files the
    object wrongly). ``swap_by_key`` returns the view of the object it replaced
    (``None`` for a new key), in the same step as the write.
    ``get_view_by_key``/``list_views`` return what handlers receive, without
    decoding: the stored object itself for an ``Indexer``, its ``RawObject``
    partial view for a ``CompactIndexer``. Thread safety and sharing as ``Store``.
    """

    def key_of(self, obj: Any) -> str: ...

    def update_by_key(self, key: str, obj: Any) -> None: ...

    def swap_by_key(self, key: str, obj: Any) -> Any | None: ...

    def delete_by_key(self, key: str) -> None: ...

    def get_view_by_key(self, key: str) -> Any | None: ...

    def list_views(self) -> builtins.list[Any]: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...


def key_of(key_func: types.KeyFunc, obj: Any) -> str:
    """Return ``key_func(obj)``: the key a store files ``obj`` under.

    Raises ``KeyFuncError`` naming the object when the key function fails; a
    ``KubemirrorError`` it raises itself propagates unchanged. Every store and queue
    of the cache layer computes keys through this, so they fail alike.
    """
    try:
        return key_func(obj)
    except errors.KubemirrorError:
        raise
    except Exception as exc:
        raise errors.KeyFuncError(obj, repr(exc)) from exc


def _not_plain_json(value: object) -> NoReturn:
    raise TypeError(type(value).__name__)


def deep_copy(obj: T) -> T:
    """Return a deep copy of ``obj`` that the caller owns and may mutate.

    Plain decoded JSON (``dict``/``list``/``str``/``int``/``float``/``bool``/``None``)
    is copied through an orjson round trip, about 10x faster than ``copy.deepcopy``.
    Anything orjson would change on the way (subclasses such as ``ExplicitKey``,
    dataclasses such as tombstones, datetimes, non-string keys, integers beyond 64
    bits) falls back to ``copy.deepcopy``. Known difference of the fast path: tuples
    come back as lists and NaN/infinity as ``None`` (decoded JSON has neither).
    """
    try:
        copied: T = orjson.loads(orjson.dumps(obj, default=_not_plain_json, option=_PASSTHROUGH))
    except TypeError:
        return _copy.deepcopy(obj)
    return copied
