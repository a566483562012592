"""Reflector: keeps a store equal to one API collection by listing, then watching.

The ``reflector`` layer (client-go ``tools/cache`` ``Reflector`` and ``Poller``;
the ``ListerWatcher`` seam lives in ``listwatch``). A reflector lists the
collection page by page at one consistent resourceVersion (or streams it with
``sendInitialEvents``), hands the result to ``store.replace``, then applies watch
events from that version on. Every failure is recovered from without losing
state: a watch that ends is resumed from the last version seen, an expired
version (410 Gone, ``Expired`` ERROR event) triggers a relist whose ``replace``
yields the deletes that were missed, a malformed event line makes it re-watch from
the last good version, and every other error backs off exponentially with jitter
(a second ERROR event for a watch from the same version also relists: the version
cannot be resumed from).
Protocol decisions are small pure functions; ``Backoff`` is sans-I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kubemirror import bulk, errors, keys, lifecycle
from kubemirror.backoff import Backoff
from kubemirror.listwatch import EventStream, ListerWatcher, ListOptions
from kubemirror.types import INITIAL_EVENTS_END_ANNOTATION, Obj, WatchEvent

__all__ = [
    "INITIAL_EVENTS_END_ANNOTATION",
    "Backoff",
    "MetricsSink",
    "Poller",
    "Reflector",
    "ReflectorStats",
    "ReflectorStore",
    "TransformFunc",
    "is_initial_events_end",
]

log = logging.getLogger(__name__)

TransformFunc = Callable[[dict[str, Any]], dict[str, Any]]
"""Called on each received object before it is stored (may strip fields in place)."""


class ReflectorStore(Protocol):
    """What a reflector writes to: the write half of ``cache.Store`` (a DeltaFIFO fits too)."""

    def add(self, obj: Any) -> None: ...

    def update(self, obj: Any) -> None: ...

    def delete(self, obj: Any) -> None: ...

    def replace(self, objs: list[Any], resource_version: str = "") -> None: ...

    def resync(self) -> None: ...


class MetricsSink(Protocol):
    """Receives counters and gauges; ``informer.PrometheusMetrics`` is one implementation.

    ``metric`` is one of ``events``, ``lists``, ``relists``, ``errors``, ``malformed_events``
    (counters) or ``store_size``, ``queue_depth`` (gauges), and for drift checks
    (``drift.DriftMonitor``) ``drift_checks``, ``drift_detected``,
    ``drift_objects``, ``drift_repairs``, ``drift_check_errors`` (counters) and
    ``drift_missing``, ``drift_extra``, ``drift_stale`` (gauges); ``resource``
    names the mirror. Called from the event loop; must not block.
    """

    def inc(self, metric: str, resource: str, amount: int = 1) -> None: ...

    def set(self, metric: str, resource: str, value: float) -> None: ...


@dataclass(slots=True)
class ReflectorStats:
    """Plain counters a reflector keeps; read them at any time (updated from its loop only)."""

    lists: int = 0
    relists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    malformed_events: int = 0
    errors: int = 0
    last_error: str = ""


def is_initial_events_end(event: WatchEvent) -> bool:
    """True for the bookmark that closes a streaming list's initial events."""
    if event["type"] != "BOOKMARK":
        return False
    annotations = event["object"].get("metadata", {}).get("annotations") or {}
    return annotations.get(INITIAL_EVENTS_END_ANNOTATION) == "true"


class _StreamingUnsupportedError(Exception):
    """Internal: the server rejected ``sendInitialEvents``; fall back to LIST."""


class _UnresumableWatchError(Exception):
    """Internal: watches from one resourceVersion ended with an ERROR event twice; relist."""


class _RelistRequestedError(Exception):
    """Internal: ``request_relist()`` ended the watch; list again."""


