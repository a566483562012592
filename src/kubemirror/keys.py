"""Object keys: ``namespace/name`` keys, explicit keys, tombstones and the namespace index.

The bottom layer of kubemirror (client-go ``tools/cache`` key functions). Pure
functions, no state, safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemirror import errors

__all__ = [
    "DeletedFinalStateUnknown",
    "ExplicitKey",
    "deletion_handling_meta_namespace_key",
    "meta_namespace_index_func",
    "meta_namespace_key",
    "object_key",
    "split_meta_namespace_key",
]


class ExplicitKey(str):
    """A key given directly instead of an object; key functions return it as is."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """A tombstone: ``key`` was deleted while the watch was not looking.

    ``obj`` is the last state known before the deletion and may be stale (or
    ``None``). Produced by ``DeltaFIFO.replace`` for keys missing from a relist.
    """

    key: str
    obj: Any


def meta_namespace_key(obj: Any) -> str:
    """Return ``"namespace/name"``, or ``"name"`` for cluster-scoped objects.

    Accepts an ``ExplicitKey`` (returned unchanged) and a ``DeletedFinalStateUnknown``
    (its key). Raises ``KeyFuncError`` naming the object when it has no
    ``metadata.name``.
    """
    if isinstance(obj, ExplicitKey):
        return obj
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    try:
        meta = obj["metadata"]
        name = meta["name"]
    except (KeyError, TypeError, IndexError):
        raise errors.KeyFuncError(obj, "object has no metadata.name") from None
    if not isinstance(name, str) or not name:
        raise errors.KeyFuncError(obj, f"metadata.name must be a non-empty string, got {name!r}")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return object_key(namespace, name)


def object_key(namespace: str | None, name: str) -> str:
    """The key of the object ``name`` in ``namespace``: ``"namespace/name"``, or ``"name"``
    when ``namespace`` is empty or None (client-go's ``ObjectName.String``). The one
    rule every store, lister and index of kubemirror keys objects by."""
    return f"{namespace}/{name}" if namespace else name


def deletion_handling_meta_namespace_key(obj: Any) -> str:
    """Alias of ``meta_namespace_key``, which already unwraps tombstones."""
    return meta_namespace_key(obj)


def split_meta_namespace_key(key: str) -> tuple[str, str]:
    """Split a key made by ``meta_namespace_key`` into ``(namespace, name)``.

    As client-go's ``SplitMetaNamespaceKey``: one part is a cluster-scoped name
    (``namespace`` ``""``), two parts are namespace and name, either possibly empty
    (``"/a"`` gives ``("", "a")``, ``"ns/"`` gives ``("ns", "")``). Raises
    ``KeyFuncError`` for a key with more than one ``/``.
    """
    parts = key.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise errors.KeyFuncError(ExplicitKey(key), f"unexpected key format {key!r}")


def meta_namespace_index_func(obj: Any) -> list[str]:
    """Index function returning ``[namespace]`` (``[""]`` for cluster-scoped objects)."""
    if isinstance(obj, DeletedFinalStateUnknown):
        obj = obj.obj
    try:
        meta = obj["metadata"]
    except (KeyError, TypeError):
        raise errors.KeyFuncError(obj, "object has no metadata") from None
    return [meta.get("namespace") or ""]
