"""SharedInformer: one Reflector feeding a DeltaFIFO feeding an Indexer, fanned out to handlers.

The ``informer`` layer (client-go ``tools/cache`` ``sharedIndexInformer``). The
reflector writes list and watch results into a ``DeltaFIFO`` whose known objects
are the informer's indexer (a ``cache.KeyedIndexer``: ``Indexer`` or
``CompactIndexer``). The FIFO runs in apply-at-once mode: every delta reaches the
indexer through one function, ``SharedInformer._apply`` (indexer write, handler
notifications, counters), at once when nothing is queued (a watch event, the first
list), else in FIFO order (a relist drained by a background task). Handlers are
``handlers.HandlerRegistration``s, each with its own queue and task, so a slow
async handler delays only itself. A thread-backed facade
(``thread.InformerThread``) serves plain scripts from the same asyncio core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from kubemirror import bulk, drift, errors, keys, lifecycle, reflector
from kubemirror.cache import compact, delta_fifo, index
from kubemirror.cache import mutation_detector as detection
from kubemirror.cache import store as cache_store
from kubemirror.cache.raw_object import PartialDecoder
from kubemirror.cache.thread_safe_store import Indexers
from kubemirror.informer import handlers, thread
from kubemirror.listwatch import ListerWatcher, ListWatch
from kubemirror.types import KeyFunc

__all__ = [
    "MIRROR_IGNORE_FIELDS",
    "STORE_COMPACT",
    "STORE_DICT",
    "SharedInformer",
]

log = logging.getLogger(__name__)

_ADD, _UPDATE, _DELETE = handlers.ADD, handlers.UPDATE, handlers.DELETE
_YIELD_EVERY = 256
_DT_DELETED = delta_fifo.DeltaType.DELETED
_DT_REPLACED = delta_fifo.DeltaType.REPLACED
_DT_SYNC = delta_fifo.DeltaType.SYNC

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


class _FifoFeed:
    """The reflector's store: the informer's DeltaFIFO, plus what follows a bulk write.

    ``add``/``update``/``delete`` are the FIFO's own methods (apply-at-once mode:
    applied before they return). After ``replace`` (applied at once for a first
    list, queued for a relist) and ``resync`` (queued), the informer checks its
    sync state and wakes its drain task.
    """

    __slots__ = ("_fifo", "_informer", "add", "delete", "update")

    def __init__(self, fifo: delta_fifo.DeltaFIFO, informer: SharedInformer) -> None:
        self._fifo = fifo
        self._informer = informer
        self.add = fifo.add
        self.update = fifo.update
        self.delete = fifo.delete

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        self._fifo.replace(objs, resource_version)
        self._informer._after_bulk_write()

    def resync(self) -> None:
        self._fifo.resync()
        self._informer._after_bulk_write()


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
        self._indexer: cache_store.KeyedIndexer
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
            fifo_key_func: KeyFunc = self._indexer.key_of  # keys the partial view
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
            fifo_key_func = key_func  # what Indexer.key_of applies
            if self.ignore_fields:
                transform = _ignoring(self.ignore_fields, transform)
        else:
            raise errors.ConfigError("store must be 'dict' or 'compact'", field="store",
                                     expression=str(store))
        self.store_mode = store
        # The FIFO keys each delta once, as the indexer would; the indexer's *_by_key
        # writes trust that key.
        self._fifo = delta_fifo.DeltaFIFO(
            fifo_key_func, known_objects=self._indexer, emit_delta_type_replaced=True,
            apply=self._apply,
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
        self._handlers: list[handlers.HandlerRegistration] = []
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
        get = self._indexer.get_view_by_key
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
        on_add: handlers.Callback | None = None,
        on_update: handlers.Callback | None = None,
        on_delete: handlers.Callback | None = None,
    ) -> handlers.HandlerRegistration:
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
                    cb, key_of, f"handler {handlers.callback_name(cb)}.{kind}")
                for cb, kind in ((on_add, "on_add"), (on_update, "on_update"),
                                 (on_delete, "on_delete"))
            )
        reg = handlers.HandlerRegistration((on_add, on_update, on_delete), self.name,
                                           self.metrics)
        for obj in self._indexer.list_views():
            reg._push(_ADD, (obj,))
        if self._synced:
            reg._mark_synced()
        self._handlers.append(reg)
        if self._running:
            reg._start()
        return reg

    async def remove_event_handler(self, registration: handlers.HandlerRegistration) -> None:
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

    def _after_bulk_write(self) -> None:
        """After a ``replace``/``resync``: synced yet? (a first list is applied at once);
        the drain task takes what was queued."""
        if not self._synced:
            self._check_synced()
        if len(self._fifo):
            self._wake_drain()

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
        """Apply up to a few hundred queued keys with the GC paused; True if more may be
        queued."""
        with bulk.paused_gc():
            for _ in range(_YIELD_EVERY):
                if not fifo.apply_next():
                    return False
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

    def _apply(self, key: str, dtype: delta_fifo.DeltaType, obj: Any, at_once: bool) -> None:
        """Apply one delta: the one route of every change into the mirror (the FIFO's
        ``apply``, client-go's ``processDeltas`` for one delta).

        Writes the indexer under ``key`` and queues notifications (never awaits):
        Deleted -> ``on_delete(obj)`` (a tombstone for a delete found by a relist);
        otherwise ``on_add`` for a new key, ``on_update(old, obj)`` for a known one,
        except Sync deltas and Replaced ones at an unchanged resourceVersion, which
        are announced only with a resync period. ``at_once`` (a watch event applied
        as received) lets a plain callback run inline (``HandlerRegistration._push``).
        A failing write is logged and counted as applied, as the FIFO would.
        """
        indexer = self._indexer
        registrations = self._handlers
        try:
            if dtype is _DT_DELETED:
                indexer.delete_by_key(key)
                for reg in registrations:
                    reg._push(_DELETE, (obj,), at_once)
            elif not registrations:
                indexer.update_by_key(key, obj)  # nobody to notify: no need for the old object
            else:
                old = indexer.swap_by_key(key, obj)
                if old is None:
                    for reg in registrations:
                        reg._push(_ADD, (obj,), at_once)
                elif self.resync_period > 0 or not (
                        dtype is _DT_SYNC
                        or (dtype is _DT_REPLACED and _same_version(old, obj))):
                    for reg in registrations:
                        reg._push(_UPDATE, (old, obj), at_once)
        except Exception:
            log.exception("%s: applying a %s delta of %s failed", self.name, dtype.value, key)
        self.pops += 1
        metrics = self.metrics
        if metrics is not None and self.pops % _YIELD_EVERY == 0:
            metrics.set("store_size", self.name, len(indexer))
            metrics.set("queue_depth", self.name, len(self._fifo))

    # -- thread facade ---------------------------------------------------------------------

    def start_in_thread(self, *, closing: Iterable[Any] = ()) -> thread.InformerThread:
        """Run the informer in a background thread with its own event loop.

        ``closing`` lists objects with an async ``close()`` (a ``KubeClient``) to
        close in that loop when the thread stops. Returns the handle to read the
        indexer, wait for sync and stop.
        """
        return thread.InformerThread(self, closing)


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
