"""``MutationCheckingMemoryStore``: a ``MemoryStore`` whose objects a mutation detector guards.

Part of the stores/ layer; the watcher builds it instead of a plain ``MemoryStore``
when the mutation detector is on (``cache.mutation_detector``), so a plain store
pays nothing. Objects are keyed ``namespace/name`` (``name`` when cluster-scoped).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any

from kubemirror import paths
from kubemirror.cache import mutation_detector as detection
from kubemirror.stores.indexed_store import object_ref
from kubemirror.stores.memory_store import MemoryStore
from kubemirror.types import Obj

__all__ = ["MutationCheckingMemoryStore"]


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _key_of(obj: Obj) -> str:
    (namespace, name), _ = object_ref(obj, ())
    return _key(namespace, name)


class MutationCheckingMemoryStore(MemoryStore):
    """A ``MemoryStore`` (same contract) fingerprinting each object it stores.

    Writes record what is stored (after ``ignore_fields``) and report a mutated
    predecessor. With ``strict`` the instance is a subclass whose reads verify
    what they return and raise ``MutationError``; without, reads are the plain
    ``MemoryStore``'s. ``detector.verify_all()`` checks everything (the watcher
    runs it periodically). Thread-safe as ``MemoryStore``; fingerprints are taken
    outside its lock.
    """

    __slots__ = ("detector",)

    def __new__(cls, *args: Any, strict: bool = False, **kwargs: Any
                ) -> MutationCheckingMemoryStore:
        if strict and cls is MutationCheckingMemoryStore:
            cls = _StrictMutationCheckingMemoryStore
        return super().__new__(cls)

    def __init__(
        self,
        num_keys: int,
        ignore_fields: Iterable[str | paths.FieldPath] = (),
        *,
        detector: detection.MutationDetector | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(num_keys, ignore_fields)
        self.detector = detector if detector is not None else detection.MutationDetector()

    @property
    def strict(self) -> bool:
        """Whether reads verify what they return."""
        return False

    def update(self, obj: Obj, keys: Sequence[str]) -> None:
        super().update(obj, keys)
        (namespace, name), _ = object_ref(obj, ())
        stored = super().get_by_name(namespace, name)
        if stored is not None:
            self.detector.record(_key(namespace, name), stored)

    def delete(self, *keys: str) -> int:
        gone = [_key_of(obj) for obj in super().get(*keys)] if keys else []
        removed = super().delete(*keys)
        for key in gone:
            self.detector.forget(key)
        return removed

    def delete_by_name(self, namespace: str, name: str) -> bool:
        found = super().delete_by_name(namespace, name)
        if found:
            self.detector.forget(_key(namespace, name))
        return found

    def clear(self) -> None:
        super().clear()
        self.detector.reset({})


class _StrictMutationCheckingMemoryStore(MutationCheckingMemoryStore):
    """``MutationCheckingMemoryStore(strict=True)``: reads verify what they return."""

    __slots__ = ()

    @property
    def strict(self) -> bool:
        return True

    def _checked(self, objs: Sequence[Obj]) -> Sequence[Obj]:
        for obj in objs:
            self.detector.verify(_key_of(obj), obj)
        return objs

    def get(self, *keys: str, copy: bool = False) -> Sequence[Obj]:
        found = super().get(*keys, copy=copy)
        return found if copy else self._checked(found)

    def get_by_name(self, namespace: str, name: str) -> Obj | None:
        obj = super().get_by_name(namespace, name)
        if obj is not None:
            self.detector.verify(_key(namespace, name), obj)
        return obj

    def list(self, copy: bool = False) -> builtins.list[Obj]:
        found = super().list(copy=copy)
        if not copy:
            self._checked(found)
        return found
