"""Watchers: a collection mirrored into an indexed store with debounced change callbacks.

The ``watcher`` layer, above ``reflector`` (haproxy-template-ic ``k8s/types`` and
``k8s/watcher``). A ``Watcher`` runs one ``Reflector`` whose store is a small
adapter writing straight into a ``MemoryStore`` or ``CachedStore`` (keys computed
from the ``IndexBy`` field paths, no second copy of the objects) and counting
``ChangeStats``; a ``Debouncer`` (sans-I/O, injectable clock) turns them into at
most one ``on_change`` per interval. ``SingleWatcher`` follows one named object
and calls back on every change at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeAlias

from kubemirror import errors, keys, listwatch, paths, reflector, selectors
from kubemirror.client import transport
from kubemirror.stores import cached_store, indexed_store, memory_store
from kubemirror.types import Clock, GroupVersionResource, MonotonicClock, Obj

__all__ = [
    "DEFAULT_CACHE_TTL",
    "DEFAULT_DEBOUNCE_INTERVAL",
    "DEFAULT_NAMESPACE_FILE",
    "ChangeStats",
    "Debouncer",
    "OnChange",
    "OnResourceChange",
    "OnSyncComplete",
    "SingleWatcher",
    "SingleWatcherConfig",
    "StoreType",
    "Watcher",
    "WatcherConfig",
    "WatcherThread",
]

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_INTERVAL = 0.1
"""Seconds between ``on_change`` calls by default. (The seed's ``DebounceInterval``
comment says 500ms, its constant says 100ms; the constant is what is used.)"""

DEFAULT_CACHE_TTL = 132.0
"""``cache_ttl`` default: 2.2 x a 60 s re-render cycle, so one failed cycle keeps objects cached."""

DEFAULT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
"""Where ``namespaced_watch`` reads the pod's own namespace."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


class StoreType(enum.Enum):
    """Which ``IndexedStore`` a ``Watcher`` fills."""

    MEMORY = "memory"
    """``MemoryStore``: whole objects in memory; fastest reads (the default)."""
    CACHED = "cached"
    """``CachedStore``: references only; objects fetched from the API on access."""


@dataclass(frozen=True, slots=True)
class ChangeStats:
    """Changes aggregated since the last ``on_change`` call.

    ``is_initial_sync`` marks the bulk load of pre-existing objects (then
    ``created`` counts them). ``a + b`` sums the counts; the sum is an initial-sync
    batch if either part is.
    """

    created: int = 0
    modified: int = 0
    deleted: int = 0
    is_initial_sync: bool = False

    @property
    def total(self) -> int:
        """``created + modified + deleted``."""
        return self.created + self.modified + self.deleted

    @property
    def is_empty(self) -> bool:
        """True when nothing changed."""
        return self.created == 0 and self.modified == 0 and self.deleted == 0

    def __add__(self, other: ChangeStats) -> ChangeStats:
        if not isinstance(other, ChangeStats):
            return NotImplemented
        return ChangeStats(
            self.created + other.created,
            self.modified + other.modified,
            self.deleted + other.deleted,
            self.is_initial_sync or other.is_initial_sync,
        )


OnChange: TypeAlias = Callable[
    [indexed_store.IndexedStore, ChangeStats], "Awaitable[None] | None"
]
"""``on_change(store, stats)``: debounced; a plain function or a coroutine function."""

OnSyncComplete: TypeAlias = Callable[[indexed_store.IndexedStore, int], "Awaitable[None] | None"]
"""``on_sync_complete(store, initial_count)``: once, after the initial list is stored."""

OnResourceChange: TypeAlias = Callable[[Obj | None], "Awaitable[None] | None"]
"""``SingleWatcher`` callback: receives the object (``None`` only at sync when absent)."""


