"""Mutation detector: finds shared stored objects that someone changed in place.

Part of the cache layer (client-go's ``KUBE_CACHE_MUTATION_DETECTOR``, in our own
terms). Stores hand out the objects they hold, shared by every reader; in Python
one stray ``pod["metadata"]["labels"]["x"] = ...`` corrupts them all. When
enabled (``KUBEMIRROR_MUTATION_DETECTOR=1``, or ``strict``, or a store's option),
each object is fingerprinted as it enters a store (its JSON bytes), and verified
when it is replaced or deleted, periodically (``MutationDetector.run``), on each
read in strict mode, and around each informer handler call. A change is a
``MutationError`` naming the key and the first changed field. Off by default;
when off, stores are built without it, so no read or write pays anything.
``MutationCheckingIndexer`` is the informer's ``Indexer`` with the detector.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from kubemirror import errors, keys, types
from kubemirror.cache import index, store, thread_safe_store

__all__ = [
    "ENV_VAR",
    "MutationCheckingIndexer",
    "MutationDetector",
    "MutationDetectorOptions",
    "checking_callback",
    "first_difference",
    "resolve_options",
]

log = logging.getLogger(__name__)

ENV_VAR = "KUBEMIRROR_MUTATION_DETECTOR"
"""``1``/``true``: detector on; ``strict``: also verify every object a read returns."""

_OFF = ("", "0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class MutationDetectorOptions:
    """How a store's mutation detector runs.

    ``check_every``: seconds between checks of every stored object by the owner's
    loop (0: only at replace/delete, reads and handler calls). ``strict``: verify
    each object a read returns, and raise ``MutationError`` to the reader.
    """

    check_every: float = 1.0
    strict: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ
                         ) -> MutationDetectorOptions | None:
        """The options ``KUBEMIRROR_MUTATION_DETECTOR`` asks for; ``None`` when off.

        Raises ``ConfigError`` naming the variable for a value it does not know.
        """
        value = environ.get(ENV_VAR, "").strip().lower()
        if value in _OFF:
            return None
        if value in _ON:
            return cls()
        if value == "strict":
            return cls(strict=True)
        raise errors.ConfigError("must be 1, 0 or strict", field=ENV_VAR, expression=value)


def resolve_options(option: MutationDetectorOptions | bool | None
                    ) -> MutationDetectorOptions | None:
    """A store's ``mutation_detector`` argument: ``None`` defers to the environment,
    ``False`` turns it off, ``True`` uses the defaults."""
    if option is None:
        return MutationDetectorOptions.from_environment()
    if option is True:
        return MutationDetectorOptions()
    if option is False:
        return None
    return option


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _render(path: list[str | int]) -> str:
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


def first_difference(before: Any, after: Any) -> str | None:
    """The path of the first field that differs, in sorted key order (pure).

    ``None`` if equal; ``""`` if the values themselves differ at the top. Added
    and removed keys count as differing at the key (``metadata.labels['tier']``).
    """
    path: list[str | int] = []
    if _find(before, after, path):
        return _render(path)
    return None


def _find(before: Any, after: Any, path: list[str | int]) -> bool:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            if key not in before or key not in after:
                path.append(str(key))
                return True
            if before[key] is after[key]:
                continue
            path.append(str(key))
            if _find(before[key], after[key], path):
                return True
            path.pop()
        return False
    if isinstance(before, list | tuple) and isinstance(after, list | tuple):
        for i, (b, a) in enumerate(zip(before, after, strict=False)):
            path.append(i)
            if _find(b, a, path):
                return True
            path.pop()
        if len(before) != len(after):
            path.append(min(len(before), len(after)))
            return True
        return False
    return bool(before != after)


def _fingerprint(obj: Any) -> bytes | Any:
    """The object's JSON bytes, or a deep copy when it is not plain JSON."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return store.deep_copy(obj)


def _mutation(key: str, obj: Any, fingerprint: bytes | Any,
              where: str) -> errors.MutationError | None:
    """The ``MutationError`` if ``obj`` no longer matches ``fingerprint``, else ``None``."""
    if isinstance(fingerprint, bytes):
        try:
            now: bytes | None = orjson.dumps(obj)
        except TypeError:
            now = None
        if now == fingerprint:
            return None
        before = orjson.loads(fingerprint)
    else:
        before = fingerprint
    path = first_difference(before, obj)
    if path is None:
        return None  # only the order of keys changed
    return errors.MutationError(key, path, where)


