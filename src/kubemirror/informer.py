"""SharedInformer: one Reflector feeding a DeltaFIFO feeding an Indexer, fanned out to handlers.

The ``informer`` layer (client-go ``tools/cache`` shared informer). The
reflector writes list and watch results into a ``DeltaFIFO`` whose known objects
are the informer's ``Indexer``; each key's deltas are popped in order, applied to
the indexer and turned into add/update/delete notifications (watch writes at once,
relists by a draining task). Every handler has its
own queue and task (like client-go's processorListener), so a slow async handler
delays only itself, never the pop loop or other handlers. A plain-function
callback whose queue is empty gets a watch event at once, on the reflector's task,
before the next event is applied: the same order, and the replaced object is freed
straight away instead of piling up behind the queue (which fed CPython's collector
the whole churn: 8x slower watches with a dict store, see run_all). A thread-backed facade
(``start_in_thread``) serves plain scripts from the same asyncio core.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

from kubemirror import bulk, drift, errors, keys, lifecycle, reflector
from kubemirror.cache import compact, delta_fifo, index
from kubemirror.cache import mutation_detector as detection
from kubemirror.cache.raw_object import PartialDecoder
from kubemirror.cache.thread_safe_store import Indexers
from kubemirror.listwatch import ListerWatcher, ListWatch
from kubemirror.types import KeyFunc

__all__ = [
    "HandlerRegistration",
    "InformerThread",
    "MIRROR_IGNORE_FIELDS",
    "PrometheusMetrics",
    "ResourceEventHandler",
    "STORE_COMPACT",
    "STORE_DICT",
    "SharedInformer",
]

log = logging.getLogger(__name__)

_ADD, _UPDATE, _DELETE = 0, 1, 2
_AWAIT = 3  # queued awaitable a plain callback returned when run inline
_HANDLER_NAMES = ("on_add", "on_update", "on_delete")
_YIELD_EVERY = 256
_DT_ADDED = delta_fifo.DeltaType.ADDED
_DT_UPDATED = delta_fifo.DeltaType.UPDATED
_DT_DELETED = delta_fifo.DeltaType.DELETED
_DT_REPLACED = delta_fifo.DeltaType.REPLACED

STORE_DICT = "dict"
"""``SharedInformer(store=...)``: objects decoded to dicts in an ``Indexer`` (the default)."""
STORE_COMPACT = "compact"
"""``SharedInformer(store=...)``: objects kept as received bytes in a ``CompactIndexer``."""

MIRROR_IGNORE_FIELDS: tuple[str, ...] = ("metadata.managedFields",)
"""The ``ignore_fields`` preset for mirrors: server-side-apply bookkeeping, ~30% of a
Pod's bytes, which readers of a mirror rarely need (``kubectl get -o yaml`` hides it
too). The default of a compact store, which exists to save memory; a dict store
keeps every field unless given ``ignore_fields=MIRROR_IGNORE_FIELDS``. The informer
logs what it strips when it starts; ``ignore_fields=()`` keeps everything."""

Callback = Callable[..., Any]
"""A handler callback: plain function or coroutine function."""


class ResourceEventHandler(Protocol):
    """A handler object: any of ``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``.

    Methods may be plain or ``async``; missing ones are skipped. ``on_delete`` may
    receive a ``DeletedFinalStateUnknown`` tombstone when the delete was missed and
    found by a relist. Objects are shared: do not mutate them.
    """


class HandlerRegistration:
    """A handler added to an informer: its own queue of notifications and delivery task.

    ``has_synced()`` is true once the informer has synced and this handler has
    processed every notification up to that point (for a late handler: the adds
    replaying the store's content). ``errors`` counts callbacks that raised.
    Driven from the informer's event loop. Coroutine functions always run on the
    delivery task; plain functions run inline for single watch events when nothing
    is queued before them (an awaitable they return is awaited on the task).
    """

    def __init__(self, callbacks: tuple[Callback | None, Callback | None, Callback | None],
                 name: str, metrics: reflector.MetricsSink | None = None) -> None:
        self.callbacks = callbacks
        self.name = name
        self.metrics = metrics
        self.errors = 0
        self.delivered = 0
        self._queue: collections.deque[tuple[int, tuple[Any, ...]]] = collections.deque()
        self._enqueued = 0
        self._sync_mark: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # plain functions may run inline (see _push); coroutine functions never do
        self._inline = tuple(c is not None and not inspect.iscoroutinefunction(c)
                             for c in callbacks)

    def has_synced(self) -> bool:
        return self._sync_mark is not None and self.delivered >= self._sync_mark

    @property
    def pending(self) -> int:
        """Notifications queued and not delivered yet."""
        return len(self._queue)

    def _push(self, kind: int, args: tuple[Any, ...], inline: bool = False) -> None:
        """Queue a notification; with ``inline`` (one watch event at a time) a plain
        function runs at once when nothing is queued before it and the delivery task
        is running, which keeps the order and frees the old object straight away."""
        callback = self.callbacks[kind]
        if callback is None:
            return
        self._enqueued += 1
        if (inline and not self._queue and self._inline[kind] and self._task is not None
                and not self._task.done()):
            pending = self._call(kind, callback, args)
            self.delivered += 1
            if pending is not None:  # a plain function that returned an awaitable
                self._queue.append((_AWAIT, (kind, pending, args)))
                self._enqueued += 1
                self._wake_up()
            return
        self._queue.append((kind, args))
        self._wake_up()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def _call(self, kind: int, callback: Callback, args: tuple[Any, ...]
              ) -> Awaitable[Any] | None:
        """Run one callback; returns what it returned if that is awaitable."""
        try:
            result = callback(*args)
        except Exception:
            self._failed(kind, args)
            return None
        return result if inspect.isawaitable(result) else None

    def _failed(self, kind: int, args: tuple[Any, ...]) -> None:
        self.errors += 1
        if self.metrics is not None:
            self.metrics.inc("errors", self.name)
        log.exception("%s: handler %s.%s failed on %s", self.name,
                      _callback_name(self.callbacks[kind]), _HANDLER_NAMES[kind],
                      errors.describe_object(args[-1]))

    def _mark_synced(self) -> None:
        if self._sync_mark is None:
            self._sync_mark = self._enqueued
        if self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            if self._queue:
                self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._deliver())

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await lifecycle.cancel_and_wait([task])

    async def _deliver(self) -> None:
        queue = self._queue
        callbacks = self.callbacks
        wake = self._wake
        assert wake is not None
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            kind, args = queue.popleft()
            if kind == _AWAIT:
                kind, pending, args = args
            else:
                pending = self._call(kind, callbacks[kind], args)  # type: ignore[arg-type]
            if pending is not None:
                try:
                    await pending
                except Exception:
                    self._failed(kind, args)
            self.delivered += 1
            if self.delivered % _YIELD_EVERY == 0:
                await asyncio.sleep(0)


class PrometheusMetrics:
    """A ``reflector.MetricsSink`` exporting Prometheus counters and gauges.

    Needs the optional ``prometheus-client`` package (``kubemirror[metrics]``).
    Counters ``<prefix>_events_total``, ``_relists_total``, ``_errors_total``,
    ``_malformed_events_total``, the drift checks' ``_drift_checks_total``,
    ``_drift_detected_total``, ``_drift_objects_total``, ``_drift_repairs_total``,
    ``_drift_check_errors_total`` and gauges ``_store_size``, ``_queue_depth``, ``_drift_missing``,
    ``_drift_extra``, ``_drift_stale`` (objects found drifted by the last check),
    all labelled by ``resource``. Thread-safe (prometheus-client is).
    """

    def __init__(self, registry: Any = None, prefix: str = "kubemirror") -> None:
        try:
            import prometheus_client
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise errors.ConfigError(
                "PrometheusMetrics needs the prometheus-client package "
                "(pip install kubemirror[metrics])", field="metrics"
            ) from exc
        kwargs: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self._counters = {
            name: prometheus_client.Counter(f"{prefix}_{name}", doc, ["resource"], **kwargs)
            for name, doc in (
                ("events", "Watch events applied"),
                ("relists", "Relists after an expired resourceVersion"),
                ("errors", "List/watch/handler errors"),
                ("malformed_events", "Malformed watch lines skipped"),
                ("drift_checks", "Drift checks completed"),
                ("drift_detected", "Drift checks that found drift"),
                ("drift_objects", "Objects found drifted, summed over checks"),
                ("drift_repairs", "Relists to repair drift"),
                ("drift_check_errors", "Drift checks that failed"),
            )
        }
        self._gauges = {
            name: prometheus_client.Gauge(f"{prefix}_{name}", doc, ["resource"], **kwargs)
            for name, doc in (
                ("store_size", "Objects in the informer's store"),
                ("queue_depth", "Keys waiting in the DeltaFIFO"),
                ("drift_missing", "Objects on the server missing from the mirror (last check)"),
                ("drift_extra", "Objects in the mirror deleted on the server (last check)"),
                ("drift_stale", "Objects at another version in the mirror (last check)"),
            )
        }

    def inc(self, metric: str, resource: str, amount: int = 1) -> None:
        counter = self._counters.get(metric)
        if counter is not None:
            counter.labels(resource).inc(amount)

    def set(self, metric: str, resource: str, value: float) -> None:
        gauge = self._gauges.get(metric)
        if gauge is not None:
            gauge.labels(resource).set(value)


class _FifoFeed:
    """The reflector's view of the informer's DeltaFIFO.

    Each watch write is applied at once, in order. When nothing is queued or in
    process (the steady state of a watch) the single delta is applied straight
    to the indexer, exactly as a pop would have applied it, without the FIFO
    round trip; otherwise it is queued behind what is there and one key is
    popped, so a steady stream never builds a backlog and every replaced object
    is freed right after its successor is decoded (which keeps CPython's
    collector idle). Bulk writes (``replace``, ``resync``) only wake the
    informer's drain task, except the very first list into an empty informer,
    which fills the indexer in one step (``SharedInformer._bulk_replace``).
    """

    def __init__(self, fifo: delta_fifo.DeltaFIFO, informer: SharedInformer) -> None:
        self._fifo = fifo
        self._informer = informer

    def add(self, obj: Any) -> None:
        self._write(_DT_ADDED, obj)

    def update(self, obj: Any) -> None:
        self._write(_DT_UPDATED, obj)

    def _write(self, dtype: delta_fifo.DeltaType, obj: Any) -> None:
        fifo = self._fifo
        informer = self._informer
        if informer._synced and fifo.is_idle():
            informer._apply_direct(dtype, obj)
            return
        if dtype is _DT_ADDED:
            fifo.add(obj)
        else:
            fifo.update(obj)
        informer._pop_one()

    def delete(self, obj: Any) -> None:
        fifo = self._fifo
        informer = self._informer
        if informer._synced and fifo.is_idle():
            # As DeltaFIFO.delete: a key nobody knows was already reported gone.
            indexer = informer._indexer
            if indexer.key_of(obj) in indexer:
                informer._apply_direct(_DT_DELETED, obj)
            return
        fifo.delete(obj)
        informer._pop_one()

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        informer = self._informer
        if informer._can_bulk_replace():
            informer._bulk_replace(objs)
            return
        self._fifo.replace(objs, resource_version)
        informer._wake_drain()

    def resync(self) -> None:
        self._fifo.resync()
        self._informer._wake_drain()


class SharedInformer(lifecycle.Service):
    """Mirrors one collection into an ``Indexer`` and notifies any number of handlers.

    ``lw`` is any ``ListerWatcher`` (``ListWatch`` for a real server). ``indexers``
    adds named indices; ``transform`` runs on every received object before it is
    stored (strip ``managedFields`` to save ~35% memory). ``resync_period`` > 0
    re-delivers every object as ``on_update(obj, obj)`` periodically. Other keyword
    arguments go to the ``Reflector``.

    Concurrency: asyncio; a ``lifecycle.Service``: run it with ``run(stop)``,
    ``start()``/``stop()`` or ``async with``, or from plain code with
    ``start_in_thread()``. The indexer may be read from any thread. Add handlers
    from the loop's thread (or through the ``InformerThread`` handle). Objects
    handed to handlers and returned by the indexer are shared: do not mutate
    them. Handler exceptions are logged with the object's key and never stop
    anything.

    Ordering and cost: each watch event is applied to the indexer as soon as it is
    received (so a handler sees changes in server order); a relist is drained by a
    background task in batches of 256 keys with the cyclic GC paused, yielding to
    the loop between batches.

    Store modes (``store``): ``STORE_DICT`` keeps decoded dicts in an ``Indexer``;
    ``STORE_COMPACT`` keeps each object as the JSON bytes received in a
    ``CompactIndexer`` (~5x less memory, ~2x the watch throughput; reads decode,
    see ``cache.compact``). In compact mode a ``ListWatch`` is given a
    ``PartialDecoder``, index functions see the partial view (metadata plus
    ``view_paths``), ``transform`` is not supported, and handlers receive
    ``RawObject``s (the partial view as a dict, ``.raw`` bytes, ``.decode()``).
    ``ignore_fields`` (dotted paths; ``MIRROR_IGNORE_FIELDS`` is the preset for
    mirrors) are removed before storing, and logged at start. Left out (``None``),
    it is ``MIRROR_IGNORE_FIELDS`` for a compact store and nothing for a dict
    store; compact mode supports only ``metadata.managedFields`` (cut from the
    bytes). Raises ``ConfigError`` for a bad combination.

    Drift (``check_drift()``, see ``drift``): compares the indexer with a LIST at
    its last-synced resourceVersion. ``check_drift_every`` > 0 runs it
    periodically (``drift.DriftMonitor``: logged, counted through ``metrics``,
    passed to ``on_drift``; ``repair_drift`` relists when drift is found).

    Mutations (``cache.mutation_detector``): ``mutation_detector`` (``True``,
    ``MutationDetectorOptions``; ``None``: ``$KUBEMIRROR_MUTATION_DETECTOR``)
    fingerprints every stored object of a dict store, verifies them every
    ``check_every`` seconds and on replace/delete (logged), on every read in
    strict mode, and around each handler call: a handler that changes an
    object it received raises ``MutationError`` (logged and counted as a
    handler failure). Off, the informer is built without it.
    """

    def __init__(
        self,
        lw: ListerWatcher,
        indexers: Indexers | None = None,
        resync_period: float = 0.0,
        transform: reflector.TransformFunc | None = None,
        *,
        key_func: KeyFunc = keys.meta_namespace_key,
        name: str = "",
        metrics: reflector.MetricsSink | None = None,
        store: str = STORE_DICT,
        view_paths: Iterable[str] = (),
        ignore_fields: Sequence[str] | None = None,
        check_drift_every: float = 0.0,
        on_drift: drift.OnDrift | None = None,
        repair_drift: bool = False,
        mutation_detector: detection.MutationDetectorOptions | bool | None = None,
        **reflector_options: Any,
    ) -> None:
        self.name = name or str(lw)
        self.resync_period = resync_period
        self.metrics = metrics
        if ignore_fields is None:
            ignore_fields = MIRROR_IGNORE_FIELDS if store == STORE_COMPACT else ()
        self.ignore_fields = tuple(ignore_fields)
        self._indexer: index.Indexer | compact.CompactIndexer
        # Compact stores keep bytes and hand out decoded copies: nothing to watch over.
        self._mutation_options: detection.MutationDetectorOptions | None = None
        if store == STORE_COMPACT:
            unsupported = set(self.ignore_fields) - set(MIRROR_IGNORE_FIELDS)
            if unsupported or transform is not None:
                raise errors.ConfigError(
                    "a compact store keeps the bytes received: no transform, and only "
                    "metadata.managedFields can be ignored", field="store",
                    expression=", ".join(sorted(unsupported)) or "transform",
                )
            decoder = PartialDecoder(view_paths, strip_managed_fields=bool(self.ignore_fields))
            self._indexer = compact.CompactIndexer(key_func, dict(indexers or {}),
                                                   decoder=decoder)
            if isinstance(lw, ListWatch):
                lw = ListWatch(lw.client, lw.gvr, lw.namespace, label_selector=lw.label_selector,
                               field_selector=lw.field_selector, decoder=decoder)
        elif store == STORE_DICT:
            self._mutation_options = detection.resolve_options(mutation_detector)
            if self._mutation_options is None:
                self._indexer = index.Indexer(key_func, dict(indexers or {}))
            else:
                self._indexer = detection.MutationCheckingIndexer(
                    key_func, dict(indexers or {}),
                    detector=detection.MutationDetector(self.name),
                    strict=self._mutation_options.strict)
            if self.ignore_fields:
                transform = _ignoring(self.ignore_fields, transform)
        else:
            raise errors.ConfigError("store must be 'dict' or 'compact'", field="store",
                                     expression=str(store))
        self.store_mode = store
        self._fifo = delta_fifo.DeltaFIFO(
            key_func, known_objects=self._indexer, emit_delta_type_replaced=True
        )
        self.reflector = reflector.Reflector(
            lw,
            _FifoFeed(self._fifo, self),
            resync_period=resync_period,
            transform=transform,
            name=self.name,
            metrics=metrics,
            **reflector_options,
        )
        self._handlers: list[HandlerRegistration] = []
        # Old objects for notifications: a compact store gives partial views (no decode).
        self._get_old: Callable[[str], Any] = (
            self._indexer.get_view_by_key if isinstance(self._indexer, compact.CompactIndexer)
            else self._indexer.get_by_key
        )
        self._synced = False
        self._synced_event: asyncio.Event | None = None
        self._running = False
        self._drain_wake: asyncio.Event | None = None
        self.pops = 0
        if check_drift_every < 0:
            raise errors.ConfigError("must be >= 0 seconds", field="check_drift_every",
                                     expression=str(check_drift_every))
        self.drift_monitor = drift.DriftMonitor(
            self.check_drift, check_drift_every, name=self.name, on_drift=on_drift,
            repair=self.reflector.request_relist if repair_drift else None, metrics=metrics,
        ) if check_drift_every > 0 else None

    # -- reads -----------------------------------------------------------------------------

    def get_indexer(self) -> index.Indexer:
        """The mirrored objects (thread-safe reads; shared objects, do not mutate).

        A ``CompactIndexer`` in compact mode (same API; typed as ``Indexer``).
        """
        return cast(index.Indexer, self._indexer)

    def get_store(self) -> index.Indexer:
        """Same as ``get_indexer`` (the indexer is the store)."""
        return cast(index.Indexer, self._indexer)

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    @property
    def queue_depth(self) -> int:
        """Keys waiting in the DeltaFIFO (received, not yet applied to the indexer)."""
        return len(self._fifo)

    def has_synced(self) -> bool:
        """True once the first list has been fully applied to the indexer."""
        return self._synced

    @property
    def mutation_detector(self) -> detection.MutationDetector | None:
        """The store's ``MutationDetector`` when it is on, else ``None``."""
        indexer = self._indexer
        return indexer.detector if isinstance(indexer, detection.MutationCheckingIndexer) else None

    async def check_drift(self) -> drift.DriftReport:
        """Compare the indexer with the server (``drift.DriftReport``); does not repair.

        Waits until the informer has synced and applied everything received, takes
        the indexer's ``{key: resourceVersion}`` at ``last_sync_resource_version``,
        and LISTs the server at that version (``Exact``), or its current state
        with an allowance for events in flight (``drift.compare``). Raises
        ``ApiError``/``TransportError`` if the server cannot be listed. Call it on
        the informer's loop.
        """
        await self.wait_for_sync()
        while not self._fifo.is_idle():  # noqa: ASYNC110 - no event marks an idle FIFO
            await asyncio.sleep(0.01)
        rv = self.last_sync_resource_version
        mirror = self._mirror_versions()
        listed = await drift.list_versions(self.reflector.lw, self._indexer.key_of, rv,
                                           page_size=self.reflector.page_size)
        return drift.compare(mirror, listed.versions, mirror_version=rv,
                             server_version=listed.resource_version, exact=listed.exact,
                             name=self.name)

    def _mirror_versions(self) -> dict[str, str]:
        """``{key: resourceVersion}`` of every stored object (on the loop: consistent)."""
        get = self._get_old
        out: dict[str, str] = {}
        for key in self._indexer.list_keys():
            obj = get(key)
            if obj is not None:
                out[key] = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        return out

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until ``has_synced()``; returns False if ``timeout`` seconds pass first."""
        if self._synced:
            return True
        if self._synced_event is None:
            self._synced_event = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._synced_event.wait()
        except TimeoutError:
            return False
        return True

    # -- handlers --------------------------------------------------------------------------

    def add_event_handler(
        self,
        handler: object | None = None,
        *,
        on_add: Callback | None = None,
        on_update: Callback | None = None,
        on_delete: Callback | None = None,
    ) -> HandlerRegistration:
        """Register a handler (an object with ``on_*`` methods, or the callables).

        A handler added while the informer holds objects first receives one
        ``on_add`` per stored object. Returns the registration (see
        ``remove_event_handler``).
        """
        if handler is not None:
            on_add = on_add or getattr(handler, "on_add", None)
            on_update = on_update or getattr(handler, "on_update", None)
            on_delete = on_delete or getattr(handler, "on_delete", None)
        if on_add is None and on_update is None and on_delete is None:
            raise errors.ConfigError("a handler needs on_add, on_update or on_delete",
                                     field="handler")
        if self._mutation_options is not None:
            key_of = self._indexer.key_of
            on_add, on_update, on_delete = (
                None if cb is None else detection.checking_callback(
                    cb, key_of, f"handler {_callback_name(cb)}.{kind}")
                for cb, kind in ((on_add, "on_add"), (on_update, "on_update"),
                                 (on_delete, "on_delete"))
            )
        reg = HandlerRegistration((on_add, on_update, on_delete), self.name, self.metrics)
        indexer = self._indexer
        if isinstance(indexer, compact.CompactIndexer):
            for key in indexer.list_keys():
                view = indexer.get_view_by_key(key)
                if view is not None:
                    reg._push(_ADD, (view,))
        else:
            for obj in indexer.list():
                reg._push(_ADD, (obj,))
        if self._synced:
            reg._mark_synced()
        self._handlers.append(reg)
        if self._running:
            reg._start()
        return reg

    async def remove_event_handler(self, registration: HandlerRegistration) -> None:
        """Stop delivering to ``registration`` (pending notifications are dropped)."""
        if registration in self._handlers:
            self._handlers.remove(registration)
        await registration._stop()

    # -- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run reflector, pop loop and handlers until ``stop`` is set."""
        if self._synced_event is None:
            self._synced_event = asyncio.Event()
        if self.ignore_fields:
            log.info("%s: %s store; not storing %s", self.name, self.store_mode,
                     ", ".join(self.ignore_fields))
        self._running = True
        for reg in self._handlers:
            reg._start()
        try:
            await lifecycle.run_until_stopped(self._run_body(), stop)
        finally:
            self._running = False
            for reg in list(self._handlers):
                await reg._stop()

    async def _run_body(self) -> None:
        self._drain_wake = asyncio.Event()
        if len(self._fifo):
            self._drain_wake.set()
        tasks = [self.reflector.run(), self._drain_loop()]
        if self.drift_monitor is not None:
            tasks.append(self.drift_monitor.run())
        detector = self.mutation_detector
        if detector is not None and self._mutation_options is not None \
                and self._mutation_options.check_every > 0:
            tasks.append(detector.run(self._mutation_options.check_every))
        try:
            await asyncio.gather(*tasks)
        finally:
            self._drain_wake = None

    def _wake_drain(self) -> None:
        if self._drain_wake is not None:
            self._drain_wake.set()

    def _pop_one(self) -> None:
        """Apply the oldest queued deltas now (called after each watch write)."""
        try:
            self._fifo.pop(self._process, timeout=0)
        except TimeoutError:
            return
        except errors.FIFOClosedError:
            return
        except Exception:
            log.exception("%s: applying deltas failed", self.name)
        self._after_pop()

    def _apply_direct(self, dtype: delta_fifo.DeltaType, obj: Any) -> None:
        """Apply one watch delta as a pop would, when the FIFO is idle (no queue, no pop)."""
        try:
            if not self._handlers and dtype is not _DT_DELETED:
                self._indexer.update(obj)  # what _process does without handlers
            else:
                self._process(delta_fifo.Deltas((delta_fifo.Delta(dtype, obj),)), inline=True)
        except errors.KeyFuncError:
            raise  # nothing changed; the reflector logs it, as for a failing FIFO write
        except Exception:
            log.exception("%s: applying deltas failed", self.name)
        self.pops += 1
        metrics = self.metrics
        if metrics is not None and self.pops % _YIELD_EVERY == 0:
            metrics.set("store_size", self.name, len(self._indexer))
            metrics.set("queue_depth", self.name, len(self._fifo))

    def _can_bulk_replace(self) -> bool:
        """True for a list into an empty informer: nothing stored, queued or in process."""
        return not self._synced and not len(self._indexer) and self._fifo.is_idle()

    def _bulk_replace(self, objs: list[Any]) -> None:
        """The first list into an empty informer: fill the indexer in one ``replace``.

        Equivalent to queueing a Replaced delta per object and popping them all
        (every key is new, so each is one ``on_add``, in list order), without the
        per-object FIFO round trip. Raises ``KeyFuncError``/``IndexFuncError``
        with nothing changed, as ``DeltaFIFO.replace`` would.
        """
        indexer = self._indexer
        stored: list[Any] = []
        if isinstance(indexer, compact.CompactIndexer):
            stored = indexer.replace_and_view(objs)  # the views, not decoded a second time
        else:
            indexer.replace(objs)
        self._fifo.mark_populated()
        handlers = self._handlers
        if handlers:
            if not isinstance(indexer, compact.CompactIndexer):
                stored = indexer.list()
            for obj in stored:
                for reg in handlers:
                    reg._push(_ADD, (obj,))
        self.pops += len(objs)
        self._check_synced()

    def _after_pop(self) -> None:
        self.pops += 1
        if not self._synced:
            self._check_synced()
        metrics = self.metrics
        if metrics is not None and self.pops % _YIELD_EVERY == 0:
            metrics.set("store_size", self.name, len(self._indexer))
            metrics.set("queue_depth", self.name, len(self._fifo))

    async def _drain_loop(self) -> None:
        """Drain bulk writes (relists, resyncs), yielding to the loop every few hundred keys."""
        fifo = self._fifo
        wake = self._drain_wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._drain_some(fifo):  # noqa: ASYNC110 - yields between batches
                await asyncio.sleep(0)
            if not self._synced:
                self._check_synced()

    def _drain_some(self, fifo: delta_fifo.DeltaFIFO) -> bool:
        """Pop up to a few hundred keys with the GC paused; True if more may be queued."""
        with bulk.paused_gc():
            for _ in range(_YIELD_EVERY):
                try:
                    fifo.pop(self._process, timeout=0)
                except (TimeoutError, errors.FIFOClosedError):
                    return False
                except Exception:
                    log.exception("%s: applying deltas failed", self.name)
                self._after_pop()
        return True

    def _check_synced(self) -> None:
        if self._synced or not self._fifo.has_synced():
            return
        self._synced = True
        for reg in self._handlers:
            reg._mark_synced()
        if self._synced_event is not None:
            self._synced_event.set()
        if self.metrics is not None:
            self.metrics.set("store_size", self.name, len(self._indexer))
        log.info("%s: synced %d objects at resourceVersion %s", self.name,
                 len(self._indexer), self.last_sync_resource_version)

    def _process(self, deltas: delta_fifo.Deltas, inline: bool = False) -> None:
        """Apply one key's deltas to the indexer and queue notifications (never awaits);
        ``inline`` for a single watch event (see ``HandlerRegistration._push``)."""
        indexer = self._indexer
        handlers = self._handlers
        get_old = self._get_old
        for delta in deltas:
            obj = delta.object
            dtype = delta.type
            if dtype is delta_fifo.DeltaType.DELETED:
                indexer.delete(obj)
                for reg in handlers:
                    reg._push(_DELETE, (obj,), inline)
                continue
            if not handlers:
                indexer.update(obj)  # nobody to notify: no need for the old object
                continue
            old = get_old(indexer.key_of(obj))
            indexer.update(obj)
            if old is None:
                for reg in handlers:
                    reg._push(_ADD, (obj,), inline)
                continue
            is_sync = dtype is delta_fifo.DeltaType.SYNC or (
                dtype is delta_fifo.DeltaType.REPLACED and _same_version(old, obj)
            )
            if is_sync and self.resync_period <= 0:
                continue
            for reg in handlers:
                reg._push(_UPDATE, (old, obj), inline)

    # -- thread facade ---------------------------------------------------------------------

    def start_in_thread(self, *, closing: Iterable[Any] = ()) -> InformerThread:
        """Run the informer in a background thread with its own event loop.

        ``closing`` lists objects with an async ``close()`` (a ``KubeClient``) to
        close in that loop when the thread stops. Returns the handle to read the
        indexer, wait for sync and stop.
        """
        return InformerThread(self, closing)


class InformerThread(lifecycle.ServiceThread):
    """A running informer in one background thread (the sync facade for scripts).

    A ``lifecycle.ServiceThread`` running ``informer.run``, started on creation.
    ``indexer`` is readable from any thread. ``wait_for_sync(timeout)`` blocks
    the caller; ``add_event_handler`` is forwarded to the loop; ``stop()`` ends
    the loop, closes ``closing`` and joins the thread (also on ``with`` exit).
    Handlers run in the background thread. A crash is logged and kept in ``error``.
    """

    def __init__(self, informer: SharedInformer, closing: Iterable[Any] = ()) -> None:
        super().__init__(informer.run, name=f"informer-{informer.name}", closing=closing)
        self.informer = informer
        self.start()

    @property
    def indexer(self) -> index.Indexer:
        return self.informer.get_indexer()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the informer has synced; False after ``timeout`` seconds."""
        if self.running:
            with contextlib.suppress(RuntimeError):  # it stopped meanwhile
                return self.call(self.informer.wait_for_sync(timeout))
        return self.informer.has_synced()

    def check_drift(self, timeout: float | None = None) -> drift.DriftReport:
        """``SharedInformer.check_drift``, run in the informer's loop; blocks the caller.

        Raises ``RuntimeError`` if the thread is not running, ``TimeoutError`` after
        ``timeout`` seconds, and what the check raises.
        """

        async def check() -> drift.DriftReport:
            async with asyncio.timeout(timeout):
                return await self.informer.check_drift()

        return self.call(check())

    def add_event_handler(self, handler: object | None = None, **callbacks: Callback | None
                          ) -> HandlerRegistration:
        """``SharedInformer.add_event_handler``, run in the informer's loop.

        Raises ``RuntimeError`` if the thread is not running.
        """

        async def add() -> HandlerRegistration:
            return self.informer.add_event_handler(handler, **callbacks)

        return self.call(add())


def _ignoring(
    fields: Sequence[str], transform: reflector.TransformFunc | None
) -> reflector.TransformFunc:
    """A transform dropping the dotted ``fields`` (in place: received objects are ours)."""
    split = [f.split(".") for f in fields]
    for f, parts in zip(fields, split, strict=True):
        if not all(parts):
            raise errors.ConfigError("ignore_fields are dotted field names",
                                     field="ignore_fields", expression=f)

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        for parts in split:
            node: Any = obj
            for part in parts[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(parts[-1], None)
        return obj if transform is None else transform(obj)

    return strip


def _same_version(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    try:
        rv = new["metadata"]["resourceVersion"]
        return bool(rv) and rv == old["metadata"]["resourceVersion"]
    except (KeyError, TypeError):
        return False


def _callback_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