class Debouncer:
    """Leading-edge debouncing with a refractory period; sans-I/O.

    ``record`` adds stats. They are due at once if no call was made in the last
    ``interval`` seconds, else ``interval`` after the previous call — so calls
    are at least ``interval`` apart, a lone change is reported without delay, and
    the last change of a burst is always reported (the trailing call). The
    driver asks ``deadline()``, waits until then, and calls ``pop_due()``;
    ``flush()`` takes whatever is pending now. Time comes from ``clock``.
    Not thread-safe.
    """

    __slots__ = ("_clock", "_last_fired", "_pending", "interval")

    def __init__(self, interval: float, clock: Clock | None = None) -> None:
        if interval < 0:
            raise errors.ConfigError(f"must be >= 0, got {interval!r}", field="debounce_interval")
        self.interval = interval
        self._clock: Clock = clock or MonotonicClock()
        self._pending: ChangeStats | None = None
        self._last_fired: float | None = None

    @property
    def pending(self) -> ChangeStats | None:
        """Stats recorded and not yet popped, or ``None``."""
        return self._pending

    def record(self, stats: ChangeStats) -> None:
        """Aggregate ``stats`` into the pending batch (empty stats are ignored)."""
        if stats.is_empty:
            return
        self._pending = stats if self._pending is None else self._pending + stats

    def deadline(self) -> float | None:
        """Clock time at which the pending batch is due; ``None`` if nothing is pending."""
        if self._pending is None:
            return None
        if self._last_fired is None:
            return self._clock.now()
        return self._last_fired + self.interval

    def pop_due(self) -> ChangeStats | None:
        """The pending batch if it is due now (and start a new refractory period)."""
        deadline = self.deadline()
        if deadline is None or self._clock.now() < deadline:
            return None
        return self.flush()

    def flush(self) -> ChangeStats | None:
        """The pending batch regardless of time, or ``None``."""
        stats, self._pending = self._pending, None
        if stats is not None:
            self._last_fired = self._clock.now()
        return stats


# -- configuration ----------------------------------------------------------------------


def _require_gvr(gvr: object) -> GroupVersionResource:
    if not isinstance(gvr, GroupVersionResource):
        raise errors.ConfigError(
            f"must be a GroupVersionResource, got {type(gvr).__name__}", field="gvr"
        )
    if not gvr.resource:
        raise errors.ConfigError("resource is required", field="gvr.resource")
    if not gvr.version:
        raise errors.ConfigError("version is required", field="gvr.version")
    return gvr


def _check_namespace(namespace: object, field_name: str, *, required: bool) -> str:
    if not isinstance(namespace, str):
        raise errors.ConfigError(
            f"must be a string, got {type(namespace).__name__}", field=field_name
        )
    if not namespace:
        if required:
            raise errors.ConfigError("namespace is required", field=field_name)
        return namespace
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise errors.ConfigError(
            "must be a DNS-1123 label (lowercase alphanumerics and '-')",
            field=field_name,
            expression=namespace,
        )
    return namespace


def _check_callback(value: object, field_name: str, *, required: bool) -> None:
    if value is None:
        if required:
            raise errors.ConfigError("callback is required", field=field_name)
    elif not callable(value):
        raise errors.ConfigError(
            f"must be callable, got {type(value).__name__}", field=field_name
        )