class MutationDetector:
    """Fingerprints of stored objects by key; verifies that they still match.

    ``record(key, obj)`` remembers ``obj`` and its fingerprint (after verifying
    the object it replaces); ``forget`` verifies and drops; ``reset`` does both
    for a whole content. Found mutations are *reported* by writes and periodic
    checks (logged as errors, counted in ``mutations``, passed to
    ``on_mutation``) and *raised* by ``verify``. Each mutation is reported once:
    the fingerprint then follows the changed object. Thread-safe (one lock,
    never held while fingerprinting). Costs one JSON encoding per write and per
    verified object; memory about the objects' JSON size.
    """

    def __init__(self, name: str = "",
                 on_mutation: Callable[[errors.MutationError], None] | None = None) -> None:
        self.name = name
        self.on_mutation = on_mutation
        self.mutations = 0
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Any, bytes | Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, key: str, obj: Any) -> None:
        """Remember ``obj`` as what ``key`` holds; report if the previous one was mutated."""
        fingerprint = _fingerprint(obj)
        with self._lock:
            old = self._entries.get(key)
            self._entries[key] = (obj, fingerprint)
        if old is not None:
            self._check_entry(key, old, "a write")

    def forget(self, key: str) -> None:
        """Drop ``key``, reporting if its object was mutated."""
        with self._lock:
            old = self._entries.pop(key, None)
        if old is not None:
            self._check_entry(key, old, "a delete")

    def reset(self, items: Mapping[str, Any]) -> None:
        """Replace everything with ``items`` (key -> object), verifying what was there."""
        new = {key: (obj, _fingerprint(obj)) for key, obj in items.items()}
        with self._lock:
            old, self._entries = self._entries, new
        for key, entry in old.items():
            self._check_entry(key, entry, "a replace")

    def verify(self, key: str, obj: Any, where: str = "a read") -> None:
        """Raise ``MutationError`` if ``obj``, recorded under ``key``, has changed.

        Objects not (or no longer) recorded under ``key`` are not checked.
        """
        entry = self._entries.get(key)
        if entry is None or entry[0] is not obj:
            return
        error = self._difference(key, entry, where)
        if error is not None:
            self._count(error)
            raise error

    def verify_all(self) -> list[errors.MutationError]:
        """Check every recorded object; report and return the mutations found."""
        with self._lock:
            entries = list(self._entries.items())
        found = []
        for key, entry in entries:
            error = self._check_entry(key, entry, "the periodic check")
            if error is not None:
                found.append(error)
        return found

    async def run(self, every: float) -> None:
        """``verify_all`` every ``every`` seconds in a worker thread, until cancelled."""
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(self.verify_all)

    def _check_entry(self, key: str, entry: tuple[Any, bytes | Any],
                     where: str) -> errors.MutationError | None:
        error = self._difference(key, entry, where)
        if error is not None:
            self._count(error)
            log.error("%s%s", f"{self.name}: " if self.name else "", error)
            if self.on_mutation is not None:
                self.on_mutation(error)
        return error

    def _difference(self, key: str, entry: tuple[Any, bytes | Any],
                    where: str) -> errors.MutationError | None:
        error = _mutation(key, entry[0], entry[1], where)
        if error is not None:
            # Follow the change, so that it is reported once.
            with self._lock:
                if self._entries.get(key) is entry:
                    self._entries[key] = (entry[0], _fingerprint(entry[0]))
        return error

    def _count(self, error: errors.MutationError) -> None:
        with self._lock:
            self.mutations += 1


