"""One resource type in PostgreSQL: SQL LIST, WATCH from the local window (multicluster layer).

``PostgresResourceStorage`` is the per-type half of ``PostgresStorage`` (see
``postgres.storage`` for the design): reads run SQL on the storage's pool
(``sql_filter`` pushes the selectors down; continued pages are read at the index
of the first page), watches read the replica-local ``WatchCache`` the storage's
event-log tail fills, writes are ``writes.WriteTransaction``s. ``PostgresClusterStore``
is the write-behind store a reflector writes one cluster's objects into;
``QueuedWrite`` is one of its queued writes. Use from the storage's event loop.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import orjson

from kubemirror import keys
from kubemirror.listing import ListOptions
from kubemirror.multicluster import paging, status, storage_base, watch_cache
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.postgres import sql_filter, writes
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import Obj

if TYPE_CHECKING:
    from kubemirror.multicluster.postgres.storage import PostgresStorage

__all__ = ["PostgresClusterStore", "PostgresResourceStorage", "QueuedWrite", "read_counter"]

P = ParamSpec("P")

_SCAN_BATCH = 1000
_COLUMNS = "cluster, key, namespace, seq, original_rv, object"
_EVERYTHING = ListOptions()
_EVERYWHERE = ListScope()
_MAX_REMAINING_COUNT = 10_000
"""``remainingItemCount`` is counted up to this (optional in Kubernetes; omitted above)."""


@dataclass(frozen=True, slots=True)
class QueuedWrite:
    """A queued synchro write: ``kind`` is upsert, delete, replace, prepare or clean."""

    kind: str
    info: ResourceInfo | None
    cluster: str
    payload: Any = None


def _in_transaction(
    write: Callable[
        Concatenate[writes.WriteTransaction, ResourceInfo, P],
        Awaitable[watch_cache.StoredObject],
    ],
) -> Callable[Concatenate[PostgresResourceStorage, P], Coroutine[Any, Any, Obj]]:
    """The API write (the contract of ``ResourceStorage``'s method of the same name)
    that runs the transaction step ``write`` for this type, after the queued
    synchro writes, and returns the stored object."""

    async def api_write(self: PostgresResourceStorage, /, *args: P.args, **kwargs: P.kwargs) -> Obj:
        entry = await self._storage._transact(lambda tx: write(tx, self.info, *args, **kwargs))
        return entry.object

    api_write.__name__ = api_write.__qualname__ = "a" + write.__name__
    api_write.__doc__ = f"``ResourceStorage.{write.__name__}``, in one transaction."
    return api_write


class PostgresResourceStorage(storage_base.ResourceStorageBase["PostgresStorage"]):
    """The objects of one resource type in PostgreSQL, with LIST and WATCH.

    Reads and writes are coroutines that run SQL on the storage's pool; watches
    read the replica-local window. ``count`` is kept from the event log (as
    recent as this replica's position). Use from the storage's event loop.
    """

    def __init__(self, storage: PostgresStorage, info: ResourceInfo) -> None:
        super().__init__(storage, info, lock=storage._lock, event_window=storage.event_window)
        self.name = writes.resource_name(info)
        self._counts: collections.Counter[str] = collections.Counter()

    def count(self, cluster: str | None = None) -> int:
        """Number of stored objects (of one cluster, or all), as of this replica's position."""
        if cluster is not None:
            return self._counts[cluster]
        return sum(self._counts.values())

    def clusters(self) -> list[str]:
        """Clusters that hold objects of this type, sorted."""
        return sorted(c for c, n in self._counts.items() if n > 0)

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

    async def alist(
        self, opts: ListOptions = _EVERYTHING, *, scope: ListScope = _EVERYWHERE
    ) -> paging.EntryPage:
        """One page of the objects of ``scope`` selected by ``opts``; see the module docstring.

        Same contract as ``ResourceStorage.list``: ``Exact`` only when nothing of
        this type changed since the version, continue tokens bound to their
        request, 410 Expired for a token whose index left the event log (carrying a
        fresh token that reads the rest at the current version) or that another
        storage issued, ``BadRequestError`` for bad parameters.
        """
        flt, bound_to = self._list_request(opts, scope)
        storage = self._storage
        async with storage._connection() as conn:
            if opts.continue_token:
                snap, after = self._decode_continue(
                    opts.continue_token, bound_to, paging.key_position
                )
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    index, trimmed = await read_counter(conn)
                    if snap > index:
                        raise paging.bad_continue(paging.FUTURE_POSITION)
                    if trimmed > snap:
                        fresh = paging.key_token_position(index, after)
                        raise paging.continue_too_old(self._encode_continue(bound_to, fresh))
                    page, more = await self._page(conn, flt, snap, index, after, opts.limit)
                    remaining = await self._remaining(conn, flt, snap, index, page, more)
            else:
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    snap, trimmed = await read_counter(conn)
                    await self._check_list_rv(conn, opts, snap, trimmed)
                    page, more = await self._page(conn, flt, snap, snap, None, opts.limit)
                    remaining = await self._remaining(conn, flt, snap, snap, page, more)
        token = ""
        if more and page:
            last = page[-1]
            token = self._encode_continue(
                bound_to, paging.key_token_position(snap, (last.cluster, last.key))
            )
        return paging.EntryPage(
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

    # -- watch ----------------------------------------------------------------------------

    async def awatch(
        self, opts: ListOptions = _EVERYTHING, *, scope: ListScope = _EVERYWHERE
    ) -> watch_cache.Watch:
        """Start a watch; the contract of ``ResourceStorage.watch``. The initial state
        (``""``/``"0"``, ``sendInitialEvents``) is read from PostgreSQL; the events after
        it from this replica's window (410 once they left it)."""
        flt, start, replay = self._watch_request(opts, scope)
        storage = self._storage
        initial: list[watch_cache.StoredObject] | None = None
        snap: int | None = None
        if replay:
            async with storage._connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                snap, _ = await read_counter(conn)
                in_scope = ObjectFilter(flt.clusters, flt.namespace)
                initial, _ = await self._page(conn, in_scope, snap, snap, None, 0)
            await storage.wait_for_index(snap)
        elif start.index is not None and start.index > storage.index:
            await storage.wait_for_index(start.index, timeout=storage.resource_version_wait)
        with storage._lock:
            return self._open_watch(flt, start, opts, initial, snap)

    # -- writes ---------------------------------------------------------------------------

    acreate = _in_transaction(writes.WriteTransaction.create)
    aupdate = _in_transaction(writes.WriteTransaction.update)
    aupsert = _in_transaction(writes.WriteTransaction.upsert)
    adelete_by_key = _in_transaction(writes.WriteTransaction.delete_by_key)

    async def adelete(self, cluster: str, obj: Obj) -> Obj:
        """Remove the object named by ``obj``; the contract of ``ResourceStorage.delete``."""
        key = self._key(
            str((obj.get("metadata") or {}).get("namespace") or ""),
            str((obj.get("metadata") or {}).get("name") or ""),
        )
        return await self.adelete_by_key(cluster, key, final_state=obj)

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


async def read_counter(conn: writes.Connection) -> tuple[int, int]:
    """``(index, trimmed)`` of the counter row."""
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
        rs._storage._enqueue(QueuedWrite(kind, rs.info, self.cluster, payload))

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
