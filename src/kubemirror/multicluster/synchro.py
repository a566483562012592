"""Cluster synchro: feeds a storage from member clusters (multicluster layer).

For every (cluster, resource) a ``Reflector`` lists and watches the member
cluster and writes straight into the storage through its ``cluster_store``
(the storage *is* the informer's store: no second copy, relists become diffs).
Each cluster's reflectors run only while this process holds the storage's
``sync_lease`` for it: always for a ``MemoryStorage``; for a ``PostgresStorage``
shared by replicas, one replica at a time, the others waiting to take over.
``set_clusters`` reconciles the configured clusters: new ones are prepared and
started, removed ones are stopped and cleaned (``clean_cluster``, which emits
DELETED events to watchers). ``StorageListerWatcher`` is a ``ListerWatcher``
over a storage itself, so one storage can mirror another. asyncio only: drive a
synchro from one event loop (``run(stop)``, ``start``/``stop``, ``async with``).

``MemberHealth`` (``ClusterSynchro.health[cluster]``) says whether a member
answers: every lister-watcher the synchro starts is wrapped so that its lists,
watch openings and events count as successes and its errors as failures, which
gives readiness checks and metrics "unreachable for N s" without touching the
reflector. ``wait_for_object`` waits until the storage holds a member's write
(read-your-writes for a server that forwards writes to the members).

``check_drift(cluster, gvr)`` compares one member's objects in the storage with a
LIST of the member (``drift``); ``check_drift_every`` runs it per feed
(``drift_monitors()``), and ``repair_drift`` relists a drifted feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

from kubemirror import drift, errors, keys, lifecycle
from kubemirror.listing import ListOptions, ListPage
from kubemirror.listwatch import EventStream, ListerWatcher
from kubemirror.multicluster import resource_version, watch_cache
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.storage_api import ClusterStoreApi, ResourceStorageApi, Storage
from kubemirror.types import GroupVersionResource, WatchEvent

__all__ = [
    "ClusterSynchro",
    "ListerWatcherFactory",
    "MemberHealth",
    "ReflectorFactory",
    "Runnable",
    "StorageListerWatcher",
    "TrackedListerWatcher",
    "default_reflector_factory",
    "wait_for_object",
]

log = logging.getLogger(__name__)


class Runnable(Protocol):
    """What the synchro needs from a reflector: run until ``stop`` is set."""

    async def run(self, stop: asyncio.Event | None = None) -> None: ...


class ListerWatcherFactory(Protocol):
    """Builds the ``ListerWatcher`` of one resource type of one member cluster."""

    def __call__(self, cluster: str, gvr: GroupVersionResource) -> ListerWatcher: ...


ReflectorFactory = Callable[..., Runnable]
"""``factory(lister_watcher, store, *, resync_period, page_size, name) -> Runnable``."""


def default_reflector_factory(
    lister_watcher: ListerWatcher,
    store: ClusterStoreApi,
    *,
    resync_period: float = 0.0,
    page_size: int = 500,
    name: str = "",
) -> Runnable:
    """``kubemirror.reflector.Reflector(lister_watcher, store, ...)``, imported on first use."""
    module = importlib.import_module("kubemirror.reflector")
    reflector: Runnable = module.Reflector(
        lister_watcher, store, resync_period=resync_period, page_size=page_size, name=name
    )
    return reflector


@dataclass(slots=True)
class _Failing:
    since: float  # monotonic
    since_wall: float
    error: BaseException
    error_at: float  # monotonic


class MemberHealth:
    """Whether one member cluster answers, from its lister-watchers' outcomes.

    ``success(feed)`` and ``failure(feed, exc)`` are reported per feed (one
    resource type); the member is up while no feed is in a run of failures.
    ``down_for()`` is how long the oldest current run of failures lasts (0 when
    up); ``last_error`` the newest error of the failing feeds; ``last_success`` the
    wall-clock time of the newest success. A 410 Gone counts as a success (the
    member answered). Cheap enough to call on every event. One event loop.
    """

    __slots__ = ("_clock", "_failing", "_wall", "cluster", "failures", "last_success")

    def __init__(
        self,
        cluster: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self._clock = clock
        self._wall = wall
        self._failing: dict[str, _Failing] = {}
        self.failures = 0
        self.last_success: float | None = None

    def success(self, feed: str) -> None:
        """``feed`` got an answer (a list, an opened watch, an event)."""
        self.last_success = self._wall()
        if self._failing:
            self._failing.pop(feed, None)

    def failure(self, feed: str, exc: BaseException) -> None:
        """``feed`` failed with ``exc`` (a run of failures starts or goes on)."""
        self.failures += 1
        now = self._clock()
        current = self._failing.get(feed)
        if current is None:
            self._failing[feed] = _Failing(now, self._wall(), exc, now)
        else:
            current.error = exc
            current.error_at = now

    def forget(self, feed: str) -> None:
        """``feed`` was stopped: its failures no longer count."""
        self._failing.pop(feed, None)

    @property
    def up(self) -> bool:
        """True unless some feed is failing."""
        return not self._failing

    def down_for(self) -> float:
        """Seconds since the oldest current run of failures began (0.0 when up)."""
        if not self._failing:
            return 0.0
        return max(0.0, self._clock() - min(f.since for f in self._failing.values()))

    @property
    def down_since(self) -> float | None:
        """Wall-clock time the oldest current run of failures began (``None`` when up)."""
        if not self._failing:
            return None
        return min(f.since_wall for f in self._failing.values())

    @property
    def last_error(self) -> BaseException | None:
        """The newest error of the failing feeds (``None`` when up)."""
        if not self._failing:
            return None
        return max(self._failing.values(), key=lambda f: f.error_at).error

    def __repr__(self) -> str:
        state = "up" if self.up else f"down for {self.down_for():.1f}s"
        return f"MemberHealth({self.cluster!r}, {state})"


def _reachable(exc: BaseException) -> bool:
    """Errors that prove the member answered (the reflector relists on them)."""
    return isinstance(exc, errors.GoneError)


class _TrackedStream:
    """An ``EventStream`` reporting its events and errors to a ``MemberHealth``."""

    def __init__(self, stream: EventStream, health: MemberHealth, feed: str) -> None:
        self._stream = stream
        self._health = health
        self._feed = feed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            event = await self._stream.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            if _reachable(exc):
                self._health.success(self._feed)
            else:
                self._health.failure(self._feed, exc)
            raise
        self._health.success(self._feed)
        return event

    async def aclose(self) -> None:
        await self._stream.aclose()


class TrackedListerWatcher:
    """Wraps a ``ListerWatcher``: its outcomes are reported to ``health`` as ``feed``.

    A list that returns, a watch that opens and every event are successes; any
    other exception (transport errors, API errors but 410) is a failure, and is
    re-raised unchanged.
    """

    def __init__(self, inner: ListerWatcher, health: MemberHealth, feed: str) -> None:
        self.inner = inner
        self.health = health
        self.feed = feed

    def _failed(self, exc: Exception) -> None:
        if _reachable(exc):
            self.health.success(self.feed)
        else:
            self.health.failure(self.feed, exc)

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]:
        try:
            result = await self.inner.list(opts)
        except Exception as exc:
            self._failed(exc)
            raise
        self.health.success(self.feed)
        return result

    async def watch(self, opts: ListOptions) -> _TrackedStream:
        try:
            stream = await self.inner.watch(opts)
        except Exception as exc:
            self._failed(exc)
            raise
        self.health.success(self.feed)
        return _TrackedStream(stream, self.health, self.feed)

    def __str__(self) -> str:
        return str(self.inner)


async def wait_for_object(
    storage: Storage,
    gvr: GroupVersionResource,
    cluster: str,
    namespace: str,
    name: str,
    *,
    original_rv: str = "",
    gone: bool = False,
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the whole wait
) -> watch_cache.StoredObject | None:
    """Wait until the storage reflects a member's write of one object; the entry then.

    Done when ``cluster``'s object is stored at the member's ``original_rv`` or a
    newer one (member versions compared as integers when both are), or, with
    ``gone``, once it is absent (returns ``None``). Raises ``TimeoutError`` after
    ``timeout`` seconds. Wakes on the storage's own events: no polling.
    """
    resource_storage = storage.resource_storage(gvr)
    key = keys.object_key(namespace if resource_storage.info.namespaced else "", name)

    async def reached() -> tuple[bool, watch_cache.StoredObject | None]:
        entry = await resource_storage.aget_entry(cluster, key)
        if gone:
            return entry is None, entry
        return entry is not None and _not_older(entry.original_rv, original_rv), entry

    done, entry = await reached()
    if done:
        return entry
    watch = await resource_storage.awatch(
        ListOptions(resource_version=storage.resource_version),
        scope=ListScope((cluster,), namespace or None),
    )
    try:
        async with asyncio.timeout(timeout):
            while not done:
                if not await watch.next_batch(1024):
                    raise TimeoutError(f"the watch of {resource_storage.gvr} ended")
                done, entry = await reached()
    finally:
        watch.stop()
    return entry


def _not_older(have: str, want: str) -> bool:
    if have == want or not want:
        return True
    if have.isdigit() and want.isdigit():
        return int(have) >= int(want)
    return False


@dataclass(slots=True)
class _Feed:
    cluster: str
    gvr: GroupVersionResource
    runner: Runnable
    stop: asyncio.Event
    task: asyncio.Task[None]
    lister_watcher: ListerWatcher
    resource_storage: ResourceStorageApi | None = None
    drift_monitor: drift.DriftMonitor | None = None
    drift_task: asyncio.Task[None] | None = None


class ClusterSynchro(lifecycle.Service):
    """Keeps ``storage`` equal to the member clusters' resources.

    ``lister_watcher_for(cluster, gvr)`` supplies each cluster's ListerWatcher
    (for example ``ListWatch(client_of[cluster], gvr)``); ``reflector_factory``
    builds the reflector (default: ``kubemirror.reflector.Reflector``). A
    reflector that crashes is logged and restarted after ``restart_delay``
    seconds. ``check_drift_every`` > 0 checks every feed for drift that often
    (``drift.DriftMonitor``; ``repair_drift``: relist a drifted feed, when its
    runner has ``request_relist``). Not thread-safe: use from one event loop.

    Lifecycle (``lifecycle.Service``): ``run(stop)`` keeps the reflectors going until
    ``stop`` is set; ``start()``, ``stop()`` and ``async with`` are inherited, except
    that ``stop()`` without ``start()`` still stops the reflectors added meanwhile.
    """

    def __init__(
        self,
        storage: Storage,
        lister_watcher_for: ListerWatcherFactory,
        *,
        reflector_factory: ReflectorFactory = default_reflector_factory,
        page_size: int = 500,
        resync_period: float = 0.0,
        restart_delay: float = 1.0,
        check_drift_every: float = 0.0,
        repair_drift: bool = False,
    ) -> None:
        if check_drift_every < 0:
            raise errors.ConfigError("must be >= 0 seconds", field="check_drift_every",
                                     expression=str(check_drift_every))
        self.check_drift_every = check_drift_every
        self.repair_drift = repair_drift
        self.storage = storage
        self.lister_watcher_for = lister_watcher_for
        self.reflector_factory = reflector_factory
        self.page_size = page_size
        self.resync_period = resync_period
        self.restart_delay = restart_delay
        self._feeds: dict[tuple[str, GroupVersionResource], _Feed] = {}
        self.health: dict[str, MemberHealth] = {}
        """``{cluster: MemberHealth}``: whether each member answers its reflectors."""

    # -- configuration --------------------------------------------------------------------

    def clusters(self) -> list[str]:
        """Clusters being synchronised, sorted."""
        return sorted({cluster for cluster, _ in self._feeds})

    def resources(self, cluster: str) -> list[GroupVersionResource]:
        """Resource types synchronised for ``cluster``."""
        return sorted((g for c, g in self._feeds if c == cluster), key=str)

    def _resource_storage(
        self, resource: GroupVersionResource | ResourceInfo
    ) -> ResourceStorageApi:
        if isinstance(resource, ResourceInfo):
            return self.storage.new_resource_storage(resource)
        return self.storage.resource_storage(resource)

    async def add_cluster(
        self, cluster: str, resources: Iterable[GroupVersionResource | ResourceInfo]
    ) -> None:
        """Prepare ``cluster`` and start one reflector per resource type not yet running.

        Resource types must be registered in the storage (or given as
        ``ResourceInfo`` to register them). Raises ``NotFoundError`` otherwise.
        """
        self.storage.prepare_cluster(cluster)
        health = self.health.setdefault(cluster, MemberHealth(cluster))
        for resource in resources:
            rs = self._resource_storage(resource)
            key = (cluster, rs.gvr)
            if key in self._feeds:
                continue
            store = rs.cluster_store(cluster)
            name = f"{cluster}/{rs.gvr}"
            lw = TrackedListerWatcher(self.lister_watcher_for(cluster, rs.gvr), health, name)
            runner = self.reflector_factory(
                lw, store, resync_period=self.resync_period, page_size=self.page_size, name=name
            )
            stop = asyncio.Event()
            task = asyncio.get_running_loop().create_task(
                self._supervise(cluster, name, runner, stop), name=f"synchro {name}"
            )
            feed = self._feeds[key] = _Feed(cluster, rs.gvr, runner, stop, task, lw, rs)
            if self.check_drift_every > 0:
                feed.drift_monitor = drift.DriftMonitor(
                    functools.partial(self.check_drift, cluster, rs.gvr),
                    self.check_drift_every, name=name,
                    repair=getattr(runner, "request_relist", None) if self.repair_drift else None,
                )
                feed.drift_task = asyncio.get_running_loop().create_task(
                    feed.drift_monitor.run(), name=f"drift {name}")
            log.info("synchro: started %s", name)

    def drift_monitors(self) -> dict[tuple[str, GroupVersionResource], drift.DriftMonitor]:
        """``{(cluster, gvr): DriftMonitor}`` of the feeds checked periodically."""
        return {key: feed.drift_monitor for key, feed in self._feeds.items()
                if feed.drift_monitor is not None}

    async def check_drift(self, cluster: str, gvr: GroupVersionResource) -> drift.DriftReport:
        """Compare ``cluster``'s ``gvr`` objects in the storage with a LIST of the member.

        Versions compared are the member's own (the storage keeps them in each
        object's ``<prefix>.<index>.<member rv>``); the LIST is at the feed's
        last-synced version when the member supports it (see ``drift``); waits for
        the feed's first sync. Raises ``KeyError`` for a (cluster, gvr) not being
        synchronised, and what the LIST raises. The feed's runner must have
        ``last_sync_resource_version`` and ``has_synced()`` (a ``Reflector`` does).
        """
        feed = self._feeds[(cluster, gvr)]
        rs = feed.resource_storage
        assert rs is not None
        runner: Any = feed.runner
        while not runner.has_synced():  # noqa: ASYNC110 - the reflector has no sync event
            await asyncio.sleep(0.05)
        await self.storage.flush()  # writes the reflector handed over, applied
        rv = str(runner.last_sync_resource_version)
        mirror: dict[str, str] = {}
        for obj in (await rs.alist(scope=ListScope((cluster,)))).items:
            meta = obj["metadata"]
            stored = str(meta.get("resourceVersion", ""))
            try:
                original = resource_version.parse_memory_resource_version(stored)[2]
            except errors.ApiError:
                original = stored
            mirror[keys.meta_namespace_key(obj)] = original
        listed = await drift.list_versions(feed.lister_watcher, keys.meta_namespace_key, rv,
                                           page_size=self.page_size)
        return drift.compare(mirror, listed.versions, mirror_version=rv,
                             server_version=listed.resource_version, exact=listed.exact,
                             name=f"{cluster}/{gvr}")

    async def remove_resource(self, cluster: str, gvr: GroupVersionResource) -> None:
        """Stop synchronising one resource type of ``cluster`` and delete its objects."""
        feed = self._feeds.pop((cluster, gvr), None)
        if feed is not None:
            await self._stop_feed(feed)
            if cluster in self.health:
                self.health[cluster].forget(f"{cluster}/{gvr}")
        await self.storage.aclean_cluster_resource(cluster, gvr)

    async def remove_cluster(self, cluster: str) -> None:
        """Stop every reflector of ``cluster`` and clean it out of the storage."""
        feeds = [f for k, f in self._feeds.items() if k[0] == cluster]
        for feed in feeds:
            del self._feeds[(feed.cluster, feed.gvr)]
        await asyncio.gather(*(self._stop_feed(f) for f in feeds))
        self.health.pop(cluster, None)
        await self.storage.aclean_cluster(cluster)
        log.info("synchro: removed cluster %s", cluster)

    async def set_clusters(
        self, desired: Mapping[str, Iterable[GroupVersionResource | ResourceInfo]]
    ) -> None:
        """Reconcile to exactly ``desired`` (cluster -> resource types).

        Clusters that went away are removed and cleaned; resource types dropped
        from a cluster are stopped and cleaned; new ones are started.
        """
        for cluster in self.clusters():
            if cluster not in desired:
                await self.remove_cluster(cluster)
        for cluster, resources in desired.items():
            wanted = [self._resource_storage(r).gvr for r in resources]
            for gvr in self.resources(cluster):
                if gvr not in wanted:
                    await self.remove_resource(cluster, gvr)
            await self.add_cluster(cluster, [self._resource_storage(g).info for g in wanted])

    # -- lifecycle ------------------------------------------------------------------------

    async def _supervise(
        self, cluster: str, name: str, runner: Runnable, stop: asyncio.Event
    ) -> None:
        """Run ``runner`` while this process holds ``cluster``'s sync lease (always, for a
        storage no other process writes); restart it after a crash, stop it when the
        lease is lost and wait to get it back."""
        while not stop.is_set():
            lease = self.storage.sync_lease(cluster)
            if not await lease.acquire(stop):
                return
            held = asyncio.Event()
            relay = asyncio.get_running_loop().create_task(_relay(stop, lease.lost, held))
            try:
                await self._run_while_held(name, runner, held)
            finally:
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
                await lease.release()
            if lease.lost.is_set() and not stop.is_set():
                log.warning("synchro: lost the sync lease of %s; %s waits for it", cluster, name)

    async def _run_while_held(self, name: str, runner: Runnable, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await runner.run(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("synchro: reflector %s crashed; restarting", name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.restart_delay)
            else:
                if not stop.is_set():
                    log.warning("synchro: reflector %s returned early; restarting", name)

    @staticmethod
    async def _stop_feed(feed: _Feed) -> None:
        if feed.drift_task is not None:
            await lifecycle.cancel_and_wait([feed.drift_task])
        feed.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(feed.task), 10)
        except TimeoutError:
            feed.task.cancel()
            await asyncio.gather(feed.task, return_exceptions=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Wait until ``stop`` is set, then stop every reflector (the data stays)."""
        try:
            await lifecycle.wait_stopped(stop)
        finally:
            feeds = list(self._feeds.values())
            self._feeds.clear()
            await asyncio.gather(*(self._stop_feed(f) for f in feeds))

    async def stop(self) -> None:
        """Stop every reflector and wait for them (also when ``start()`` was not called)."""
        if self._task is None:
            await self.run(_set_event())
        else:
            await super().stop()