class Reflector(lifecycle.Service):
    """Mirrors one collection into ``store`` by list + watch, forever, until stopped.

    ``store`` receives ``replace(items, rv)`` after each (re)list and
    ``add``/``update``/``delete`` for watch events; a ``DeltaFIFO`` or any
    ``cache.Store`` fits. Objects are passed through ``transform`` first (an
    exception there is logged and the object stored untransformed). Handed-over
    objects are owned by the store. A ``lifecycle.Service`` (``run(stop)``,
    ``start()``/``stop()``, ``async with``) on one event loop; ``stats`` and
    ``last_sync_resource_version`` may be read at any time. ``run`` never raises
    for API, transport or data errors; it logs, counts and recovers.

    ``page_size`` bounds each LIST page (0: unpaginated). ``streaming_list``
    tries a watch with ``sendInitialEvents`` instead of LIST and falls back to
    LIST for good if the server rejects it. ``resync_period`` > 0 calls
    ``store.resync()`` periodically. ``freeze_gc_after_sync`` calls
    ``gc.freeze()`` once after the first sync, moving the mirrored objects out of
    the collector's way (process-wide; opt-in). ``watch_timeout`` is the
    server-side watch duration, jittered up to twice its value.
    """

    def __init__(
        self,
        lw: ListerWatcher,
        store: ReflectorStore,
        resync_period: float = 0.0,
        page_size: int = 500,
        *,
        name: str = "",
        streaming_list: bool = False,
        transform: TransformFunc | None = None,
        backoff: Backoff | None = None,
        watch_timeout: int = 300,
        freeze_gc_after_sync: bool = False,
        metrics: MetricsSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if page_size < 0:
            raise errors.ConfigError("page_size must be >= 0", field="page_size")
        if resync_period < 0:
            raise errors.ConfigError("resync_period must be >= 0", field="resync_period")
        self.lw = lw
        self.store = store
        self.resync_period = resync_period
        self.page_size = page_size
        self.name = name or str(lw)
        self.streaming_list = streaming_list
        self.transform = transform
        self.backoff = backoff or Backoff(rng=rng)
        self.watch_timeout = watch_timeout
        self.freeze_gc_after_sync = freeze_gc_after_sync
        self.metrics = metrics
        self.min_watch_duration = 1.0
        self.stats = ReflectorStats()
        self._rng = rng or random.Random()
        self._rv = ""
        self._error_event_rv: str | None = None
        self._synced = False
        self._synced_event: asyncio.Event | None = None
        self._relist_requested = False
        self._watch_task: asyncio.Future[int] | None = None

    @property
    def last_sync_resource_version(self) -> str:
        """The resourceVersion of the last list or watch event applied to the store."""
        return self._rv

    def has_synced(self) -> bool:
        """True once the first full list has been handed to ``store.replace``."""
        return self._synced

    def request_relist(self) -> None:
        """List again soon: the open watch is closed and a full list replaces the store.

        For repairs (a drift check found the store wrong): the relist's ``replace``
        yields the missing deletes and fixes changed objects. Call it from the
        reflector's event loop. Requested during a list, another list follows it.
        """
        self._relist_requested = True
        task = self._watch_task
        if task is not None and not task.done():
            task.cancel()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """List and watch until ``stop`` is set (forever if ``None``); never raises on errors."""
        resync: asyncio.Task[None] | None = None
        if self.resync_period > 0:
            resync = asyncio.ensure_future(self._resync_loop())
        try:
            await lifecycle.run_until_stopped(self._list_and_watch_forever(), stop)
        finally:
            if resync is not None:
                await lifecycle.cancel_and_wait([resync])

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            if self._synced:
                try:
                    self.store.resync()
                except Exception:
                    log.exception("%s: store.resync() failed", self.name)

    async def _list_and_watch_forever(self) -> None:
        need_list = True
        while True:
            try:
                if need_list or self._relist_requested:
                    self._relist_requested = False
                    if self.streaming_list:
                        try:
                            stream = await self._streaming_sync()
                        except _StreamingUnsupportedError:
                            self.streaming_list = False
                        else:
                            need_list = False
                            await self._consume_until_relist(stream)
                            continue
                    if not self.streaming_list:
                        await self._list()
                        need_list = False
                loop = asyncio.get_running_loop()
                started = loop.time()
                delivered = await self._watch()
                if delivered or loop.time() - started >= self.min_watch_duration:
                    self.backoff.reset()
                else:
                    await asyncio.sleep(self.backoff.next())
            except _RelistRequestedError as exc:
                need_list = True
                self._count_relist(exc)
            except (errors.GoneError, _UnresumableWatchError) as exc:
                need_list = True
                self._count_relist(exc)
                if self.backoff.attempt:
                    await asyncio.sleep(self.backoff.next())
                else:
                    self.backoff.next()
            except errors.MalformedEventError as exc:
                self.stats.malformed_events += 1
                self._inc("malformed_events")
                log.warning("%s: %s; re-watching from resourceVersion %s", self.name, exc, self._rv)
                await asyncio.sleep(self.backoff.next())
            except (errors.KubemirrorError, OSError) as exc:
                self._count_error(exc)
                log.warning(
                    "%s: %s (resourceVersion %s); retrying", self.name, exc, self._rv or "-"
                )
                await asyncio.sleep(self.backoff.next())
            except Exception as exc:
                self._count_error(exc)
                log.exception("%s: unexpected error (resourceVersion %s)", self.name, self._rv)
                await asyncio.sleep(self.backoff.next())

    def _count_relist(self, exc: BaseException) -> None:
        self.stats.relists += 1
        self._inc("relists")
        log.info("%s: %s; relisting", self.name, exc)

    def _count_error(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self.stats.last_error = repr(exc)
        self._inc("errors")

    def _inc(self, metric: str, amount: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.inc(metric, self.name, amount)

    def _transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.transform is not None
        try:
            return self.transform(obj)
        except Exception:
            log.exception("%s: transform failed on %s; storing it unchanged", self.name,
                          errors.describe_object(obj))
            self._count_error(RuntimeError("transform failed"))
            return obj

    # -- listing ---------------------------------------------------------------------------

    async def _list(self) -> None:
        """Fetch every page at one consistent RV and replace the store's contents.

        The cyclic GC stays paused for the whole list (it only creates objects that
        survive); it is restored when the list ends or fails. After a list, the
        memory it freed (pages, replaced objects) goes back to the OS, from a worker
        thread: trimming a heap of a few GiB takes tens of milliseconds.
        """
        with bulk.paused_gc():
            await self._list_pages()
        await asyncio.to_thread(bulk.release_freed_memory)

    async def _list_pages(self) -> None:
        opts = ListOptions(limit=self.page_size)
        items: list[dict[str, Any]] = []
        while True:
            try:
                page = await self.lw.list(opts)
            except errors.GoneError:
                if not opts.continue_token:
                    raise
                log.info("%s: continue token expired; listing without pagination", self.name)
                items = []
                page = await self.lw.list(ListOptions())
                opts = ListOptions()
            if self.transform is not None:
                items.extend(self._transform(obj) for obj in page.items)
            else:
                items.extend(page.items)
            if not page.continue_token:
                break
            opts = dataclasses.replace(opts, continue_token=page.continue_token)
        self._replace(items, page.resource_version)

    def _replace(self, items: list[Any], rv: str) -> None:
        self.store.replace(items, rv)
        self._rv = rv
        self._error_event_rv = None
        self.stats.lists += 1
        self._inc("lists")
        log.debug("%s: synced %d objects at resourceVersion %s", self.name, len(items), rv)
        if not self._synced:
            self._synced = True
            if self.freeze_gc_after_sync:
                gc.freeze()

    async def _streaming_sync(self) -> EventStream:
        """Streaming list: a watch with initial events up to the ``initial-events-end`` bookmark.

        On the bookmark, the collected objects replace the store and the still open
        stream is returned, to be consumed as an ordinary watch. Raises
        ``_StreamingUnsupportedError`` when the server refuses the parameters.
        """
        opts = ListOptions(
            send_initial_events=True,
            resource_version_match="NotOlderThan",
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_seconds(),
        )
        try:
            stream = await self.lw.watch(opts)
        except (errors.BadRequestError, errors.InvalidError) as exc:
            log.info("%s: server does not support streaming lists (%s); using LIST", self.name, exc)
            raise _StreamingUnsupportedError from exc
        handed_over = False
        try:
            initial: dict[str, Any] = {}
            async for event in stream:
                etype = event["type"]
                obj = event["object"]
                if etype == "ERROR":
                    raise errors.api_error_from_status(obj)
                if etype == "BOOKMARK":
                    if is_initial_events_end(event):
                        self._replace(list(initial.values()), obj["metadata"]["resourceVersion"])
                        handed_over = True
                        return stream
                    continue
                if self.transform is not None:
                    obj = self._transform(obj)
                try:
                    key = keys.meta_namespace_key(obj)
                except errors.KeyFuncError as exc:
                    self._count_error(exc)
                    log.warning("%s: dropping event: %s", self.name, exc)
                    continue
                if etype == "DELETED":
                    initial.pop(key, None)
                else:
                    initial[key] = obj
            raise errors.TransportError(
                "streaming list ended before its initial-events-end bookmark"
            )
        finally:
            if not handed_over:
                await stream.aclose()

    # -- watching --------------------------------------------------------------------------

    def _watch_seconds(self) -> int:
        return int(self.watch_timeout * (1 + self._rng.random()))

    async def _watch(self) -> bool:
        """Watch from the last RV until the stream ends; True if it delivered anything."""
        opts = ListOptions(
            resource_version=self._rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_seconds(),
        )
        self.stats.watches += 1
        return await self._consume_until_relist(await self.lw.watch(opts))

    async def _consume_until_relist(self, stream: EventStream) -> bool:
        """Consume ``stream`` until it ends (True if it delivered anything), in a task
        of its own that ``request_relist()`` cancels (then ``_RelistRequestedError``)
        without cancelling ``run()``. The stream is closed on every way out.

        The closing is here, not in the task: a task cancelled before its first step
        never runs its body, and the stream's connection would be left open until
        the garbage collector found it.
        """
        try:
            if self._relist_requested:
                raise _RelistRequestedError("relist requested")
            task = self._watch_task = asyncio.ensure_future(self._consume(stream))
            try:
                return await task > 0
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._relist_requested and (current is None or not current.cancelling()):
                    raise _RelistRequestedError("relist requested") from None
                raise
            finally:
                self._watch_task = None
        finally:
            await stream.aclose()

    def _error_event(self, status: dict[str, Any]) -> Exception:
        """What a watch's ERROR event raises: ``GoneError`` (relist) for 410/``Expired``;
        the ``ApiError`` (back off, re-watch from the same version) for others, unless a
        watch from this version already ended so: then ``_UnresumableWatchError`` (relist).

        A version can fail for good without a 410: kube-apiserver answers a watch
        that starts at etcd's compaction revision, when the first change there is a
        delete, with a 500 ("etcd event received with PrevKv=nil") on every try.
        """
        exc = errors.api_error_from_status(status)
        if isinstance(exc, errors.GoneError):
            return exc
        if self._error_event_rv == self._rv:
            return _UnresumableWatchError(
                f"{exc} (again from resourceVersion {self._rv or '-'})")
        self._error_event_rv = self._rv
        return exc

    async def _consume(self, stream: EventStream) -> int:
        """Apply events until the stream ends; returns how many were applied."""
        store = self.store
        stats = self.stats
        transform = self.transform
        metrics = self.metrics
        count = 0
        async for event in stream:
            etype = event["type"]
            obj = event["object"]
            if etype == "ERROR":
                raise self._error_event(obj)
            rv = obj["metadata"]["resourceVersion"]
            count += 1
            if etype == "BOOKMARK":
                stats.bookmarks += 1
                self._rv = rv
                continue
            if transform is not None:
                obj = self._transform(obj)
            try:
                if etype == "MODIFIED":
                    store.update(obj)
                elif etype == "ADDED":
                    store.add(obj)
                else:
                    store.delete(obj)
            except errors.KubemirrorError as exc:
                self._count_error(exc)
                log.warning("%s: cannot apply %s event: %s", self.name, etype, exc)
            self._rv = rv
            stats.events += 1
            if metrics is not None:
                metrics.inc("events", self.name)
        return count


class Poller(lifecycle.Service):
    """Polls ``get_func`` every ``period`` seconds and replaces ``store`` with the result.

    For APIs that cannot be watched. Each poll is one ``store.replace(objs)``, so
    a store that computes deltas (DeltaFIFO) sees adds, updates and deletes. A
    failing poll is logged and counted in ``errors``; the next period retries.
    A ``lifecycle.Service`` on one event loop.
    """

    def __init__(
        self,
        get_func: Callable[[], Awaitable[Iterable[Obj]]],
        period: float,
        store: ReflectorStore,
        *,
        name: str = "poller",
    ) -> None:
        if period <= 0:
            raise errors.ConfigError("period must be > 0", field="period")
        self.get_func = get_func
        self.period = period
        self.store = store
        self.name = name
        self.polls = 0
        self.errors = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set; never raises on errors from ``get_func``."""
        await lifecycle.run_until_stopped(self._poll_forever(), stop)

    async def _poll_forever(self) -> None:
        while True:
            try:
                objs = list(await self.get_func())
                self.store.replace(objs, "")
                self.polls += 1
            except Exception:
                self.errors += 1
                log.exception("%s: poll failed", self.name)
            await asyncio.sleep(self.period)

