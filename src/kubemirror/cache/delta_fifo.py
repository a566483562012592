"""DeltaFIFO: a queue of per-object change histories, between a Reflector and an Indexer.

Part of the cache layer (client-go ``tools/cache`` ``DeltaFIFO``, ``Delta``, ``Deltas``,
``DeltaType``). A Reflector writes into it (it is a ``Store``); the informer pops
``Deltas`` (everything that happened to one object since it was last popped) and
applies them to its Indexer, which the queue consults as its "known objects" to
turn a relist into the deletions the watch missed.
"""

from __future__ import annotations

import builtins
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubemirror import errors, keys, types
from kubemirror.cache import queue, store

__all__ = ["ApplyFunc", "Delta", "DeltaFIFO", "DeltaType", "Deltas"]

log = logging.getLogger(__name__)


class DeltaType(enum.StrEnum):
    """What happened to an object; the value is client-go's wire name."""

    ADDED = "Added"
    UPDATED = "Updated"
    DELETED = "Deleted"
    REPLACED = "Replaced"
    """Listed again by a relist (``emit_delta_type_replaced=True``); may have changed."""
    SYNC = "Sync"
    """Re-delivered unchanged by a periodic resync (or by a relist, by default)."""


@dataclass(frozen=True, slots=True)
class Delta:
    """One change: its type and the object's state after it (before it, for a delete).

    For a delete detected by a relist, ``object`` is a ``DeletedFinalStateUnknown``
    carrying the last state the queue or its known objects had seen.
    """

    type: DeltaType
    object: Any


class Deltas(tuple[Delta, ...]):
    """The changes to one object, oldest first; never empty when popped. Immutable."""

    __slots__ = ()

    def oldest(self) -> Delta | None:
        """The first change, or ``None`` if empty."""
        return self[0] if self else None

    def newest(self) -> Delta | None:
        """The last change, or ``None`` if empty."""
        return self[-1] if self else None

    def __repr__(self) -> str:
        return f"Deltas({list(self)!r})"


_DELETED = DeltaType.DELETED
_DFSU = keys.DeletedFinalStateUnknown

ApplyFunc = Callable[[str, DeltaType, Any, bool], None]
"""``apply(key, type, obj, at_once)``: a consumer applying one delta where it is made
(``DeltaFIFO(apply=...)``); ``at_once`` is true for a write applied as it came, with
nothing queued before it."""