async def _relay(stop: asyncio.Event, lost: asyncio.Event, out: asyncio.Event) -> None:
    """Set ``out`` as soon as ``stop`` or ``lost`` is set."""
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        out.set()


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


class _EventStream:
    """Adapts a storage ``Watch`` to the ``EventStream`` protocol (dict events, ``aclose``)."""

    def __init__(self, watch: watch_cache.Watch, timeout: float | None) -> None:
        self._watch = watch
        self._deadline = (
            asyncio.get_running_loop().time() + timeout if timeout and timeout > 0 else None
        )

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._deadline is None:
            event = await self._watch.__anext__()
        else:
            remaining = self._deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                self._watch.stop()
                raise StopAsyncIteration
            try:
                event = await asyncio.wait_for(self._watch.__anext__(), remaining)
            except TimeoutError:
                self._watch.stop()
                raise StopAsyncIteration from None
        out: WatchEvent = {"type": event.type, "object": dict(event.object)}
        return out

    async def aclose(self) -> None:
        self._watch.stop()


class StorageListerWatcher:
    """A ``ListerWatcher`` over one resource type of a storage (optionally one cluster).

    Lists return a ``ListPage`` and watches ``WatchEvent``s whose objects are
    top-level copies of the stored ones (nested values shared: do not mutate
    them); watches end after ``opts.timeout_seconds`` when set. Errors are the
    storage's ``ApiError``s (410 etc.).
    """

    def __init__(self, resource_storage: ResourceStorageApi, cluster: str | None = None) -> None:
        self.resource_storage = resource_storage
        self.cluster = cluster
        self.scope = ListScope((cluster,) if cluster else ())

    async def list(self, opts: ListOptions = ListOptions()) -> ListPage[dict[str, Any]]:
        """One page of the collection."""
        page = await self.resource_storage.alist(opts, scope=self.scope)
        return ListPage(
            [dict(entry.object) for entry in page.entries],
            page.resource_version,
            page.continue_token,
            page.remaining_item_count,
            self.resource_storage.info.kind,
        )

    async def watch(self, opts: ListOptions = ListOptions()) -> _EventStream:
        """A stream of watch events; ends after ``timeout_seconds`` when given."""
        watch = await self.resource_storage.awatch(opts, scope=self.scope)
        timeout = opts.timeout_seconds
        return _EventStream(watch, float(timeout) if timeout else None)

    def __str__(self) -> str:
        where = f" of {self.cluster}" if self.cluster else ""
        return f"storage {self.resource_storage.gvr}{where}"
