"""``Watcher``: a collection mirrored into an indexed store, with debounced callbacks.

The ``watcher`` layer, above ``reflector`` and ``kvstore`` (haproxy-template-ic
``k8s/watcher``). One ``Reflector`` (a Kubernetes resource) or ``KVReflector`` (a
kvstore prefix, ``WatcherConfig.source``) writes through a small
``ReflectorStore`` adapter straight into a ``MemoryStore`` or ``CachedStore``
(keys from the ``IndexBy`` field paths; no second copy of the objects) that
counts ``ChangeStats``; a ``Debouncer`` turns them into at most one
``on_change`` per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kubemirror import drift, errors, keys, lifecycle, listwatch, paths, reflector
from kubemirror.cache import mutation_detector as detection
from kubemirror.client import discovery, transport
from kubemirror.kvstore import backend as kv_backend
from kubemirror.stores import (
    cached_store,
    indexed_store,
    key_index,
    memory_store,
    mutation_checking_store,
)
from kubemirror.types import Clock, GroupVersionResource, MonotonicClock, Obj
from kubemirror.watcher import kv_source, thread
from kubemirror.watcher.config import StoreType, WatcherConfig, compile_paths, invoke
from kubemirror.watcher.debouncer import ChangeStats, Debouncer

__all__ = ["Watcher"]

log = logging.getLogger(__name__)

_UNCHANGED, _CREATED, _MODIFIED = 0, 1, 2
_ONE_CHANGE = (ChangeStats(), ChangeStats(created=1), ChangeStats(modified=1))


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

    def _put(self, obj: Obj) -> tuple[int, key_index.NamespacedName | None]:
        """Upsert ``obj``: (``_CREATED``, ``_MODIFIED`` or ``_UNCHANGED`` for the same
        version, its ref); ``(_UNCHANGED, None)`` when the store rejects it."""
        try:
            ref, rv = indexed_store.object_ref(obj, ())
            keys = self.keys_for(obj)
            old = self.store.ref(*ref)
            if old is not None and rv and old.resource_version == rv and old.keys == tuple(keys):
                return _UNCHANGED, ref
            self.store.update(obj, keys)
        except errors.StoreError as exc:
            self.rejected += 1
            log.warning("%s: object not stored: %s (%s)", self.name, exc,
                        errors.describe_object(obj))
            return _UNCHANGED, None
        return (_CREATED if old is None else _MODIFIED), ref

    def _write(self, obj: Obj) -> ChangeStats:
        """Upsert ``obj``; returns created=1, modified=1 or nothing (same version)."""
        return _ONE_CHANGE[self._put(obj)[0]]

    def add(self, obj: Any) -> None:
        self.report(self._write(obj), False)

    def update(self, obj: Any) -> None:
        self.report(self._write(obj), False)

    def delete(self, obj: Any) -> None:
        try:
            # The name is the last part: a kvstore namespace may hold slashes.
            namespace, _, name = keys.meta_namespace_key(obj).rpartition("/")
        except errors.KeyFuncError as exc:
            self.rejected += 1
            log.warning("%s: delete event without a usable key: %s", self.name, exc)
            return
        if self.store.delete_by_name(namespace, name):
            self.report(ChangeStats(deleted=1), False)

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        counts = [0, 0, 0]
        put = self._put
        if not self.store.size:  # the first list: nothing stored can have gone
            for obj in objs:
                counts[put(obj)[0]] += 1
            self.report(ChangeStats(created=counts[_CREATED], modified=counts[_MODIFIED]), True)
            return
        seen: set[key_index.NamespacedName] = set()
        for obj in objs:
            outcome, ref = put(obj)
            counts[outcome] += 1
            if ref is not None:
                seen.add(ref)
        deleted = 0
        for stored in self.store.refs():
            if (stored.namespace, stored.name) not in seen and self.store.delete_by_name(
                stored.namespace, stored.name
            ):
                deleted += 1
        self.report(ChangeStats(created=counts[_CREATED], modified=counts[_MODIFIED],
                                deleted=deleted), True)

    def resync(self) -> None:
        """Nothing to do: the store is the cache."""

    def list_keys(self) -> list[str]:
        return [f"{r.namespace}/{r.name}" if r.namespace else r.name for r in self.store.refs()]



class Watcher(lifecycle.Service):
    """Mirrors the collection ``config`` describes into ``store`` and reports changes.

    ``source`` is what the collection is read through. For the Kubernetes source
    (``config.source`` unset): a ``KubeClient`` (the watcher builds the
    ``ListWatch`` and, for a ``CACHED`` store, fetches with the client's GET) or
    any ``ListerWatcher`` (then a ``CACHED`` store needs ``fetch``). For a
    ``KVSource``: a ``kvstore.Backend`` (``EtcdBackend``, ``MemoryBackend``; a
    ``CACHED`` store fetches with its ``get``), followed by a ``KVReflector``;
    ``page_size`` and ``resync_period`` then do not apply. The config is
    defaulted and validated here: a bad config raises ``ConfigError`` before
    anything runs. ``reflector`` is the ``Reflector`` or ``KVReflector``; its
    ``lw.list`` lists the current truth with its resourceVersion (revision).

    Callback order, all from one task so calls never overlap: with
    ``call_on_change_during_sync``, ``on_change(store, stats)`` for the initial
    load (``is_initial_sync=True``); then ``on_sync_complete(store, count)``
    exactly once; then debounced ``on_change`` calls (see ``Debouncer``; the
    last batch is flushed when the watcher stops). Relists after a lost watch
    are diffed and reported as ordinary changes. Sync callbacks run in a worker
    thread, coroutine callbacks on the loop; an exception is logged and the
    watch goes on. ``store`` may be read at any time from any thread.

    A ``lifecycle.Service``: run it with ``await run(stop)``, ``start()``/``await
    stop()``, ``async with``, or ``start_in_thread()`` from plain code. Should the
    reflector end with an error, it is logged when the watcher stops. ``clock``
    drives the debouncer. ``freeze_gc_after_sync`` calls ``gc.freeze()`` once
    the first list is stored (see ``Reflector``; process-wide, opt-in), sparing
    the full collection that would otherwise scan the freshly listed objects.

    ``check_drift()`` compares the store with the server (see ``drift``;
    periodically with ``config.check_drift_every``). ``mutation_detector``
    (``None``: ``$KUBEMIRROR_MUTATION_DETECTOR``) guards a ``MEMORY`` store's
    objects (``cache.mutation_detector``); off, the plain store is used.
    """

    def __init__(
        self,
        config: WatcherConfig,
        source: transport.KubeClient | listwatch.ListerWatcher | kv_backend.Backend,
        *,
        fetch: cached_store.Fetch | None = None,
        clock: Clock | None = None,
        page_size: int = 500,
        resync_period: float = 0.0,
        freeze_gc_after_sync: bool = False,
        mutation_detector: detection.MutationDetectorOptions | bool | None = None,
    ) -> None:
        config.set_defaults()
        config.validate()
        assert config.cache_ttl is not None
        assert config.debounce_interval is not None
        self.config = config
        namespace = config.watch_namespace()
        index_by = compile_paths(config.index_by, "index_by")
        ignore = compile_paths(config.ignore_fields, "ignore_fields")
        self.source = source
        kv = config.source
        lister_watcher: listwatch.ListerWatcher | None
        if kv is not None:
            backend = _require_backend(source, kv)
            lister_watcher = None
            if fetch is None:
                fetch = _kv_fetch(backend, kv)
            self.name = f"kvstore {kv.key_prefix(namespace) or '/'}"
        elif isinstance(source, transport.KubeClient):
            assert config.gvr is not None
            lister_watcher = listwatch.ListWatch(
                source, config.gvr, namespace or None, label_selector=str(config.selector())
            )
            if fetch is None:
                fetch = _client_fetch(source, config.gvr)
        elif isinstance(source, kv_backend.Backend):
            raise errors.ConfigError(
                "a kvstore Backend reads a KVSource: set WatcherConfig.source", field="source"
            )
        else:
            lister_watcher = source
        if kv is None:
            self.name = f"{config.gvr}" + (f" in {namespace}" if namespace else "")
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
        self._mutation_options: detection.MutationDetectorOptions | None = None
        if config.store_type is not StoreType.CACHED:
            self._mutation_options = detection.resolve_options(mutation_detector)
            if self._mutation_options is None:
                self.store = memory_store.MemoryStore(len(index_by), ignore_fields=ignore)
            else:
                self.store = mutation_checking_store.MutationCheckingMemoryStore(
                    len(index_by), ignore, detector=detection.MutationDetector(self.name),
                    strict=self._mutation_options.strict)
        self._writer = _StoreWriter(self.store, index_by, self._record, self.name)
        self.reflector: reflector.Reflector | kv_source.KVReflector
        if lister_watcher is None:
            assert kv is not None
            self.reflector = kv_source.KVReflector(
                backend,
                kv,
                self._writer,
                namespace=namespace,
                selector=config.selector(),
                name=self.name,
                freeze_gc_after_sync=freeze_gc_after_sync,
            )
        else:
            self.reflector = reflector.Reflector(
                lister_watcher,
                self._writer,
                page_size=page_size,
                resync_period=resync_period,
                name=self.name,
                freeze_gc_after_sync=freeze_gc_after_sync,
            )
        self._debouncer = Debouncer(config.debounce_interval, self._clock)
        self._listed = False
        self._sync_stats: ChangeStats | None = None
        self._initial_count = 0
        self._sync_reported = False
        self._synced = asyncio.Event()
        self._wake: asyncio.Event | None = None
        self.drift_monitor = drift.DriftMonitor(
            self.check_drift, config.check_drift_every, name=self.name,
            on_drift=config.on_drift,
            repair=self.reflector.request_relist if config.repair_drift else None,
        ) if config.check_drift_every else None

    async def check_drift(self) -> drift.DriftReport:
        """Compare the store with the server (``drift.DriftReport``, keys
        ``namespace/name``); waits for the sync; does not repair. See
        ``SharedInformer.check_drift``. Call it on the watcher's loop.
        """
        await self._synced.wait()
        rv = self.reflector.last_sync_resource_version
        mirror = {keys.object_key(r.namespace, r.name): r.resource_version
                  for r in self.store.refs()}
        listed = await drift.list_versions(self.reflector.lw, keys.meta_namespace_key, rv,
                                           page_size=self.reflector.page_size)
        return drift.compare(mirror, listed.versions, mirror_version=rv,
                             server_version=listed.resource_version, exact=listed.exact,
                             name=self.name)

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
        """Wait until ``has_synced()``; raise what ended the watcher first, if it ended
        with an error (``ResourceNotFoundError`` for a resource the server does not serve).
        """
        task = self._task
        if task is None or self._synced.is_set():
            await self._synced.wait()
            return
        synced = asyncio.ensure_future(self._synced.wait())
        try:
            await asyncio.wait({synced, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
        if not self._synced.is_set() and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error
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
        """Watch until ``stop`` is set; then stop the reflector and flush pending changes.

        Raises ``ResourceNotFoundError`` at once when the source is a ``KubeClient`` and
        the server answers but does not serve ``config.gvr`` (a server that cannot be
        reached is retried by the reflector instead).
        """
        if isinstance(self.source, transport.KubeClient) and self.config.gvr is not None \
                and self.config.source is None:
            await discovery.Discovery(self.source).require(self.config.gvr)
        if isinstance(self.store, cached_store.CachedStore):
            self.store.bind_loop(asyncio.get_running_loop())
        self._wake = asyncio.Event()
        stopping = asyncio.Event()
        self.reflector.start()
        dispatcher = asyncio.ensure_future(self._dispatch(stopping))
        checks = [asyncio.ensure_future(self.drift_monitor.run())] if self.drift_monitor else []
        store = self.store
        if isinstance(store, mutation_checking_store.MutationCheckingMemoryStore) \
                and self._mutation_options and self._mutation_options.check_every > 0:
            checks.append(asyncio.ensure_future(
                store.detector.run(self._mutation_options.check_every)))
        try:
            await lifecycle.wait_stopped(stop)
        finally:
            await lifecycle.cancel_and_wait(checks)
            try:
                await self.reflector.stop()
            except Exception:
                log.exception("%s: the reflector failed", self.name)
            stopping.set()
            self._wake.set()
            await asyncio.gather(dispatcher, return_exceptions=True)
            stats = self._debouncer.flush()
            if stats is not None and self._sync_reported:
                await self._on_change(stats)

    async def _on_change(self, stats: ChangeStats) -> None:
        assert self.config.on_change is not None
        await invoke(self.config.on_change, f"{self.name}: on_change", self.store, stats)

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
            await invoke(
                self.config.on_sync_complete,
                f"{self.name}: on_sync_complete",
                self.store,
                self._initial_count,
            )
        self._sync_reported = True
        self._synced.set()

    def start_in_thread(self) -> thread.WatcherThread:
        """Run on a new event loop in a daemon thread; see ``WatcherThread``."""
        return thread.WatcherThread(self).start()


def _require_backend(source: object, kv: kv_source.KVSource) -> kv_backend.Backend:
    """``source`` as the ``Backend`` a ``KVSource`` is read through, else ``ConfigError``."""
    if not isinstance(source, kv_backend.Backend):
        raise errors.ConfigError(
            f"a KVSource ({kv}) is read through a kvstore Backend (EtcdBackend, "
            f"MemoryBackend), got {type(source).__name__}",
            field="source",
        )
    return source


def _kv_fetch(backend: kv_backend.Backend, kv: kv_source.KVSource) -> cached_store.Fetch:
    """A ``CachedStore`` fetch reading the key (its resourceVersion is not known: ``""``)."""

    async def fetch(namespace: str, name: str) -> Obj | None:
        key = kv.key_of(namespace, name)
        value = await backend.get(key)
        if value is None:
            return None
        obj = kv.to_object(key, value, 0)
        obj["metadata"].pop("resourceVersion", None)
        return obj

    return fetch


def _client_fetch(
    client: transport.KubeClient, gvr: GroupVersionResource
) -> cached_store.Fetch:
    async def fetch(namespace: str, name: str) -> Obj | None:
        try:
            return await client.get(gvr, name, namespace or None)
        except errors.NotFoundError:
            return None

    return fetch