class MutationCheckingIndexer(index.Indexer):
    """An ``Indexer`` whose objects a ``MutationDetector`` watches over.

    Same contract as ``Indexer``; every write records or forgets fingerprints
    (reporting, never raising, a mutation it finds). With ``strict`` the instance
    is a subclass whose reads verify the objects they return (raising
    ``MutationError``); without, reads are the plain ``Indexer``'s. Build one only
    when the detector is on: the plain ``Indexer`` pays nothing.
    """

    __slots__ = ("detector",)

    def __new__(cls, *args: Any, strict: bool = False, **kwargs: Any) -> MutationCheckingIndexer:
        if strict and cls is MutationCheckingIndexer:
            cls = _StrictMutationCheckingIndexer
        return super().__new__(cls)

    def __init__(
        self,
        key_func: types.KeyFunc = keys.meta_namespace_key,
        indexers: thread_safe_store.Indexers | None = None,
        *,
        detector: MutationDetector | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(key_func, indexers)
        self.detector = detector if detector is not None else MutationDetector()

    @property
    def strict(self) -> bool:
        """Whether reads verify what they return."""
        return False

    def add(self, obj: Any) -> None:
        self.update(obj)

    def update(self, obj: Any) -> None:
        key = self.key_of(obj)
        super().update(obj)
        self.detector.record(key, obj)

    def delete(self, obj: Any) -> None:
        key = self.key_of(obj)
        super().delete(obj)
        self.detector.forget(key)

    def update_by_key(self, key: str, obj: Any) -> None:
        super().update_by_key(key, obj)
        self.detector.record(key, obj)

    def swap_by_key(self, key: str, obj: Any) -> Any | None:
        replaced = super().swap_by_key(key, obj)
        self.detector.record(key, obj)
        return replaced

    def delete_by_key(self, key: str) -> None:
        super().delete_by_key(key)
        self.detector.forget(key)

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        objs = list(objs)
        super().replace(objs, resource_version)
        self.detector.reset({self.key_of(obj): obj for obj in objs})


class _StrictMutationCheckingIndexer(MutationCheckingIndexer):
    """``MutationCheckingIndexer(strict=True)``: reads verify what they return."""

    __slots__ = ()

    @property
    def strict(self) -> bool:
        return True

    def _checked(self, objs: builtins.list[Any]) -> builtins.list[Any]:
        for obj in objs:
            self.detector.verify(self.key_of(obj), obj)
        return objs

    def list(self, *, copy: bool = False) -> builtins.list[Any]:
        return super().list(copy=True) if copy else self._checked(super().list())

    def get_by_key(self, key: str, *, copy: bool = False) -> Any | None:
        obj = super().get_by_key(key, copy=copy)
        if not copy and obj is not None:
            self.detector.verify(key, obj)
        return obj

    def get(self, obj: Any, *, copy: bool = False) -> Any | None:
        return self.get_by_key(self.key_of(obj), copy=copy)

    def get_view_by_key(self, key: str) -> Any | None:
        return self.get_by_key(key)

    def swap_by_key(self, key: str, obj: Any) -> Any | None:
        replaced = self.get_by_key(key)  # verified, as every read in strict mode
        self.update_by_key(key, obj)
        return replaced

    def by_index(self, index_name: str, value: str, *, copy: bool = False
                 ) -> builtins.list[Any]:
        found = super().by_index(index_name, value, copy=copy)
        return found if copy else self._checked(found)

    def index(self, index_name: str, obj: Any, *, copy: bool = False) -> builtins.list[Any]:
        found = super().index(index_name, obj, copy=copy)
        return found if copy else self._checked(found)


def checking_callback(callback: Callable[..., Any], key_of: Callable[[Any], str],
                      name: str) -> Callable[..., Any]:
    """Wrap a handler callback: fingerprint its object arguments before the call and
    raise ``MutationError`` after it (or after its coroutine) if one changed."""

    def fingerprints(args: tuple[Any, ...]) -> list[bytes | Any]:
        return [_fingerprint(arg) for arg in args]

    def check(args: tuple[Any, ...], before: list[bytes | Any]) -> None:
        for arg, fingerprint in zip(args, before, strict=True):
            error = _mutation(_key(arg), arg, fingerprint, name)
            if error is not None:
                raise error

    def _key(obj: Any) -> str:
        try:
            return key_of(obj)
        except errors.KubemirrorError:
            return type(obj).__name__

    async def finish(result: Any, args: tuple[Any, ...], before: list[bytes | Any]) -> Any:
        value = await result
        check(args, before)
        return value

    def wrapper(*args: Any) -> Any:
        before = fingerprints(args)
        result = callback(*args)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            return finish(result, args, before)
        check(args, before)
        return result

    wrapper.__qualname__ = getattr(callback, "__qualname__", type(callback).__name__)
    return wrapper
