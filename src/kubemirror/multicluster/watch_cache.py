"""The watch cache of one resource type: a bounded window of recent events and its watches.

Multicluster layer, under ``storage`` (Clusterpedia memory storage v2's watch
cache). Each ``ResourceStorage`` appends every write to its ``WatchCache``, a
ring of the last ``event_window`` ``StorageEvent``s; each ``Watch`` reads that
ring through its own cursor, so one JSON encoding per event serves every
watcher. A watcher that falls more than ``max_watch_lag`` events behind is cut
off and may resume from its last resourceVersion; an idle watch that allows
bookmarks gets one every ``bookmark_interval`` seconds; a ``sendInitialEvents``
watch replays a snapshot and ends it with a bookmark annotated
``INITIAL_EVENTS_END_ANNOTATION``. Events and stored objects are shared: do not
mutate them.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, cast

import orjson

from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster import status
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.types import INITIAL_EVENTS_END_ANNOTATION, Obj

__all__ = [
    "INITIAL_EVENTS_END_ANNOTATION",
    "StorageEvent",
    "StorageState",
    "StoredObject",
    "Watch",
    "WatchCache",
]

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]

_READ_BATCH = 1024


class StoredObject:
    """One stored version of an object, with its JSON encoding computed once on demand.

    The element shared by the storage's maps, LIST pages and watch events.
    Immutable after construction (the encoding and, for an object built from its
    JSON, the decoded dict are cached lazily and never change). ``object`` is
    shared: do not mutate it.
    """

    __slots__ = (
        "_encoded",
        "_object",
        "_selectable",
        "cluster",
        "index",
        "key",
        "namespace",
        "original_rv",
    )

    def __init__(
        self,
        obj: Obj | None,
        *,
        cluster: str,
        key: str,
        namespace: str,
        index: int,
        original_rv: str,
        encoded: bytes | None = None,
        selectable: Obj | None = None,
    ) -> None:
        if obj is None and encoded is None:
            raise ValueError("a StoredObject needs the object or its JSON")
        self._object = obj
        self._selectable = selectable
        self.cluster = cluster
        self.key = key
        self.namespace = namespace
        self.index = index
        self.original_rv = original_rv
        self._encoded: bytes | None = encoded
        """``encoded``, when given, must be the JSON of ``obj``. With ``obj`` ``None`` the
        JSON is decoded on first use of ``object`` and kept (a database row served
        without decoding), or, *compact*, with ``selectable`` given (the parts of the
        object selectors read), decoded on every use and never kept."""

    @property
    def object(self) -> Obj:
        """The stored object (shared; do not mutate). A compact entry decodes it anew."""
        obj = self._object
        if obj is None:
            obj = orjson.loads(cast(bytes, self._encoded))
            if self._selectable is None:
                self._object = obj
        return obj

    @property
    def selectable(self) -> Obj:
        """What label and field selectors read: the object, or a compact entry's skeleton
        of it (labels, name, namespace and the type's selectable fields)."""
        selectable = self._selectable
        return self.object if selectable is None else selectable

    def encoded(self) -> bytes:
        """``orjson`` encoding of ``object``, cached."""
        data = self._encoded
        if data is None:
            data = self._encoded = orjson.dumps(self._object)
        return data


class StorageEvent:
    """A watch event: ``type`` and the stored ``object`` version it carries.

    ``index`` orders it among all storage events (bookmarks carry the index they
    vouch for); ``previous`` is the version it replaced (``None`` for ADDED and
    bookmarks). ``line()`` is the watch-stream JSON line, encoded once and shared.
    """

    __slots__ = ("_left", "_line", "entry", "index", "previous", "type")

    def __init__(
        self,
        type_: EventType,
        entry: StoredObject,
        index: int,
        previous: StoredObject | None = None,
    ) -> None:
        self.type = type_
        self.entry = entry
        self.index = index
        self.previous = previous
        self._line: bytes | None = None
        self._left: StorageEvent | None = None

    @property
    def object(self) -> Obj:
        """The object carried by the event (shared; do not mutate)."""
        return self.entry.object

    @property
    def cluster(self) -> str:
        """The cluster the object belongs to (``""`` for bookmarks)."""
        return self.entry.cluster

    def line(self) -> bytes:
        """``{"type":...,"object":...}\\n`` as sent on a watch stream, cached."""
        data = self._line
        if data is None:
            data = self._line = b"".join(
                (b'{"type":"', self.type.encode(), b'","object":', self.entry.encoded(), b"}\n")
            )
        return data

    def as_watch_event(self) -> dict[str, Any]:
        """The event as a ``WatchEvent``-shaped dict (the object is shared)."""
        return {"type": self.type, "object": self.entry.object}

    def retyped(self, type_: EventType) -> StorageEvent:
        """The same object under another event type (selector transitions)."""
        return StorageEvent(type_, self.entry, self.index, self.previous)

    def left_selection(self) -> StorageEvent:
        """The DELETED event a watcher gets when this MODIFIED event moves the object
        out of its selection: the previous (last matching) state at this event's
        resourceVersion, as kube-apiserver sends it. Built once, shared."""
        left = self._left
        if left is None:
            previous = self.previous if self.previous is not None else self.entry
            meta = dict(previous.object.get("metadata") or {})
            meta["resourceVersion"] = (self.entry.object.get("metadata") or {}).get(
                "resourceVersion"
            )
            entry = StoredObject(
                {**previous.object, "metadata": meta},
                cluster=self.entry.cluster,
                key=self.entry.key,
                namespace=self.entry.namespace,
                index=self.entry.index,
                original_rv=self.entry.original_rv,
            )
            left = self._left = StorageEvent("DELETED", entry, self.index, self.previous)
        return left


class StorageState(Protocol):
    """What a watch cache reads live from the storage that owns it (``MemoryStorage``).

    The settings may change while watches run; they are read on every use.
    """

    @property
    def prefix(self) -> str:
        """This storage instance's resourceVersion prefix."""

    @property
    def index(self) -> int:
        """The newest index issued across the whole storage."""

    @property
    def max_watch_lag(self) -> int:
        """How many events a watcher may fall behind before it is cut off."""

    @property
    def bookmark_interval(self) -> float:
        """Seconds an idle watch that allows bookmarks waits before getting one."""


class WatchCache:
    """The recent events of one resource type and the watches reading them.

    Thread-safe: shares the owning storage's lock (``append`` expects the caller
    to hold it, as the write it records must be atomic with it); watchers must
    all iterate on one event loop, and writers on any thread wake them. Keeps
    the last ``capacity`` events; ``append`` is O(1) plus one wake-up, starting
    a watch from a version is O(log capacity).
    """

    def __init__(
        self,
        state: StorageState,
        lock: threading.RLock,
        *,
        capacity: int,
        kind: str,
        api_version: str,
    ) -> None:
        self._state = state
        self._lock = lock
        self._capacity = capacity
        self._kind = kind
        self._api_version = api_version
        self._ring: list[StorageEvent | None] = [None] * capacity
        self._ring_indexes: list[int] = [0] * capacity
        self._next_seq = 0
        self._dropped_index = 0
        self._dropped_original: dict[str, int] = {}
        self._wakeup: asyncio.Future[None] | None = None
        self._watchers = 0

    @property
    def watcher_count(self) -> int:
        """Number of open watches."""
        return self._watchers

    @property
    def latest_index(self) -> int:
        """Index of the newest event of this resource type (0 before the first). Lock held."""
        if not self._next_seq:
            return 0
        return self._ring_indexes[(self._next_seq - 1) % self._capacity]

    def append(self, event: StorageEvent) -> None:
        """Record ``event`` (evicting the oldest when full) and wake the watchers. Lock held."""
        slot = self._next_seq % self._capacity
        old = self._ring[slot]
        if old is not None:
            self._dropped_index = old.index
            try:
                orig = int(old.entry.original_rv)
            except ValueError:
                orig = 0
            if orig > self._dropped_original.get(old.cluster, -1):
                self._dropped_original[old.cluster] = orig
        self._ring[slot] = event
        self._ring_indexes[slot] = event.index
        self._next_seq += 1
        waiter = self._wakeup
        if waiter is not None:
            self._wakeup = None
            _wake(waiter)

    def load(self, events: builtins.list[StorageEvent], floor: int) -> None:
        """Replace the window with ``events`` (oldest first, at most ``capacity``) read
        back from a durable log, whose events up to index ``floor`` are unknown: a
        watch from an older version gets ``GoneError``. Lock held; no watch may be open.
        """
        self._ring = [None] * self._capacity
        self._ring_indexes = [0] * self._capacity
        self._next_seq = 0
        self._dropped_original = {}
        for event in events[-self._capacity :]:
            self.append(event)
        self._dropped_index = max(self._dropped_index, floor)

    def forget_before(self, index: int) -> None:
        """Declare every event up to ``index`` unknown (a gap in a durable log that was
        trimmed): watches positioned before it are cut off as lagging. Lock held."""
        self._dropped_index = max(self._dropped_index, index)
        # every open cursor now points before the oldest retained event
        self._next_seq += self._capacity + 1
        self._ring = [None] * self._capacity
        self._ring_indexes = [index] * self._capacity
        waiter = self._wakeup
        if waiter is not None:
            self._wakeup = None
            _wake(waiter)

    def watch(
        self,
        flt: ObjectFilter,
        start: rvs.WatchStart,
        *,
        resource_version: str,
        initial: list[StoredObject] | None,
        initial_end_bookmark: bool,
        allow_bookmarks: bool,
        initial_index: int | None = None,
    ) -> Watch:
        """Open a watch; the caller holds the lock (``initial`` is its snapshot).

        With ``initial`` the watch replays it as ADDED events (ending with an
        annotated bookmark if ``initial_end_bookmark``), then streams what comes
        after: after ``initial_index`` when the snapshot was read elsewhere at
        that index (``GoneError`` if the window already lost events after it),
        else from now on. Otherwise it streams from ``start``: from now on, after
        a version (``GoneError`` once it left the window, a ``504`` ApiError when
        newer than the storage), or after per-cluster original versions.
        ``resource_version`` is the request's, for the error messages.
        """
        prefix = self._state.prefix
        current = self._state.index
        cluster_floor: dict[str, int] | None = None
        index = start.index
        if initial is not None and initial_index is not None:
            if initial_index < self._dropped_index:
                raise status.expired(
                    "the watch window moved past the initial snapshot; start the watch again"
                )
            cursor = self.first_seq_after(initial_index)
            current = initial_index
        elif initial is not None:
            cursor = self._next_seq
        elif start.cluster_versions is not None:
            cluster_floor = {}
            for cluster, rv in start.cluster_versions.items():
                try:
                    floor = int(rv)
                except ValueError:
                    raise status.bad_request(
                        f"invalid resource version {rv!r} for cluster {cluster!r}"
                    ) from None
                if self._dropped_original.get(cluster, -1) > floor:
                    raise status.expired(f"too old resource version {rv!r} for cluster {cluster!r}")
                cluster_floor[cluster] = floor
            cursor = max(0, self._next_seq - self._capacity)
        elif index is None:
            cursor = self._next_seq
        else:
            if index > current:
                raise status.too_large_resource_version(
                    resource_version, rvs.to_list_resource_version(prefix, current)
                )
            if index < self._dropped_index:
                oldest = rvs.to_list_resource_version(prefix, self._dropped_index)
                raise status.expired(
                    f"too old resource version: {resource_version} (oldest: {oldest})"
                )
            cursor = self.first_seq_after(index)
        self._watchers += 1
        return Watch(
            self,
            flt,
            cursor=cursor,
            index=current,
            initial=initial,
            initial_end_bookmark=initial_end_bookmark,
            allow_bookmarks=allow_bookmarks,
            cluster_floor=cluster_floor,
            now_index=current if cluster_floor is not None else None,
        )

    def events_after(self, index: int) -> builtins.list[StorageEvent]:
        """The retained events with an index above ``index``, oldest first. Lock held.

        Raises ``GoneError`` (410 Expired) when some already left the ring.
        """
        if index < self._dropped_index:
            oldest = rvs.to_list_resource_version(self._state.prefix, self._dropped_index)
            raise status.expired(f"too old resource version: only events after {oldest} "
                                 "are kept in memory")
        ring, cap = self._ring, self._capacity
        return [cast(StorageEvent, ring[seq % cap])
                for seq in range(self.first_seq_after(index), self._next_seq)]

    def states_at(self, index: int) -> dict[tuple[str, str], StoredObject | None]:
        """The state at ``index`` of every object written after it, by ``(cluster, key)``:
        the version the first later event replaced (``None``: it did not exist yet).
        The current state with these undone is the state at ``index``. Raises
        ``GoneError`` (410 Expired) when later events already left the ring (see
        ``events_after``). O(events after ``index``). Lock held."""
        states: dict[tuple[str, str], StoredObject | None] = {}
        for event in self.events_after(index):
            entry = event.entry
            states.setdefault((entry.cluster, entry.key), event.previous)
        return states

    def first_seq_after(self, index: int) -> int:
        """Sequence number of the first retained event with an index above ``index``. Lock held."""
        lo = max(0, self._next_seq - self._capacity)
        hi = self._next_seq
        while lo < hi:
            mid = (lo + hi) // 2
            if self._ring_indexes[mid % self._capacity] <= index:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def read(self, cursor: int) -> tuple[builtins.list[StorageEvent], int, bool]:
        """Events from ``cursor`` on (at most one batch), the next cursor, and ``lost``
        (True when they already left the ring)."""
        with self._lock:
            end = min(self._next_seq, cursor + _READ_BATCH)
            if cursor < self._next_seq - self._capacity:
                return [], cursor, True
            ring, cap = self._ring, self._capacity
            events = [cast(StorageEvent, ring[seq % cap]) for seq in range(cursor, end)]
            return events, end, False

    def _lag(self, cursor: int) -> int:
        return self._next_seq - cursor

    def _waiter(self) -> asyncio.Future[None]:
        with self._lock:
            waiter = self._wakeup
            if waiter is None or waiter.done():
                waiter = self._wakeup = asyncio.get_running_loop().create_future()
            return waiter

    def _wake_watchers(self) -> None:
        with self._lock:
            waiter = self._wakeup
        if waiter is not None:
            _wake(waiter)

    def _watch_closed(self) -> None:
        with self._lock:
            self._watchers -= 1

    def _bookmark(self, index: int, annotations: dict[str, str] | None = None) -> StorageEvent:
        meta: dict[str, Any] = {
            "resourceVersion": rvs.to_list_resource_version(self._state.prefix, index)
        }
        if annotations:
            meta["annotations"] = annotations
        obj = {"kind": self._kind, "apiVersion": self._api_version, "metadata": meta}
        entry = StoredObject(obj, cluster="", key="", namespace="", index=index, original_rv="")
        return StorageEvent("BOOKMARK", entry, index)

    def _caught_up_index(self, cursor: int) -> int | None:
        """The storage index a caught-up watcher can vouch for, else ``None``."""
        with self._lock:
            if cursor == self._next_seq:
                return self._state.index
            return None


def _wake(waiter: asyncio.Future[None]) -> None:
    loop = waiter.get_loop()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if not waiter.done():
            waiter.set_result(None)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
        loop.call_soon_threadsafe(_set_done, waiter)


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Watch:
    """An open watch: an async iterator of ``StorageEvent``s, in storage order.

    Not thread-safe: iterate from one task. Ends (``StopAsyncIteration``) after
    ``stop()`` or when cut off for lagging (``cut_off`` is then True and the
    consumer may resume from ``resource_version``). Label and field selectors
    apply to events: an object that stops matching arrives as DELETED, one that
    starts matching as ADDED. Use as an async context manager or call ``stop()``.
    """

    def __init__(
        self,
        cache: WatchCache,
        flt: ObjectFilter,
        *,
        cursor: int,
        index: int,
        initial: list[StoredObject] | None,
        initial_end_bookmark: bool,
        allow_bookmarks: bool,
        cluster_floor: dict[str, int] | None,
        now_index: int | None,
    ) -> None:
        self._cache = cache
        self._filter = flt
        self._cursor = cursor
        self._backlog_end = cache._next_seq
        self._pending: collections.deque[StorageEvent] = collections.deque()
        self._allow_bookmarks = allow_bookmarks
        self._cluster_floor = cluster_floor
        self._now_index = now_index
        self._stopped = False
        self._closed = False
        self.cut_off = False
        self.last_index = index
        """Index of the newest event delivered (or vouched for by a bookmark)."""
        if initial is not None:
            for entry in initial:
                if flt.matches_object(entry.selectable):
                    self._pending.append(StorageEvent("ADDED", entry, entry.index))
            if initial_end_bookmark:
                self._pending.append(
                    cache._bookmark(index, {INITIAL_EVENTS_END_ANNOTATION: "true"})
                )

    @property
    def resource_version(self) -> str:
        """The list resourceVersion to resume from after this watch ends."""
        return rvs.to_list_resource_version(self._cache._state.prefix, self.last_index)

    def stop(self) -> None:
        """End the watch; a pending ``__anext__`` returns StopAsyncIteration soon after."""
        self._stopped = True
        self._close()
        self._cache._wake_watchers()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cache._watch_closed()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __aiter__(self) -> AsyncIterator[StorageEvent]:
        return self

    def _accept(self, event: StorageEvent) -> StorageEvent | None:
        flt = self._filter
        entry = event.entry
        if not flt.in_scope(entry.cluster, entry.namespace):
            return None
        if self._cluster_floor is not None:
            floor = self._cluster_floor.get(entry.cluster)
            if floor is None:
                if event.index <= (self._now_index or 0):
                    return None
            else:
                try:
                    if int(entry.original_rv) <= floor:
                        return None
                except ValueError:
                    pass
        if flt.selects_everything_in_scope:
            return event
        now = flt.matches_object(entry.selectable)
        if event.type == "MODIFIED" and event.previous is not None:
            before = flt.matches_object(event.previous.selectable)
            if now and before:
                return event
            if now:
                return event.retyped("ADDED")
            if before:
                return event.left_selection()
            return None
        if event.type == "DELETED" and event.previous is not None:
            return event if flt.matches_object(event.previous.selectable) or now else None
        return event if now else None

    def _pop(self) -> StorageEvent:
        event = self._pending.popleft()
        if event.index > self.last_index:
            self.last_index = event.index
        return event

    def _fill(self) -> bool:
        """Move the events available now into the pending queue; False when none were."""
        cache = self._cache
        # Lag counts only events that arrived after the watch started: a watch that
        # resumes from an old version may work through its backlog at its own pace.
        if cache._lag(max(self._cursor, self._backlog_end)) > cache._state.max_watch_lag:
            self._cut()
            return False
        events, self._cursor, lost = cache.read(self._cursor)
        if lost:
            self._cut()
            return False
        for event in events:
            accepted = self._accept(event)
            if accepted is not None:
                self._pending.append(accepted)
            elif event.index > self.last_index and not self._pending:
                self.last_index = event.index
        return bool(events)

    async def __anext__(self) -> StorageEvent:
        cache = self._cache
        while True:
            if self._pending:
                return self._pop()
            if self._stopped:
                self._close()
                raise StopAsyncIteration
            if self._fill() or self._stopped:
                continue
            waiter = cache._waiter()
            if cache._lag(self._cursor) > 0 or self._stopped:
                continue
            timeout = cache._state.bookmark_interval if self._allow_bookmarks else None
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            if not done and not self._stopped:
                index = cache._caught_up_index(self._cursor)
                if index is not None and index >= self.last_index:
                    self._pending.append(cache._bookmark(index))

    async def next_batch(self, max_events: int = 1024) -> builtins.list[StorageEvent]:
        """Wait for at least one event, then return every event available now (up to
        ``max_events``) without waiting further; ``[]`` once the watch has ended.
        """
        try:
            batch = [await self.__anext__()]
        except StopAsyncIteration:
            return []
        while len(batch) < max_events:
            if not self._pending and (self._stopped or not self._fill()):
                break
            if self._pending:
                batch.append(self._pop())
        return batch

    def _cut(self) -> None:
        self.cut_off = True
        self._stopped = True