class DeltaFIFO(queue.KeyedQueue[Deltas]):
    """A producer/consumer queue of ``Deltas`` per key, popped in first-change order.

    Writes append a ``Delta`` to the key's history (queueing the key if it was not
    queued): ``add`` -> Added, ``update`` -> Updated, ``delete`` -> Deleted. Two
    consecutive Deleted deltas collapse into one, keeping the one that knows more (a
    real delete wins over a ``DeletedFinalStateUnknown``). Deleting a key that is
    neither queued, nor being processed, nor in ``known_objects`` is a no-op: it was
    already reported (typically by a relist).

    ``replace(objs)`` (a relist) queues Sync, or Replaced when
    ``emit_delta_type_replaced``, for every listed object, and a Deleted delta
    carrying ``DeletedFinalStateUnknown(key, last_known_state)`` for every key known
    before and not listed: queued keys, keys being processed, and the keys of
    ``known_objects`` (the consumer's store, usually the informer's Indexer).
    ``resync()`` queues Sync for each known object that has nothing queued or in
    process. The first ``replace`` defines the initial population: ``has_synced()``
    turns true once all of it has been processed (or at once if another write came
    first).

    ``pop(process)`` takes the oldest key's ``Deltas`` and calls ``process(deltas)``
    *outside* the lock, returning what it returns. While it runs the key is "in
    process": it counts as known (with its newest state; a key whose newest delta is
    a delete counts as gone), another popper will not receive it, and new deltas for
    it queue up behind. If ``process`` raises ``errors.Requeue`` (or is interrupted:
    ``KeyboardInterrupt``, task cancellation) the popped deltas go back *in front of*
    any newer ones for the key (consecutive deletes at the seam collapse as above);
    ``pop`` then returns ``None`` for a ``Requeue()`` without a cause, as client-go's
    ``Pop``, and the exception propagates otherwise; nothing is ever dropped on requeue. Any other
    exception propagates and the deltas count as delivered.

    Blocking: ``pop`` blocks its thread (``timeout`` -> ``TimeoutError``); ``apop`` is
    the asyncio twin (``process`` may be a coroutine function) and never blocks the
    loop. ``close()`` wakes every waiting popper with ``FIFOClosedError``; what is
    still queued may be drained after closing.

    ``transform``, if given, is applied to every object written (not to tombstones)
    before it is keyed and queued, e.g. to strip ``managedFields``; it runs outside
    the lock, the queue owns what it returns, and if it raises nothing is queued.

    Thread safety: any thread. One lock guards the queue; ``process``, ``transform``
    and the key function never run under it. ``known_objects`` *is* read under it
    (so a relist sees it consistent with the keys in process; it must not call back
    into this queue). Deltas returned by ``get``/``pop`` are immutable tuples, the
    objects inside are shared: do not mutate them.

    Apply-at-once mode (``apply``, what the informer uses): the consumer applies
    deltas on the writing thread instead of popping them later. A write finding
    nothing queued or in process calls ``apply(key, type, obj, True)`` instead of
    queueing (a delete only if its key is known, by the rule above); a write
    finding the queue busy queues its delta (by the same rule), then applies the
    oldest key's deltas (``apply_next``), so a stream of writes never builds a
    backlog. A ``replace``
    into an idle queue with no known objects (a first list) calls
    ``apply(key, type, obj, False)`` for every listed object, in list order, and is
    the initial population, processed; other replaces and ``resync`` queue as
    usual for the consumer to drain with ``apply_next``. Contract: in this mode the
    writes and ``apply_next`` come from one thread (the informer's event loop), and
    ``apply`` handles its own errors (what it raises propagates to the writer).

    Complexity: O(1) writes and pops (plus the key's history length); ``replace`` and
    ``resync`` O(queued + known + listed).
    """

    __slots__ = ("_apply", "_emit_replaced", "_in_flight", "_known_contains", "_known_objects",
                 "_transform")

    def __init__(
        self,
        key_func: types.KeyFunc = keys.meta_namespace_key,
        known_objects: store.KeyListerGetter | None = None,
        emit_delta_type_replaced: bool = False,
        *,
        transform: Callable[[Any], Any] | None = None,
        apply: ApplyFunc | None = None,
    ) -> None:
        super().__init__(key_func)
        self._transform = transform
        self._known_objects = known_objects
        # A known store that supports ``key in store`` answers without reading the object
        # (a CompactIndexer's get_by_key decodes it).
        self._known_contains: Callable[[str], bool] | None = getattr(
            known_objects, "__contains__", None)
        self._apply = apply
        self._emit_replaced = emit_delta_type_replaced
        self._in_flight: dict[str, Deltas] = {}  # popped, process() not finished

    def __repr__(self) -> str:
        return (
            f"<DeltaFIFO {len(self._items)} queued, {len(self._in_flight)} in process"
            f"{' closed' if self._closed else ''}>"
        )

    def key_of(self, obj: Any) -> str:
        """Return the key of an object, a ``Deltas`` (its newest object) or a tombstone.

        Raises ``KeyFuncError`` naming the object (also for an empty ``Deltas``).
        """
        if isinstance(obj, Deltas):
            if not obj:
                raise errors.KeyFuncError(obj, "empty Deltas has no key")
            obj = obj[-1].object
        if isinstance(obj, _DFSU):
            return obj.key
        return store.key_of(self._key_func, obj)

    # -- writes --------------------------------------------------------------

    def add(self, obj: Any) -> None:
        """Queue an Added delta for ``obj``. Raises ``KeyFuncError``."""
        self._write(DeltaType.ADDED, obj)

    def update(self, obj: Any) -> None:
        """Queue an Updated delta for ``obj``. Raises ``KeyFuncError``."""
        self._write(DeltaType.UPDATED, obj)

    def delete(self, obj: Any) -> None:
        """Queue a Deleted delta for ``obj`` (an object or a tombstone), if its key is known.

        Known means queued, in process (and not being deleted), or in ``known_objects``.
        """
        if self._transform is not None and not isinstance(obj, _DFSU):
            obj = self._transform(obj)
        key = self.key_of(obj)
        apply = self._apply
        with self._lock:
            self._populated = True
            items = self._items
            busy = bool(items or self._in_flight)
            known = key in items or self._known_locked(key)
            if known and (busy or apply is None):
                self._queue_locked(key, _DELETED, obj)
        if apply is None:
            return
        if busy:
            self.apply_next()  # also after an ignored delete, as after any busy write
        elif known:
            apply(key, _DELETED, obj, True)

    def add_if_not_present(self, deltas: Deltas) -> None:
        """Queue ``deltas`` (as popped earlier) only if nothing is queued for its key.

        Raises ``TypeError`` if ``deltas`` is not a ``Deltas``.
        """
        if not isinstance(deltas, Deltas):
            raise TypeError(f"add_if_not_present takes Deltas, got {type(deltas).__name__}")
        super().add_if_not_present(deltas)

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Queue a relist: Sync/Replaced per listed object, tombstones for known keys not listed.

        ``resource_version`` is accepted for the ``Store`` protocol and not kept. Raises
        ``KeyFuncError`` before changing anything if an object has no key.
        """
        key_of = self.key_of
        transform = self._transform
        objs = [transform(obj) for obj in objs] if transform is not None else list(objs)
        listed_keys = [key_of(obj) for obj in objs]  # no (key, obj) pairs: a tuple each
        action = DeltaType.REPLACED if self._emit_replaced else DeltaType.SYNC
        known = self._known_objects
        apply = self._apply
        with self._lock:
            known_keys = known.list_keys() if known is not None else ()
            if apply is not None and not known_keys and not self._items and not self._in_flight:
                self._populated = True
                self._initial = set()
            else:
                apply = None
                self._queue_replace_locked(listed_keys, objs, action, known_keys)
        if apply is not None:  # applied at once, outside the lock
            for key, obj in zip(listed_keys, objs, strict=True):
                apply(key, action, obj, False)

    def _queue_replace_locked(self, listed_keys: builtins.list[str], objs: builtins.list[Any],
                              action: DeltaType, known_keys: Iterable[str]) -> None:
        """Queue ``replace``'s deltas: the listed objects, then tombstones for the rest."""
        listed = set(listed_keys)
        enqueue = self._queue_locked
        for key, obj in zip(listed_keys, objs, strict=True):
            enqueue(key, action, obj)
        items = self._items
        gone: builtins.list[str] = []
        for key, deltas in list(items.items()):
            if key not in listed:
                gone.append(key)
                enqueue(key, _DELETED, _tombstone(key, deltas[-1].object))
        for key, deltas in self._in_flight.items():
            last = deltas[-1]
            if key not in listed and key not in items and last.type is not _DELETED:
                gone.append(key)
                enqueue(key, _DELETED, _tombstone(key, last.object))
        in_flight = self._in_flight
        for key in known_keys:
            if key in listed or key in items or key in in_flight:
                continue
            gone.append(key)
            enqueue(key, _DELETED, _DFSU(key, self._known_get(key)))
        if not self._populated:
            self._populated = True
            self._initial = listed.union(gone)

    def resync(self) -> None:
        """Queue a Sync delta for every known object with nothing queued or in process.

        Does nothing without ``known_objects``.
        """
        known = self._known_objects
        if known is None:
            return
        with self._lock:
            items, in_flight = self._items, self._in_flight
            for key in known.list_keys():
                if key in items or key in in_flight:
                    continue
                obj = self._known_get(key)
                if obj is not None:
                    self._queue_locked(key, DeltaType.SYNC, obj)

    def apply_next(self) -> bool:
        """Apply-at-once mode: take the oldest key not in process and ``apply`` each of
        its deltas (``at_once`` false); False when nothing can be taken. Never blocks.

        The key is in process meanwhile, and settled as by ``pop`` (``Requeue`` or an
        interruption puts the deltas back). Raises ``TypeError`` without ``apply``.
        """
        apply = self._apply
        if apply is None:
            raise TypeError("apply_next needs DeltaFIFO(apply=...)")
        with self._lock:
            if not self._items:
                return False
            taken = self._take_locked()
        if taken is None:
            return False
        key, deltas = taken
        try:
            for delta in deltas:
                apply(key, delta.type, delta.object, False)
        except BaseException as exc:
            if self._settle(key, deltas, exc):
                return True
            raise
        self._done(key)
        return True

    # -- reads ---------------------------------------------------------------

    def is_idle(self) -> bool:
        """True when nothing is queued and nothing is being processed (a lock-free snapshot)."""
        return not self._items and not self._in_flight

    def list(self) -> builtins.list[Any]:
        """Return the newest object (or tombstone) of every queued key (shared: do not mutate)."""
        with self._lock:
            return [deltas[-1].object for deltas in self._items.values()]

    # -- internals and KeyedQueue hooks (``_locked``: the caller holds the lock) --

    def _write(self, type_: DeltaType, obj: Any) -> None:
        if self._transform is not None:
            obj = self._transform(obj)
        key = self.key_of(obj)
        apply = self._apply
        if apply is not None and not self._items and not self._in_flight:
            # idle: apply at once (one writing thread, see the class docstring)
            self._populated = True
            apply(key, type_, obj, True)
            return
        with self._lock:
            self._populated = True
            self._queue_locked(key, type_, obj)
        if apply is not None:
            self.apply_next()

    def _queue_locked(self, key: str, type_: DeltaType, obj: Any) -> None:
        delta = Delta(type_, obj)
        items = self._items
        old = items.get(key)
        if old is None:
            items[key] = Deltas((delta,))
        elif type_ is _DELETED and old[-1].type is _DELETED:
            if isinstance(old[-1].object, _DFSU):
                items[key] = Deltas((*old[:-1], delta))
            # else: the queued delete already carries the real final state
            return
        else:
            items[key] = Deltas((*old, delta))
        self._waiters.wake_all()

    def _known_locked(self, key: str) -> bool:
        """Whether ``key`` (not queued) is in process or in ``known_objects``."""
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            return in_flight[-1].type is not _DELETED
        contains = self._known_contains
        known = self._known_objects
        if known is None:
            return False
        try:
            if contains is not None:
                return contains(key)
            return known.get_by_key(key) is not None
        except Exception:
            log.exception("known_objects.get_by_key(%r) failed; treating the key as known", key)
            return True

    def _known_get(self, key: str) -> Any | None:
        known = self._known_objects
        if known is None:
            return None
        try:
            return known.get_by_key(key)
        except Exception:
            log.exception("known_objects.get_by_key(%r) failed; tombstone without object", key)
            return None

    def _take_locked(self) -> tuple[str, Deltas] | None:
        items = self._items
        if items:
            in_flight = self._in_flight
            if not in_flight:
                key, deltas = items.popitem(last=False)
            else:
                for key in items:
                    if key not in in_flight:
                        break
                else:
                    return None  # everything queued is being processed by other poppers
                deltas = items.pop(key)
            in_flight[key] = deltas
            return key, deltas
        if self._closed:
            raise errors.FIFOClosedError()
        return None

    def _done(self, key: str) -> None:
        with self._lock:
            del self._in_flight[key]
            self._initial.discard(key)
            if key in self._items:
                self._waiters.wake_all()  # a popper may have skipped it while in process

    def _requeue(self, key: str, deltas: Deltas) -> None:
        with self._lock:
            del self._in_flight[key]
            newer = self._items.get(key)
            if newer is None:
                self._items[key] = deltas
            else:
                self._items[key] = _merge(deltas, newer)
            self._waiters.wake_all()


def _tombstone(key: str, last: Any) -> keys.DeletedFinalStateUnknown:
    if isinstance(last, _DFSU):
        last = last.obj
    return _DFSU(key, last)


def _merge(older: Deltas, newer: Deltas) -> Deltas:
    """``older`` then ``newer``, collapsing a delete/delete pair at the seam."""
    a, b = older[-1], newer[0]
    if a.type is _DELETED and b.type is _DELETED:
        keep = b if isinstance(a.object, _DFSU) else a
        return Deltas((*older[:-1], keep, *newer[1:]))
    return Deltas((*older, *newer))
