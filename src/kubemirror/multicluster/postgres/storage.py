"""Multi-cluster storage in PostgreSQL, shared by several server replicas (multicluster layer).

``PostgresStorage`` has the interface the API server and the cluster synchro
use on ``MemoryStorage`` (its async twins: ``alist``, ``aget_entry``,
``acreate``..., ``awatch``, ``cluster_store``, ``sync_lease``), with the data
in PostgreSQL (``schema``): every write is one transaction that takes the next
storage-wide index (``writes``), so resourceVersions ``<prefix>.<index>.<rv>``
mean the same on every replica. LIST runs in SQL: scope and selectors pushed
down (``sql_filter``), keyset pages in (cluster, key) order; a continue token
carries the index of the first page, and later pages show the objects as they
were at that index (the current rows not written since, plus the replaced
states the event log kept), so paging is consistent as with the memory
storage, until the log is trimmed past that index (410 Expired). WATCH reads a
replica-local window of recent events (``watch_cache.WatchCache``) that an
``EventLogTail`` fills from the event log, woken by LISTEN/NOTIFY: a watch can
resume on any replica from a version another replica handed out. The synchro
writes through ``cluster_store`` (write-behind, batched transactions) while it
holds the cluster's ``sync_lease`` (a session advisory lock), so one replica
syncs each member at a time and another takes over when it dies.

Use from one event loop (``start``/``stop`` or ``async with``); the sync
methods (``prepare_cluster``, ``has_cluster``, ``clusters``, ``index``,
``cluster_store`` writes) never block and must be called on that loop.
Objects handed out are shared: do not mutate them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
import psycopg_pool

from kubemirror import errors, keys
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster import storage_base, watch_cache
from kubemirror.multicluster.postgres import event_log, lease, schema, writes
from kubemirror.multicluster.postgres.resource_storage import (
    PostgresClusterStore,
    PostgresResourceStorage,
    QueuedWrite,
    read_counter,
)
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.storage import check_cluster_name, key_and_namespace
from kubemirror.types import GroupVersionResource

__all__ = ["PostgresStorage"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_WRITE_BATCH = 2000


class PostgresStorage(storage_base.StorageBase[PostgresResourceStorage]):
    """Every resource type of every cluster in one PostgreSQL database (see module docstring).

    ``dsn`` is a libpq connection string (``postgresql://user@host/db``). The
    ``prefix`` is created with the schema and shared by all replicas (the
    argument only seeds a new database). ``event_window`` events per type are
    kept in memory for watches (20,000: each holds the object's bytes and the
    state it replaced, so the window, not the data set, bounds a replica's
    memory); the database keeps the last ``retention``
    events (trimmed every ``trim_interval`` s) for consistent pages and for
    replicas catching up. ``max_watch_lag`` and ``bookmark_interval`` as on
    ``MemoryStorage``. ``pool_size`` connections serve reads and writes.
    """

    def __init__(
        self,
        dsn: str,
        *,
        prefix: str | None = None,
        event_window: int = 20_000,
        retention: int = 1_000_000,
        max_watch_lag: int | None = None,
        bookmark_interval: float = 60.0,
        pool_size: int = 8,
        poll_interval: float = 1.0,
        lease_retry_interval: float = 0.5,
        lease_check_interval: float = 1.0,
        trim_interval: float = 30.0,
        resource_version_wait: float = 2.0,
    ) -> None:
        if event_window < 1:
            raise errors.ConfigError("must be at least 1", field="event_window")
        if retention < 1:
            raise errors.ConfigError("must be at least 1", field="retention")
        self.dsn = dsn
        self.prefix = prefix or rvs.new_prefix()
        self.event_window = event_window
        self.retention = retention
        self.max_watch_lag = (
            max_watch_lag if max_watch_lag is not None else max(1, event_window * 3 // 4)
        )
        self.bookmark_interval = bookmark_interval
        self.trim_interval = trim_interval
        self.resource_version_wait = resource_version_wait
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._index = 0
        self._clusters: set[str] = set()
        self._resources: dict[GroupVersionResource, PostgresResourceStorage] = {}
        self._by_name: dict[str, PostgresResourceStorage] = {}
        self._pool = psycopg_pool.AsyncConnectionPool(
            dsn, min_size=1, max_size=pool_size, open=False, kwargs={"autocommit": True}
        )
        self._leases = lease.LeaseHolder(
            dsn, retry_interval=lease_retry_interval, check_interval=lease_check_interval
        )
        self._tail: event_log.EventLogTail | None = None
        self._queue: collections.deque[QueuedWrite] = collections.deque()
        self._queued = 0
        self._applied = 0
        self._progress: asyncio.Condition | None = None
        self._wake_writer: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create or migrate the schema, load the recent events, start following."""
        await self._pool.open(wait=True)
        async with self._pool.connection() as conn:
            self.prefix = await schema.migrate(conn, self.prefix)
            index, trimmed = await read_counter(conn)
            cur = await conn.execute("SELECT name FROM kubemirror_clusters")
            with self._lock:  # clusters prepared before start are queued for the writer
                self._clusters |= {str(r[0]) for r in await cur.fetchall()}
            for rs in list(self._resources.values()):
                await self._backfill(conn, rs, index, trimmed)
        self._index = index
        self._progress = asyncio.Condition()
        self._wake_writer = asyncio.Event()
        if self._queue:
            self._wake_writer.set()
        self._tail = event_log.EventLogTail(
            self.dsn, index, self._on_events, self._on_clusters, poll_interval=self.poll_interval
        )
        await self._leases.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._tail.run(self._stop), name="kubemirror event log"),
            loop.create_task(self._write_forever(), name="kubemirror writer"),
            loop.create_task(self._trim_forever(), name="kubemirror trim"),
        ]
        self._started = True

    async def stop(self) -> None:
        """Stop following, release the sync leases, close the connections (queued writes
        are applied first when the database answers)."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(TimeoutError, psycopg.Error, OSError):
            await asyncio.wait_for(self.flush(), 5)
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._leases.stop()
        await self._pool.close()
        with self._lock:
            for rs in self._resources.values():
                rs._watch_cache.forget_before(self._index)

    async def __aenter__(self) -> PostgresStorage:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _connection(self) -> contextlib.AbstractAsyncContextManager[writes.Connection]:
        return self._pool.connection()

    # -- the event log --------------------------------------------------------------------

    async def _backfill(
        self, conn: writes.Connection, rs: PostgresResourceStorage, index: int, trimmed: int
    ) -> None:
        """Fill ``rs``'s window with its last events up to ``index`` and its counts."""
        cur = await conn.execute(
            "SELECT seq, resource, cluster, key, namespace, type, original_rv, object, previous "
            "FROM kubemirror_events WHERE resource = %s AND seq <= %s ORDER BY seq DESC LIMIT %s",
            (rs.name, index, self.event_window),
        )
        rows = list(reversed(await cur.fetchall()))
        events = [self._storage_event(rs, _log_event(r)) for r in rows]
        floor = trimmed
        if len(rows) == self.event_window:
            floor = max(floor, int(rows[0][0]) - 1)
        cur = await conn.execute(
            "SELECT cluster, count(*) FROM kubemirror_objects WHERE resource = %s GROUP BY cluster",
            (rs.name,),
        )
        counts = {str(c): int(n) for c, n in await cur.fetchall()}
        with self._lock:
            rs._watch_cache.load(events, floor)
            rs._counts = collections.Counter(counts)

    @staticmethod
    def _storage_event(
        rs: PostgresResourceStorage, event: event_log.LogEvent
    ) -> watch_cache.StorageEvent:
        entry = watch_cache.StoredObject(
            None,
            cluster=event.cluster,
            key=event.key,
            namespace=event.namespace,
            index=event.seq,
            original_rv=event.original_rv,
            encoded=event.object,
        )
        previous = None
        if event.previous is not None:
            prev_obj = orjson.loads(event.previous)
            prev_rv = str((prev_obj.get("metadata") or {}).get("resourceVersion") or "")
            _, prev_index, prev_orig = rvs.parse_memory_resource_version(prev_rv)
            previous = watch_cache.StoredObject(
                prev_obj,
                cluster=event.cluster,
                key=event.key,
                namespace=event.namespace,
                index=prev_index,
                original_rv=prev_orig,
                encoded=event.previous,
            )
        type_: watch_cache.EventType = (
            "ADDED"
            if event.type == "ADDED"
            else "DELETED"
            if event.type == "DELETED"
            else "MODIFIED"
        )
        return watch_cache.StorageEvent(type_, entry, event.seq, previous)

    def _on_events(self, events: list[event_log.LogEvent], gap_to: int) -> None:
        with self._lock:
            if gap_to:
                log.warning("event log trimmed past this replica (to %d): watches restart", gap_to)
                for known in self._resources.values():
                    known._watch_cache.forget_before(gap_to)
            for event in events:
                if event.type != "DELETED":  # it was written: its cluster was prepared
                    self._clusters.add(event.cluster)
                rs = self._by_name.get(event.resource)
                if rs is not None:
                    if event.type == "ADDED":
                        rs._counts[event.cluster] += 1
                    elif event.type == "DELETED":
                        rs._counts[event.cluster] -= 1
                    rs._watch_cache.append(self._storage_event(rs, event))
                self._index = event.seq

    def _on_clusters(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_clusters())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_clusters(self) -> None:
        async with self._connection() as conn:
            cur = await conn.execute("SELECT name FROM kubemirror_clusters")
            names = {str(r[0]) for r in await cur.fetchall()}
        with self._lock:
            self._clusters = names | {op.cluster for op in self._queue if op.kind == "prepare"}

    async def wait_for_index(
        self, index: int, timeout: float | None = None  # noqa: ASYNC109
    ) -> bool:
        """Wait until this replica has read the event log up to ``index``."""
        if self._tail is None:
            return self._index >= index
        return await self._tail.wait_for(index, timeout)

    async def _trim_forever(self) -> None:
        while True:
            await asyncio.sleep(self.trim_interval)
            try:
                await self.trim()
            except (psycopg.Error, OSError) as exc:
                log.warning("event log trim failed: %s", exc)

    async def trim(self) -> int:
        """Delete the events older than the last ``retention``; returns how many."""
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE kubemirror_counter SET trimmed = greatest(trimmed, index - %s) "
                "WHERE id = 1 RETURNING trimmed",
                (self.retention,),
            )
            row = await cur.fetchone()
            floor = int(row[0]) if row else 0
            cur = await conn.execute("DELETE FROM kubemirror_events WHERE seq <= %s", (floor,))
            return cur.rowcount

    # -- writes ---------------------------------------------------------------------------

    async def _run_tx(self, work: Callable[[writes.WriteTransaction], Awaitable[T]]) -> T:
        async with self._connection() as conn, conn.transaction():
            tx = writes.WriteTransaction(conn, self.prefix, self._clusters)
            await tx.begin()
            result = await work(tx)
            await tx.finish()
        if tx.cluster_changes:
            with self._lock:
                self._clusters = set(tx.clusters)
        await self.wait_for_index(tx.index, timeout=self.resource_version_wait)
        return result

    async def _transact(self, work: Callable[[writes.WriteTransaction], Awaitable[T]]) -> T:
        """Run an API write after the queued synchro writes (read-your-writes on this
        replica: returns once the event log has been read up to it)."""
        if self._queue:
            await self.flush()
        return await self._run_tx(work)

    def _enqueue(self, op: QueuedWrite) -> None:
        self._queue.append(op)
        self._queued += 1
        if self._wake_writer is not None:
            self._wake_writer.set()

    async def flush(self) -> None:
        """Wait until every write queued so far is stored and read back by this replica."""
        target = self._queued
        if self._progress is None:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._applied >= target)

    async def _write_forever(self) -> None:
        assert self._wake_writer is not None
        assert self._progress is not None
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._queue:
                batch = [self._queue[i] for i in range(min(len(self._queue), _WRITE_BATCH))]
                try:
                    await self._run_tx(functools.partial(self._apply, ops=batch))
                except (psycopg.Error, OSError) as exc:
                    log.warning("storage writes failed (%s); retrying in 1 s", exc)
                    await asyncio.sleep(1.0)
                    continue
                for _ in batch:
                    self._queue.popleft()
                async with self._progress:
                    self._applied += len(batch)
                    self._progress.notify_all()

    async def _apply(self, tx: writes.WriteTransaction, ops: list[QueuedWrite]) -> None:
        # Fencing: a cluster this replica synced under a lease is written only while the
        # lease is still held, checked here, behind the counter row lock: once another
        # replica took the cluster over, our late writes cannot land after its writes.
        leased = {op.cluster for op in ops if op.info is not None} & self._leases.ever_granted
        if leased:
            held = await self._leases.held_now(tx.connection, leased)
            fenced = [op for op in ops if op.cluster in leased and op.cluster not in held]
            if fenced:
                log.warning(
                    "dropped %d queued writes of %s: the sync lease moved to another replica",
                    len(fenced),
                    ", ".join(sorted({op.cluster for op in fenced})),
                )
                ops = [op for op in ops if op.cluster not in leased or op.cluster in held]
        # one query reads the current rows of every key the batch's upserts and deletes touch
        touched: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for op in ops:
            if op.info is not None and op.kind in ("upsert", "delete"):
                with contextlib.suppress(errors.KubemirrorError, TypeError, KeyError):
                    touched[(writes.resource_name(op.info), op.cluster)].append(
                        keys.meta_namespace_key(op.payload)
                        if op.kind == "delete"
                        else key_and_namespace(op.info, op.payload)[0]
                    )
        for (resource, cluster), batch_keys in touched.items():
            await tx.load(resource, cluster, batch_keys)
        for op in ops:
            try:
                if op.kind == "prepare":
                    await tx.prepare_cluster(op.cluster)
                    continue
                info = op.info
                assert info is not None
                if op.kind == "upsert":
                    await tx.upsert(info, op.cluster, op.payload)
                elif op.kind == "delete":
                    await tx.delete_object(info, op.cluster, op.payload)
                elif op.kind == "replace":
                    await tx.replace(info, op.cluster, op.payload)
            except (errors.ApiError, errors.KeyFuncError) as exc:  # a bad object: skip it
                log.warning("dropped a write to %s of cluster %s: %s", info, op.cluster, exc)

    # -- clusters -------------------------------------------------------------------------

    def prepare_cluster(self, cluster: str) -> None:
        """Allow writes for ``cluster`` (idempotent; stored by the writer, in order)."""
        check_cluster_name(cluster)
        with self._lock:
            if cluster in self._clusters:
                return
            self._clusters.add(cluster)
        self._enqueue(QueuedWrite("prepare", None, cluster))

    def clusters(self) -> list[str]:
        """Prepared clusters, sorted."""
        with self._lock:
            return sorted(self._clusters)

    def has_cluster(self, cluster: str) -> bool:
        """Whether ``cluster`` was prepared and not cleaned."""
        return cluster in self._clusters

    async def aclean_cluster(self, cluster: str) -> None:
        """Delete every object of ``cluster`` (DELETED events) and forget the cluster."""
        await self.flush()

        async def clean(tx: writes.WriteTransaction) -> None:
            for rs in self.resource_storages():
                await tx.clean(rs.info, cluster)
            await tx.forget_cluster(cluster)

        await self._run_tx(clean)

    async def aclean_cluster_resource(self, cluster: str, gvr: GroupVersionResource) -> None:
        """Delete every object of one resource type of ``cluster``."""
        rs = self._resources.get(gvr)
        if rs is None or cluster not in self._clusters:
            return
        info = rs.info
        await self.flush()
        await self._run_tx(lambda tx: tx.clean(info, cluster))

    def sync_lease(self, cluster: str) -> lease.PostgresSyncLease:
        """The advisory-lock lease that lets this replica sync ``cluster``."""
        return self._leases.lease(cluster)

    # -- resource types -------------------------------------------------------------------

    def _add_resource_storage(self, info: ResourceInfo) -> PostgresResourceStorage:
        """A type registered after ``start`` knows no events before this replica's
        position."""
        rs = PostgresResourceStorage(self, info)
        self._by_name[rs.name] = rs
        if self._started:
            rs._watch_cache.load([], self._index)
        return rs

    def cluster_store(self, cluster: str, gvr: GroupVersionResource) -> PostgresClusterStore:
        """The write-behind store of one cluster's objects of ``gvr``."""
        return self.resource_storage(gvr).cluster_store(cluster)


def _log_event(row: Sequence[Any]) -> event_log.LogEvent:
    return event_log.LogEvent(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        bytes(row[7]),
        bytes(row[8]) if row[8] is not None else None,
    )
