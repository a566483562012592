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
import base64
import binascii
import collections
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import psycopg
import psycopg_pool

from kubemirror import errors, keys
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster import status, watch_cache
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.multicluster.postgres import event_log, lease, schema, sql_filter, writes
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.storage import (
    ListOptions,
    ListResult,
    bad_continue,
    foreign_continue,
    object_key,
)
from kubemirror.types import GroupVersionResource, Obj

__all__ = ["PostgresClusterStore", "PostgresResourceStorage", "PostgresStorage"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_WRITE_BATCH = 2000
_SCAN_BATCH = 1000
_COLUMNS = "cluster, key, namespace, seq, original_rv, object"
_EVERYTHING = ListOptions()
_MAX_REMAINING_COUNT = 10_000
"""``remainingItemCount`` is counted up to this (optional in Kubernetes; omitted above)."""


@dataclass(frozen=True, slots=True)
class _Op:
    """A queued synchro write: ``kind`` is upsert, delete, replace, prepare or clean."""

    kind: str
    info: ResourceInfo | None
    cluster: str
    payload: Any = None


class PostgresResourceStorage:
    """The objects of one resource type in PostgreSQL, with LIST and WATCH.

    Reads and writes are coroutines that run SQL on the storage's pool; watches
    read the replica-local window. ``count`` is kept from the event log (as
    recent as this replica's position). Use from the storage's event loop.
    """

    def __init__(self, storage: PostgresStorage, info: ResourceInfo) -> None:
        self.info = info
        self.name = writes.resource_name(info)
        self._storage = storage
        self._counts: collections.Counter[str] = collections.Counter()
        self._watch_cache = watch_cache.WatchCache(
            storage,
            storage._lock,
            capacity=storage.event_window,
            kind=info.kind,
            api_version=info.api_version,
        )

    @property
    def gvr(self) -> GroupVersionResource:
        """The resource type stored here."""
        return self.info.gvr

    @property
    def watcher_count(self) -> int:
        """Number of open watches on this replica."""
        return self._watch_cache.watcher_count

    def __repr__(self) -> str:
        return f"PostgresResourceStorage({self.info.gvr})"

    def count(self, cluster: str | None = None) -> int:
        """Number of stored objects (of one cluster, or all), as of this replica's position."""
        if cluster is not None:
            return self._counts[cluster]
        return sum(self._counts.values())

    def clusters(self) -> list[str]:
        """Clusters that hold objects of this type, sorted."""
        return sorted(c for c, n in self._counts.items() if n > 0)

    def _key(self, namespace: str, name: str) -> str:
        return f"{namespace}/{name}" if namespace and self.info.namespaced else name

    # -- reads ----------------------------------------------------------------------------

    async def aget_entry(self, cluster: str, key: str) -> watch_cache.StoredObject | None:
        """The stored entry for ``key`` in ``cluster``, or ``None``."""
        async with self._storage._connection() as conn:
            cur = await conn.execute(
                "SELECT namespace, seq, original_rv, object FROM kubemirror_objects "
                "WHERE resource = %s AND cluster = %s AND key = %s",
                (self.name, cluster, key),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return writes.CurrentRow(row[0], row[1], row[2], bytes(row[3])).entry(cluster, key)

    async def aget(self, cluster: str, namespace: str, name: str) -> Obj | None:
        """The stored object, or ``None`` (shared; do not mutate)."""
        entry = await self.aget_entry(cluster, self._key(namespace, name))
        return None if entry is None else entry.object

    async def alist(self, opts: ListOptions = _EVERYTHING) -> ListResult:
        """One page of the objects selected by ``opts``; see the module docstring.

        Same contract as ``ResourceStorage.list``: ``Exact`` only when nothing of
        this type changed since the version, continue tokens bound to their
        request, 410 Expired for a token whose index left the event log or that
        another storage issued, ``BadRequestError`` for bad parameters.
        """
        opts.validate(watch=False)
        flt = opts.object_filter(self.info)
        if opts.limit < 0:
            raise status.bad_request(f"invalid limit {opts.limit}: must not be negative")
        scope = opts.scope_key()
        storage = self._storage
        async with storage._connection() as conn:
            if opts.continue_token:
                if opts.resource_version not in ("", "0"):
                    raise status.bad_request(
                        "specifying resource version is not allowed when using continue"
                    )
                snap, after = self._decode_continue(opts.continue_token, scope)
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    index, trimmed = await _counter(conn)
                    if trimmed > snap:
                        raise status.expired(
                            "The provided continue parameter is too old to display a consistent "
                            "list result. You can start a new list without the continue "
                            "parameter."
                        )
                    page, more = await self._page(conn, flt, snap, index, after, opts.limit)
                    remaining = await self._remaining(conn, flt, snap, index, page, more)
            else:
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    snap, trimmed = await _counter(conn)
                    await self._check_list_rv(conn, opts, snap, trimmed)
                    page, more = await self._page(conn, flt, snap, snap, None, opts.limit)
                    remaining = await self._remaining(conn, flt, snap, snap, page, more)
        token = ""
        if more and page:
            last = page[-1]
            token = self._encode_continue(snap, last.cluster, last.key, scope)
        return ListResult(
            page,
            rvs.to_list_resource_version(storage.prefix, snap),
            token,
            remaining if token and flt.selects_everything_in_scope else None,
        )

    async def _check_list_rv(
        self, conn: writes.Connection, opts: ListOptions, index: int, trimmed: int
    ) -> None:
        rv, match = opts.resource_version, opts.resource_version_match
        if rv in ("", "0"):
            return
        wanted = rvs.parse_list_resource_version(rv, self._storage.prefix)
        if wanted > index:
            raise status.too_large_resource_version(
                rv, rvs.to_list_resource_version(self._storage.prefix, index)
            )
        if match == "Exact":
            cur = await conn.execute(
                "SELECT 1 FROM kubemirror_events WHERE resource = %s AND seq > %s LIMIT 1",
                (self.name, wanted),
            )
            if await cur.fetchone() is not None or trimmed > wanted:
                raise status.expired(
                    f"too old resource version: {rv}: only the latest state is kept"
                )

    def _page_sql(
        self, flt: ObjectFilter, snap: int, index: int, after: tuple[str, str] | None, n: int
    ) -> tuple[str, list[object]]:
        """SQL for up to ``n`` rows after ``after`` of the state at ``snap`` (the current
        state is at ``index``): current rows unchanged since ``snap``, plus the state
        the first later event replaced, for keys written since."""
        cond = sql_filter.where_clause(flt, namespaced=self.info.namespaced)
        params: list[object] = [self.name]
        keyset = ""
        if after is not None:
            keyset = " AND (o.cluster, o.key) > (%s, %s)"
        sql = (
            f"SELECT {_COLUMNS}, NULL::text AS type FROM kubemirror_objects o "
            f"WHERE o.resource = %s AND {cond.sql}{keyset}"
        )
        params += cond.params
        if after is not None:
            params += list(after)
        if snap < index:
            sql += " AND o.seq <= %s"
            params.append(snap)
            scope = sql_filter.where_clause(
                ObjectFilter(flt.clusters, flt.namespace),
                namespaced=self.info.namespaced,
                alias="e",
            )
            changed = (
                "SELECT DISTINCT ON (e.cluster, e.key) e.cluster, e.key, e.namespace, 0 AS seq, "
                "e.original_rv, e.previous AS object, e.type FROM kubemirror_events e "
                f"WHERE e.resource = %s AND e.seq > %s AND {scope.sql}"
                + (" AND (e.cluster, e.key) > (%s, %s)" if after is not None else "")
                + " ORDER BY e.cluster, e.key, e.seq"
            )
            params += [self.name, snap, *scope.params]
            if after is not None:
                params += list(after)
            sql = (
                f"SELECT * FROM ({sql} UNION ALL SELECT * FROM ({changed}) c "
                "WHERE c.type <> 'ADDED') u"
            )
        sql += " ORDER BY cluster, key LIMIT %s"
        params.append(n)
        return sql, params

    async def _page(
        self,
        conn: writes.Connection,
        flt: ObjectFilter,
        snap: int,
        index: int,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[watch_cache.StoredObject], bool]:
        """The matching entries of one page and whether rows remain after it."""
        page: list[watch_cache.StoredObject] = []
        want = limit if limit else None
        exact = sql_filter.where_clause(flt, namespaced=self.info.namespaced).exact
        while True:
            n = _SCAN_BATCH if want is None else max(want - len(page) + 1, 2)
            sql, params = self._page_sql(flt, snap, index, after, n)
            cur = await conn.execute(sql.encode(), params, binary=True)  # bytea as is, no hex
            rows = await cur.fetchall()
            for i, (cluster, key, namespace, seq, orig, raw, type_) in enumerate(rows):
                replaced = type_ is not None
                entry = _entry(cluster, key, namespace, seq, orig, bytes(raw), replaced)
                after = (cluster, key)
                if (replaced or not exact) and not flt.matches_object(entry.object):
                    continue
                page.append(entry)
                if want is not None and len(page) == want:
                    return page, i + 1 < len(rows) or len(rows) == n
            if len(rows) < n:
                return page, False

    async def _remaining(
        self,
        conn: writes.Connection,
        flt: ObjectFilter,
        snap: int,
        index: int,
        page: list[watch_cache.StoredObject],
        more: bool,
    ) -> int | None:
        if not (more and page and flt.selects_everything_in_scope):
            return None
        bound = _MAX_REMAINING_COUNT + 1
        sql, params = self._page_sql(flt, snap, index, (page[-1].cluster, page[-1].key), bound)
        cur = await conn.execute(f"SELECT count(*) FROM ({sql}) r".encode(), params)
        row = await cur.fetchone()
        count = int(row[0]) if row else 0
        return count if count <= _MAX_REMAINING_COUNT else None

    def _encode_continue(self, snap: int, cluster: str, key: str, scope: str) -> str:
        raw = orjson.dumps(
            {
                "p": self._storage.prefix,
                "r": self.info.gvr.api_version + "/" + self.info.gvr.resource,
                "q": scope,
                "i": snap,
                "c": cluster,
                "k": key,
            }
        )
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_continue(self, token: str, scope: str) -> tuple[int, tuple[str, str]]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise bad_continue("illegal base64 data") from None
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise bad_continue("not a JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_continue("not a JSON object")
        snap, cluster, key = decoded.get("i"), decoded.get("c"), decoded.get("k")
        if (
            not isinstance(snap, int)
            or isinstance(snap, bool)
            or snap < 0
            or not isinstance(cluster, str)
            or not isinstance(key, str)
        ):
            raise bad_continue("incorrect encoded start position")
        if decoded.get("p") != self._storage.prefix:
            raise status.expired(
                "The provided continue parameter was issued by another storage instance; "
                "start a new list without the continue parameter."
            )
        resource = self.info.gvr.api_version + "/" + self.info.gvr.resource
        if decoded.get("r") != resource or decoded.get("q") != scope:
            raise foreign_continue()
        return snap, (cluster, key)

    # -- watch ----------------------------------------------------------------------------

    async def awatch(self, opts: ListOptions = _EVERYTHING) -> watch_cache.Watch:
        """Start a watch; the contract of ``ResourceStorage.watch``. The initial state
        (``""``/``"0"``, ``sendInitialEvents``) is read from PostgreSQL; the events after
        it from this replica's window (410 once they left it)."""
        opts.validate(watch=True)
        flt = opts.object_filter(self.info)
        storage = self._storage
        start = rvs.parse_watch_resource_version(opts.resource_version, storage.prefix)
        replay = bool(opts.send_initial_events) or (
            opts.send_initial_events is None
            and start.index is None
            and start.cluster_versions is None
        )
        initial: list[watch_cache.StoredObject] | None = None
        snap: int | None = None
        if replay:
            async with storage._connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                snap, _ = await _counter(conn)
                scope = ObjectFilter(flt.clusters, flt.namespace)
                initial, _ = await self._page(conn, scope, snap, snap, None, 0)
            await storage.wait_for_index(snap)
        elif start.index is not None and start.index > storage.index:
            await storage.wait_for_index(start.index, timeout=storage.resource_version_wait)
        with storage._lock:
            return self._watch_cache.watch(
                flt,
                start,
                resource_version=opts.resource_version,
                initial=initial,
                initial_index=snap,
                initial_end_bookmark=bool(opts.send_initial_events) and opts.allow_watch_bookmarks,
                allow_bookmarks=opts.allow_watch_bookmarks,
            )

    # -- writes ---------------------------------------------------------------------------

    async def acreate(self, cluster: str, obj: Obj) -> Obj:
        """Store a new object; the contract of ``ResourceStorage.create``."""
        entry = await self._storage._transact(lambda tx: tx.create(self.info, cluster, obj))
        return entry.object

    async def aupdate(
        self,
        cluster: str,
        obj: Obj,
        *,
        expected_resource_version: str | None = None,
        original_rv: str | None = None,
    ) -> Obj:
        """Replace an existing object; the contract of ``ResourceStorage.update``."""
        entry = await self._storage._transact(
            lambda tx: tx.update(
                self.info,
                cluster,
                obj,
                expected_resource_version=expected_resource_version,
                original_rv=original_rv,
            )
        )
        return entry.object

    async def aupsert(self, cluster: str, obj: Obj) -> Obj:
        """Create or update ``obj``."""
        entry = await self._storage._transact(lambda tx: tx.upsert(self.info, cluster, obj))
        return entry.object

    async def adelete(self, cluster: str, obj: Obj) -> Obj:
        """Remove the object named by ``obj``; the contract of ``ResourceStorage.delete``."""
        key = self._key(
            str((obj.get("metadata") or {}).get("namespace") or ""),
            str((obj.get("metadata") or {}).get("name") or ""),
        )
        return await self.adelete_by_key(cluster, key, final_state=obj)

    async def adelete_by_key(
        self,
        cluster: str,
        key: str,
        *,
        final_state: Obj | None = None,
        expected_resource_version: str | None = None,
    ) -> Obj:
        """Remove ``key`` from ``cluster``; returns its final version (``NotFoundError``)."""
        entry = await self._storage._transact(
            lambda tx: tx.delete_by_key(
                self.info,
                cluster,
                key,
                final_state=final_state,
                expected_resource_version=expected_resource_version,
            )
        )
        assert entry is not None
        return entry.object

    def cluster_store(self, cluster: str) -> PostgresClusterStore:
        """The write-behind ``ReflectorStore`` of ``cluster``'s objects of this type."""
        return PostgresClusterStore(self, cluster)


def _entry(
    cluster: str, key: str, namespace: str, seq: int, orig: str, raw: bytes, replaced: bool
) -> watch_cache.StoredObject:
    """A row as a ``StoredObject`` whose JSON is decoded only if someone reads ``object``."""
    obj = None
    if replaced:  # a state read back from the event log: its versions are in its stamp
        obj = orjson.loads(raw)
        _, seq, orig = rvs.parse_memory_resource_version(obj["metadata"]["resourceVersion"])
    return watch_cache.StoredObject(
        obj, cluster=cluster, key=key, namespace=namespace, index=seq, original_rv=orig,
        encoded=raw,
    )


async def _counter(conn: writes.Connection) -> tuple[int, int]:
    cur = await conn.execute("SELECT index, trimmed FROM kubemirror_counter WHERE id = 1")
    row = await cur.fetchone()
    assert row is not None, "kubemirror_counter lost its row"
    return int(row[0]), int(row[1])


class PostgresClusterStore:
    """One cluster's objects of one type as a write-behind ``ReflectorStore``.

    ``add``/``update``/``delete``/``replace`` queue the write and return at once
    (never blocking the loop); the storage applies queued writes in order, in
    batched transactions, retrying while the database is unreachable.
    ``replace`` is a diff (only changed originals, DELETED for vanished keys).
    ``await storage.flush()`` waits until everything queued is stored. Reads go
    through the resource storage's coroutines. Call from the storage's loop.
    """

    def __init__(self, resource_storage: PostgresResourceStorage, cluster: str) -> None:
        self.resource_storage = resource_storage
        self.cluster = cluster

    def _queue(self, kind: str, payload: Any) -> None:
        rs = self.resource_storage
        rs._storage._enqueue(_Op(kind, rs.info, self.cluster, payload))

    def add(self, obj: Obj) -> None:
        """Queue a create-or-update of ``obj``."""
        self._queue("upsert", obj)

    def update(self, obj: Obj) -> None:
        """Queue a create-or-update of ``obj``."""
        self._queue("upsert", obj)

    def delete(self, obj: Any) -> None:
        """Queue the deletion of ``obj`` (object, tombstone or key; absent is fine)."""
        keys.meta_namespace_key(obj)  # a bad object fails here, in the caller
        self._queue("delete", obj)

    def replace(self, objs: Sequence[Obj], resource_version: str = "") -> None:
        """Queue making the cluster's content exactly ``objs``."""
        self._queue("replace", list(objs))

    def resync(self) -> None:
        """Nothing to do: the database is the source of truth."""


class PostgresStorage:
    """Every resource type of every cluster in one PostgreSQL database (see module docstring).

    ``dsn`` is a libpq connection string (``postgresql://user@host/db``). The
    ``prefix`` is created with the schema and shared by all replicas (the
    argument only seeds a new database). ``event_window`` events per type are
    kept in memory for watches; the database keeps the last ``retention``
    events (trimmed every ``trim_interval`` s) for consistent pages and for
    replicas catching up. ``max_watch_lag`` and ``bookmark_interval`` as on
    ``MemoryStorage``. ``pool_size`` connections serve reads and writes.
    """

    def __init__(
        self,
        dsn: str,
        *,
        prefix: str | None = None,
        event_window: int = 100_000,
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
        self._queue: collections.deque[_Op] = collections.deque()
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
            index, trimmed = await _counter(conn)
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
                self._clusters = set(tx._clusters)
        await self.wait_for_index(tx.index, timeout=self.resource_version_wait)
        return result

    async def _transact(self, work: Callable[[writes.WriteTransaction], Awaitable[T]]) -> T:
        """Run an API write after the queued synchro writes (read-your-writes on this
        replica: returns once the event log has been read up to it)."""
        if self._queue:
            await self.flush()
        return await self._run_tx(work)

    def _enqueue(self, op: _Op) -> None:
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

    @staticmethod
    async def _apply(tx: writes.WriteTransaction, ops: list[_Op]) -> None:
        # one query reads the current rows of every key the batch's upserts and deletes touch
        touched: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for op in ops:
            if op.info is not None and op.kind in ("upsert", "delete"):
                with contextlib.suppress(errors.KubemirrorError, TypeError, KeyError):
                    touched[(writes.resource_name(op.info), op.cluster)].append(
                        keys.meta_namespace_key(op.payload)
                        if op.kind == "delete"
                        else object_key(op.info, op.payload)[0]
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
            except (errors.ApiError, errors.KeyFuncError) as exc:
                log.warning("dropped a write to %s of cluster %s: %s", info, op.cluster, exc)

    # -- clusters -------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """The newest index this replica has read from the event log."""
        return self._index

    @property
    def resource_version(self) -> str:
        """The list resourceVersion of the whole storage as this replica knows it."""
        return rvs.to_list_resource_version(self.prefix, self._index)

    def prepare_cluster(self, cluster: str) -> None:
        """Allow writes for ``cluster`` (idempotent; stored by the writer, in order)."""
        if not cluster or "/" in cluster:
            raise errors.ConfigError(
                "cluster names must be non-empty without '/'", field="cluster", expression=cluster
            )
        with self._lock:
            if cluster in self._clusters:
                return
            self._clusters.add(cluster)
        self._enqueue(_Op("prepare", None, cluster))

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

    def new_resource_storage(
        self,
        gvr: GroupVersionResource | ResourceInfo,
        *,
        namespaced: bool = True,
        kind: str = "",
        list_kind: str = "",
        singular: str = "",
        short_names: tuple[str, ...] = (),
        categories: tuple[str, ...] = (),
    ) -> PostgresResourceStorage:
        """Register a resource type (or return the one already registered). A type
        registered after ``start`` knows no events before this replica's position."""
        info = (
            gvr
            if isinstance(gvr, ResourceInfo)
            else ResourceInfo(
                gvr,
                kind=kind,
                namespaced=namespaced,
                list_kind=list_kind,
                singular=singular,
                short_names=short_names,
                categories=categories,
            )
        )
        with self._lock:
            found = self._resources.get(info.gvr)
            if found is not None:
                return found
            rs = self._resources[info.gvr] = PostgresResourceStorage(self, info)
            self._by_name[rs.name] = rs
            if self._started:
                rs._watch_cache.load([], self._index)
            return rs

    def resource_storage(self, gvr: GroupVersionResource) -> PostgresResourceStorage:
        """The storage of a registered type; raises ``NotFoundError`` otherwise."""
        rs = self._resources.get(gvr)
        if rs is None:
            raise status.not_found(gvr.resource, "", gvr.group)
        return rs

    def resource_storages(self) -> list[PostgresResourceStorage]:
        """Every registered type, in registration order."""
        with self._lock:
            return list(self._resources.values())

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