def _check_seconds(value: object, field_name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(
            f"must be a number of seconds, got {value!r}", field=field_name
        )
    if value < 0 or (positive and value == 0):
        raise errors.ConfigError(
            f"must be {'> 0' if positive else '>= 0'} seconds, got {value!r}", field=field_name
        )
    return float(value)


def _compile_paths(exprs: object, field_name: str) -> tuple[paths.FieldPath, ...]:
    if isinstance(exprs, str) or not isinstance(exprs, Sequence):
        raise errors.ConfigError(
            f"must be a list of field paths, got {type(exprs).__name__}",
            field=field_name,
            expression=exprs if isinstance(exprs, str) else None,
        )
    for i, expr in enumerate(exprs):
        if not isinstance(expr, str):
            raise errors.ConfigError(
                f"must be a string, got {type(expr).__name__}", field=f"{field_name}[{i}]"
            )
    return paths.compile_all(list(exprs), field_name)


@dataclass(slots=True)
class WatcherConfig:
    """What a ``Watcher`` mirrors and how it reports changes.

    Call ``set_defaults()`` then ``validate()`` (``Watcher`` does both);
    ``validate`` raises ``ConfigError`` naming the first bad field, and rejects
    bad field paths and selectors up front, not at the first event.

    * ``gvr``: the resource type (required).
    * ``namespace``: watch one namespace; ``""`` watches all.
    * ``namespaced_watch``: watch the pod's own namespace, read from
      ``namespace_file`` (the service-account mount); takes precedence over
      ``namespace``.
    * ``label_selector``: string form (``"app=web,tier!=db"``), ``metav1.LabelSelector``
      dict form (``{"matchLabels": ..., "matchExpressions": ...}``), a
      ``selectors.LabelSelector``, or ``None`` for everything.
    * ``index_by``: field paths whose values are the store keys, in order
      (required, at least one). An object lacking a path is stored under ``""``.
      ``["metadata.labels['kubernetes.io/service-name']"]`` gives an O(1)
      service-to-endpoints lookup; ``["metadata.namespace", "metadata.name"]``
      a namespace/name index.
    * ``ignore_fields``: field paths removed before storing
      (``["metadata.managedFields"]`` saves about a third of a Pod's memory).
    * ``store_type``: ``StoreType.MEMORY`` (default) or ``StoreType.CACHED``.
    * ``cache_ttl``: seconds a ``CACHED`` store keeps an object after its last
      access (default ``DEFAULT_CACHE_TTL``); ``cache_max_size`` bounds its LRU.
    * ``debounce_interval``: minimum seconds between ``on_change`` calls (default
      ``DEFAULT_DEBOUNCE_INTERVAL`` = 0.1; 0 reports every batch at once).
    * ``on_change(store, stats)`` (required), ``on_sync_complete(store,
      initial_count)`` (optional): plain or ``async`` functions.
    * ``call_on_change_during_sync``: also report the initial bulk load through
      ``on_change`` (with ``is_initial_sync=True``), before ``on_sync_complete``.

    The seed's ``Context`` field has no counterpart: cancellation is
    ``Watcher.run(stop)`` / ``await watcher.stop()``.
    """

    gvr: GroupVersionResource | None = None
    namespace: str = ""
    namespaced_watch: bool = False
    label_selector: str | Mapping[str, Any] | selectors.LabelSelector | None = None
    index_by: Sequence[str] = ()
    ignore_fields: Sequence[str] = ()
    store_type: StoreType = StoreType.MEMORY
    cache_ttl: float | None = None
    cache_max_size: int = cached_store.DEFAULT_MAX_CACHE_SIZE
    debounce_interval: float | None = None
    on_change: OnChange | None = None
    on_sync_complete: OnSyncComplete | None = None
    call_on_change_during_sync: bool = False
    namespace_file: str | os.PathLike[str] = DEFAULT_NAMESPACE_FILE

    def set_defaults(self) -> None:
        """Fill unset fields: ``cache_ttl``, ``debounce_interval``, ``store_type`` by name."""
        if self.cache_ttl is None:
            self.cache_ttl = DEFAULT_CACHE_TTL
        if self.debounce_interval is None:
            self.debounce_interval = DEFAULT_DEBOUNCE_INTERVAL
        if isinstance(self.store_type, str):
            with contextlib.suppress(ValueError):  # validate() names the field
                self.store_type = StoreType(self.store_type.lower())

    def validate(self) -> None:
        """Raise ``ConfigError`` (``SelectorError``, ``FieldPathError``) naming a bad field."""
        _require_gvr(self.gvr)
        _check_namespace(self.namespace, "namespace", required=False)
        if not isinstance(self.namespaced_watch, bool):
            raise errors.ConfigError("must be a bool", field="namespaced_watch")
        if self.namespaced_watch:
            self.watch_namespace()
        self.selector()
        if not self.index_by:
            raise errors.ConfigError("at least one index key is required", field="index_by")
        _compile_paths(self.index_by, "index_by")
        _compile_paths(self.ignore_fields, "ignore_fields")
        if not isinstance(self.store_type, StoreType):
            raise errors.ConfigError(
                f"must be StoreType.MEMORY or StoreType.CACHED, got {self.store_type!r}",
                field="store_type",
            )
        if self.cache_ttl is None or self.debounce_interval is None:
            raise errors.ConfigError(
                "unset; call set_defaults() first",
                field="cache_ttl" if self.cache_ttl is None else "debounce_interval",
            )
        _check_seconds(self.cache_ttl, "cache_ttl", positive=True)
        if isinstance(self.cache_max_size, bool) or not isinstance(self.cache_max_size, int) or (
            self.cache_max_size < 1
        ):
            raise errors.ConfigError("must be a positive integer", field="cache_max_size")
        _check_seconds(self.debounce_interval, "debounce_interval", positive=False)
        _check_callback(self.on_change, "on_change", required=True)
        _check_callback(self.on_sync_complete, "on_sync_complete", required=False)
        if not isinstance(self.call_on_change_during_sync, bool):
            raise errors.ConfigError("must be a bool", field="call_on_change_during_sync")

    def watch_namespace(self) -> str:
        """The namespace to watch (``""``: all), reading ``namespace_file`` if asked to.

        Raises ``ConfigError`` naming ``namespaced_watch`` if the file cannot be read
        or holds no valid namespace.
        """
        if not self.namespaced_watch:
            return self.namespace
        try:
            with open(self.namespace_file, encoding="utf-8") as f:
                namespace = f.read().strip()
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot read the pod namespace from {os.fspath(self.namespace_file)!r}: "
                f"{exc.strerror or exc}",
                field="namespaced_watch",
            ) from exc
        if not namespace:
            raise errors.ConfigError(
                f"{os.fspath(self.namespace_file)!r} is empty", field="namespaced_watch"
            )
        return _check_namespace(namespace, "namespaced_watch", required=True)

    def selector(self) -> selectors.LabelSelector:
        """``label_selector`` parsed; raises ``SelectorError`` naming ``label_selector``."""
        value = self.label_selector
        if isinstance(value, selectors.LabelSelector):
            return value
        try:
            if value is None or isinstance(value, str):
                return selectors.LabelSelector.parse(value or "")
            if isinstance(value, Mapping):
                return selectors.LabelSelector.from_dict(value)
        except errors.SelectorError as exc:
            raise errors.SelectorError(
                exc.message,
                field="label_selector" + (f".{exc.field}" if exc.field else ""),
                expression=exc.expression,
                position=exc.position,
            ) from None
        raise errors.SelectorError(
            f"must be a string, a dict or a LabelSelector, got {type(value).__name__}",
            field="label_selector",
        )


@dataclass(slots=True)
class SingleWatcherConfig:
    """What a ``SingleWatcher`` follows: one object by ``namespace`` and ``name``.

    All fields but ``on_sync_complete`` are required. ``on_change(obj)`` is called
    at once (no debounce) for every change after the initial sync — on deletion
    with the last known state of the object (check ``SingleWatcher.current``,
    then ``None``). ``on_sync_complete(obj)`` gets the state after the initial
    list (``None`` if the object does not exist). Cancellation (the seed's
    ``Context``) is ``SingleWatcher.run(stop)`` / ``await watcher.stop()``.
    """

    gvr: GroupVersionResource | None = None
    namespace: str = ""
    name: str = ""
    on_change: OnResourceChange | None = None
    on_sync_complete: OnResourceChange | None = None

    def set_defaults(self) -> None:
        """Nothing to default (kept for symmetry with ``WatcherConfig``)."""

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first missing or invalid field."""
        _require_gvr(self.gvr)
        _check_namespace(self.namespace, "namespace", required=True)
        if not isinstance(self.name, str) or not self.name:
            raise errors.ConfigError("resource name is required", field="name")
        if "/" in self.name or "," in self.name:
            raise errors.ConfigError("not a valid object name", field="name", expression=self.name)
        _check_callback(self.on_change, "on_change", required=True)
        _check_callback(self.on_sync_complete, "on_sync_complete", required=False)


# -- callbacks ---------------------------------------------------------------------------


async def _call(callback: Callable[..., Any], what: str, *args: Any) -> None:
    """Run a user callback; sync ones in a worker thread. Errors are logged, never raised.

    Sync callbacks run off the loop so they may block, and may call a
    ``CachedStore``'s sync ``get`` (whose fetches need the loop).
    """
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(*args)
            return
        result = await asyncio.to_thread(callback, *args)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s callback %r failed", what, callback)


# -- Watcher ------------------------------------------------------------------------------


class _StoreWriter:
    """The ``ReflectorStore`` a ``Watcher`` hands its reflector: writes into the indexed
    store, computing keys from ``index_by``, and reports ``ChangeStats`` per write.

    A replace diffs against the store by resourceVersion: new objects are created,
    changed ones modified, missing ones deleted, unchanged ones left alone. An
    object the store rejects (no ``metadata.name``) is logged and counted in
    ``rejected``; it never stops the watch. Called on the event loop only.
    """

    def __init__(
        self,
        store: indexed_store.IndexedStore,
        index_by: tuple[paths.FieldPath, ...],
        report: Callable[[ChangeStats, bool], None],
        name: str,
    ) -> None:
        self.store = store
        self.index_by = index_by
        self.report = report
        self.name = name
        self.rejected = 0

    def keys_for(self, obj: Obj) -> list[str]:
        return [path.index_value(obj) or "" for path in self.index_by]

    def _write(self, obj: Obj) -> ChangeStats:
        """Upsert ``obj``; returns created=1, modified=1 or nothing (same version)."""
        try:
            (namespace, name), rv = indexed_store.object_ref(obj, ())
            keys = self.keys_for(obj)
            old = self.store.ref(namespace, name)
            if old is not None and rv and old.resource_version == rv and old.keys == tuple(keys):
                return ChangeStats()
            self.store.update(obj, keys)
        except errors.StoreError as exc:
            self.rejected += 1
            log.warning("%s: object not stored: %s (%s)", self.name, exc, _describe(obj))
            return ChangeStats()
        return ChangeStats(modified=1) if old is not None else ChangeStats(created=1)

    def add(self, obj: Any) -> None:
        self.report(self._write(obj), False)

    def update(self, obj: Any) -> None:
        self.report(self._write(obj), False)

    def delete(self, obj: Any) -> None:
        try:
            namespace, name = keys.split_meta_namespace_key(keys.meta_namespace_key(obj))
        except errors.KeyFuncError as exc:
            self.rejected += 1
            log.warning("%s: delete event without a usable key: %s", self.name, exc)
            return
        if self.store.delete_by_name(namespace, name):
            self.report(ChangeStats(deleted=1), False)

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        total = ChangeStats()
        seen: set[tuple[str, str]] = set()
        for obj in objs:
            total = total + self._write(obj)
            meta = obj.get("metadata") if isinstance(obj, Mapping) else None
            if isinstance(meta, Mapping):
                seen.add((meta.get("namespace") or "", str(meta.get("name"))))
        deleted = 0
        for ref in self.store.refs():
            if (ref.namespace, ref.name) not in seen and self.store.delete_by_name(
                ref.namespace, ref.name
            ):
                deleted += 1
        self.report(total + ChangeStats(deleted=deleted), True)

    def resync(self) -> None:
        """Nothing to do: the store is the cache."""

    def list_keys(self) -> list[str]:
        return [f"{r.namespace}/{r.name}" if r.namespace else r.name for r in self.store.refs()]


def _describe(obj: object) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if isinstance(meta, Mapping):
        return f"{meta.get('namespace') or ''}/{meta.get('name')}"
    return f"{type(obj).__name__}"


class Watcher(reflector.Runner):
    """Mirrors the collection ``config`` describes into ``store`` and reports changes.

    ``source`` is a ``KubeClient`` (the watcher builds the ``ListWatch`` and, for
    a ``CACHED`` store, fetches with the client's GET) or any ``ListerWatcher``
    (then a ``CACHED`` store needs ``fetch``). The config is defaulted and
    validated here: a bad config raises ``ConfigError`` before anything runs.

    Callback order, all from one task so calls never overlap: with
    ``call_on_change_during_sync``, ``on_change(store, stats)`` for the initial
    load (``is_initial_sync=True``); then ``on_sync_complete(store, count)``
    exactly once; then debounced ``on_change`` calls (see ``Debouncer``; the
    last batch is flushed when the watcher stops). Relists after a lost watch
    are diffed and reported as ordinary changes. Sync callbacks run in a worker
    thread, coroutine callbacks on the loop; an exception is logged and the
    watch goes on. ``store`` may be read at any time from any thread.

    Run it with ``await run(stop)``, ``start()``/``await stop()``, ``async with``,
    or ``start_in_thread()`` from plain code. ``clock`` drives the debouncer.
    """

    def __init__(
        self,
        config: WatcherConfig,
        source: transport.KubeClient | listwatch.ListerWatcher,
        *,
        fetch: cached_store.Fetch | None = None,
        clock: Clock | None = None,
        page_size: int = 500,
        resync_period: float = 0.0,
    ) -> None:
        config.set_defaults()
        config.validate()
        assert config.gvr is not None
        assert config.cache_ttl is not None
        assert config.debounce_interval is not None
        self.config = config
        gvr = config.gvr
        namespace = config.watch_namespace()
        index_by = _compile_paths(config.index_by, "index_by")
        ignore = _compile_paths(config.ignore_fields, "ignore_fields")
        self.source = source
        if isinstance(source, transport.KubeClient):
            lister_watcher: listwatch.ListerWatcher = listwatch.ListWatch(
                source, gvr, namespace or None, label_selector=str(config.selector())
            )
            if fetch is None:
                fetch = _client_fetch(source, gvr)
        else:
            lister_watcher = source
        self._clock: Clock = clock or MonotonicClock()
        self.store: indexed_store.IndexedStore
        if config.store_type is StoreType.CACHED:
            if fetch is None:
                raise errors.ConfigError(
                    "a CACHED store needs fetch= when the source is not a KubeClient",
                    field="fetch",
                )
            self.store = cached_store.CachedStore(
                len(index_by),
                fetch,
                config.cache_ttl,
                max_size=config.cache_max_size,
                clock=self._clock,
                ignore_fields=ignore,
            )
        else:
            self.store = memory_store.MemoryStore(len(index_by), ignore_fields=ignore)
        self.name = f"{gvr}" + (f" in {namespace}" if namespace else "")
        self._writer = _StoreWriter(self.store, index_by, self._record, self.name)
        self.reflector = reflector.Reflector(
            lister_watcher,
            self._writer,
            page_size=page_size,
            resync_period=resync_period,
            name=self.name,
        )
        self._debouncer = Debouncer(config.debounce_interval, self._clock)
        self._listed = False
        self._sync_stats: ChangeStats | None = None
        self._initial_count = 0
        self._sync_reported = False
        self._synced = asyncio.Event()
        self._wake: asyncio.Event | None = None

    @property
    def rejected(self) -> int:
        """Objects the store refused (no usable name); each was logged."""
        return self._writer.rejected

    @property
    def initial_count(self) -> int:
        """How many objects the initial list stored (0 before the sync)."""
        return self._initial_count

    def has_synced(self) -> bool:
        """True once ``on_sync_complete`` has returned (or would have, if unset)."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        """Wait until ``has_synced()``."""
        await self._synced.wait()

    def _record(self, stats: ChangeStats, from_replace: bool) -> None:
        """Called by the store writer, on the loop, for every write."""
        if not self._listed:
            if not from_replace:
                return  # nothing writes before the first list; keep the invariant cheap
            self._listed = True
            self._initial_count = self.store.size
            if self.config.call_on_change_during_sync and not stats.is_empty:
                self._sync_stats = dataclasses.replace(stats, is_initial_sync=True)
        else:
            self._debouncer.record(stats)
        if self._wake is not None:
            self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch until ``stop`` is set; then stop the reflector and flush pending changes."""
        stop = stop or asyncio.Event()
        if isinstance(self.store, cached_store.CachedStore):
            self.store.bind_loop(asyncio.get_running_loop())
        self._wake = asyncio.Event()
        reflector_stop = asyncio.Event()
        stopping = asyncio.Event()
        reflector_task = asyncio.ensure_future(self.reflector.run(reflector_stop))
        dispatcher = asyncio.ensure_future(self._dispatch(stopping))
        try:
            await stop.wait()
        finally:
            reflector_stop.set()
            await asyncio.gather(reflector_task, return_exceptions=True)
            stopping.set()
            self._wake.set()
            await asyncio.gather(dispatcher, return_exceptions=True)
            stats = self._debouncer.flush()
            if stats is not None and self._sync_reported:
                await self._on_change(stats)

    async def _on_change(self, stats: ChangeStats) -> None:
        assert self.config.on_change is not None
        await _call(self.config.on_change, f"{self.name}: on_change", self.store, stats)

    async def _dispatch(self, stopping: asyncio.Event) -> None:
        """The one task calling back: the sync report first, then debounced batches."""
        wake = self._wake
        assert wake is not None
        while True:
            if self._listed and not self._sync_reported:
                await self._report_sync()
                continue
            if stopping.is_set():
                return
            deadline = self._debouncer.deadline() if self._sync_reported else None
            timeout = None if deadline is None else max(0.0, deadline - self._clock.now())
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
            wake.clear()
            if self._sync_reported and (stats := self._debouncer.pop_due()) is not None:
                await self._on_change(stats)

    async def _report_sync(self) -> None:
        stats, self._sync_stats = self._sync_stats, None
        if stats is not None:
            await self._on_change(stats)
        if self.config.on_sync_complete is not None:
            await _call(
                self.config.on_sync_complete,
                f"{self.name}: on_sync_complete",
                self.store,
                self._initial_count,
            )
        self._sync_reported = True
        self._synced.set()

    def start_in_thread(self) -> WatcherThread:
        """Run on a new event loop in a daemon thread; see ``WatcherThread``."""
        return WatcherThread(self).start()


def _client_fetch(
    client: transport.KubeClient, gvr: GroupVersionResource
) -> cached_store.Fetch:
    async def fetch(namespace: str, name: str) -> Obj | None:
        try:
            return await client.get(gvr, name, namespace or None)
        except errors.NotFoundError:
            return None

    return fetch


# -- SingleWatcher ------------------------------------------------------------------------


class _SingleWriter:
    """The ``ReflectorStore`` of a ``SingleWatcher``: keeps the one object, queues changes.

    Objects with another namespace/name are ignored (in case a server ignores the
    field selector). Unchanged resourceVersions (resyncs, relists) are not changes.
    """

    def __init__(self, namespace: str, name: str, queue: asyncio.Queue[tuple[str, Obj | None]]):
        self.namespace = namespace
        self.name = name
        self.queue = queue
        self.current: Obj | None = None
        self.listed = False

    def _mine(self, obj: Any) -> bool:
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        return (
            isinstance(meta, Mapping)
            and meta.get("name") == self.name
            and (meta.get("namespace") or "") == self.namespace
        )

    def _set(self, obj: Obj | None) -> None:
        old, self.current = self.current, obj
        if not self.listed:
            return
        if obj is None:
            if old is not None:
                self.queue.put_nowait(("change", old))
        elif old is None or not indexed_store.resource_version(obj) or (
            indexed_store.resource_version(obj) != indexed_store.resource_version(old)
        ):
            self.queue.put_nowait(("change", obj))

    def add(self, obj: Any) -> None:
        if self._mine(obj):
            self._set(obj)

    update = add

    def delete(self, obj: Any) -> None:
        if isinstance(obj, keys.DeletedFinalStateUnknown):
            obj = obj.obj
        if self._mine(obj):
            if self.listed and self.current is not None:
                self.current = obj  # report the final state the DELETED event carries
            self._set(None)

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        found = next((obj for obj in objs if self._mine(obj)), None)
        self._set(found)
        if not self.listed:
            self.listed = True
            self.queue.put_nowait(("sync", found))

    def resync(self) -> None:
        """Nothing to do."""


class SingleWatcher(reflector.Runner):
    """Follows one named object; ``on_change(obj)`` at once for each change after sync.

    Lists and watches with the field selector ``metadata.name=<name>``.
    ``on_sync_complete(obj)`` receives the state after the initial list (``None``
    if absent); afterwards every change with a new resourceVersion calls
    ``on_change`` with the new object, and a deletion calls it with the final
    state of the deleted object (``current`` is ``None`` by then). Callbacks run
    one at a time, in event order (sync ones in a worker thread); errors are
    logged. ``source`` is a ``KubeClient`` or a ``ListerWatcher`` already
    restricted to the object. Same lifecycle as ``Watcher``.
    """

    def __init__(
        self,
        config: SingleWatcherConfig,
        source: transport.KubeClient | listwatch.ListerWatcher,
        *,
        resync_period: float = 0.0,
    ) -> None:
        config.set_defaults()
        config.validate()
        assert config.gvr is not None
        self.config = config
        self.source = source
        if isinstance(source, transport.KubeClient):
            lister_watcher: listwatch.ListerWatcher = listwatch.ListWatch(
                source, config.gvr, config.namespace,
                field_selector=f"metadata.name={config.name}",
            )
        else:
            lister_watcher = source
        self.name = f"{config.gvr} {config.namespace}/{config.name}"
        self._queue: asyncio.Queue[tuple[str, Obj | None]] = asyncio.Queue()
        self._writer = _SingleWriter(config.namespace, config.name, self._queue)
        self.reflector = reflector.Reflector(
            lister_watcher, self._writer, page_size=0, resync_period=resync_period, name=self.name
        )
        self._synced = asyncio.Event()

    @property
    def current(self) -> Obj | None:
        """The object as last seen (shared: do not mutate), or ``None`` if absent."""
        return self._writer.current

    def has_synced(self) -> bool:
        """True once ``on_sync_complete`` has returned (or would have, if unset)."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        """Wait until ``has_synced()``."""
        await self._synced.wait()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch until ``stop`` is set; callbacks already queued are still delivered."""
        stop = stop or asyncio.Event()
        reflector_stop = asyncio.Event()
        reflector_task = asyncio.ensure_future(self.reflector.run(reflector_stop))
        dispatcher = asyncio.ensure_future(self._dispatch())
        try:
            await stop.wait()
        finally:
            reflector_stop.set()
            await asyncio.gather(reflector_task, return_exceptions=True)
            self._queue.put_nowait(("stop", None))
            await asyncio.gather(dispatcher, return_exceptions=True)

    async def _dispatch(self) -> None:
        while True:
            kind, obj = await self._queue.get()
            if kind == "stop":
                return
            if kind == "sync":
                if self.config.on_sync_complete is not None:
                    await _call(self.config.on_sync_complete, f"{self.name}: on_sync_complete", obj)
                self._synced.set()
            else:
                assert self.config.on_change is not None
                await _call(self.config.on_change, f"{self.name}: on_change", obj)

    def start_in_thread(self) -> WatcherThread:
        """Run on a new event loop in a daemon thread; see ``WatcherThread``."""
        return WatcherThread(self).start()


# -- thread facade ------------------------------------------------------------------------


class WatcherThread:
    """A ``Watcher`` or ``SingleWatcher`` running on its own loop in a daemon thread.

    For plain scripts: ``handle = watcher.start_in_thread()``, then
    ``handle.wait_for_sync(timeout)`` and ``handle.stop()`` (also a context
    manager). ``watcher.store`` is thread-safe to read meanwhile; a
    ``CachedStore``'s sync ``get`` fetches through the thread's loop. A
    ``KubeClient`` given to the watcher is used on that loop and closed when the
    thread stops.
    """

    def __init__(self, watcher: Watcher | SingleWatcher) -> None:
        self.watcher = watcher
        self._thread = threading.Thread(
            target=self._main, name=f"kubemirror {watcher.name}", daemon=True
        )
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> Self:
        """Start the thread and wait until its loop runs."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self.watcher.run(self._stop)
        finally:
            if isinstance(self.watcher.source, transport.KubeClient):
                await self.watcher.source.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The thread's event loop while it runs."""
        return self._loop

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the watcher has synced; ``False`` after ``timeout`` seconds."""
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return self.watcher.has_synced()
        future = asyncio.run_coroutine_threadsafe(self.watcher.wait_for_sync(), loop)
        try:
            future.result(timeout)
        except TimeoutError:
            future.cancel()
            return False
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop the watcher (pending changes are flushed) and join the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
