"""One write transaction of ``PostgresStorage``: indexes, rows, event log (multicluster layer).

A ``WriteTransaction`` runs inside one database transaction. It first locks
the counter row (``kubemirror_counter``), so every writer of every replica is
serialised and commits in index order; then each write reads the current row,
checks the request (exists, preconditions), stamps the object with the next
index, and is recorded twice: as the new current row of ``kubemirror_objects``
and as an event of ``kubemirror_events`` (with the state it replaced).
``finish`` writes the rows in bulk, moves the counter and notifies the
replicas. A ``WriteTransaction`` is used by one task and dropped with its
transaction; an exception before ``finish`` rolls everything back, and no
index is consumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from kubemirror import keys
from kubemirror.cache.raw_object import RawObject
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster import status, watch_cache
from kubemirror.multicluster.postgres import schema
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.storage import (
    deleted_state,
    key_and_namespace,
    original_resource_version,
    stamp_object,
)
from kubemirror.types import Obj

__all__ = ["CurrentRow", "WriteTransaction", "resource_name"]

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


def resource_name(info: ResourceInfo) -> str:
    """The ``resource`` column value of a type: ``group/version/resource``."""
    gvr = info.gvr
    return f"{gvr.group}/{gvr.version}/{gvr.resource}"


@dataclass(frozen=True, slots=True)
class CurrentRow:
    """The stored state of one key as read from ``kubemirror_objects``."""

    namespace: str
    seq: int
    original_rv: str
    raw: bytes

    def entry(self, cluster: str, key: str) -> watch_cache.StoredObject:
        """The row as a ``StoredObject`` (its JSON kept as received)."""
        return watch_cache.StoredObject(
            orjson.loads(self.raw),
            cluster=cluster,
            key=key,
            namespace=self.namespace,
            index=self.seq,
            original_rv=self.original_rv,
            encoded=self.raw,
        )


_Pk = tuple[str, str, str]
_EVENT_TYPES = ["int8", "text", "text", "text", "text", "text", "text", "bytea", "bytea"]


class WriteTransaction:
    """The writes of one database transaction (see the module docstring).

    ``prefix`` is the storage's resourceVersion prefix; ``clusters`` the
    prepared clusters (writes for others raise ``NotFoundError``). Not
    thread-safe; one task.
    """

    def __init__(self, conn: Connection, prefix: str, clusters: Iterable[str]) -> None:
        self._conn = conn
        self._prefix = prefix
        self._clusters = set(clusters)
        self._start = 0
        self.index = 0
        """The last index assigned (after ``begin``)."""
        self._current: dict[_Pk, CurrentRow | None] = {}
        self._final: dict[_Pk, tuple[Any, ...] | None] = {}
        self._events: list[tuple[Any, ...]] = []
        self.cluster_changes = False

    async def begin(self) -> None:
        """Lock the counter row: from here on this transaction is the only writer."""
        cur = await self._conn.execute(
            "UPDATE kubemirror_counter SET index = index WHERE id = 1 RETURNING index"
        )
        row = await cur.fetchone()
        assert row is not None, "kubemirror_counter lost its row"
        self._start = self.index = int(row[0])
        cur = await self._conn.execute("SELECT name FROM kubemirror_clusters")
        self._clusters = {str(r[0]) for r in await cur.fetchall()}

    @property
    def connection(self) -> Connection:
        """The connection of this transaction (for reads that must see its snapshot)."""
        return self._conn

    @property
    def clusters(self) -> frozenset[str]:
        """The prepared clusters, this transaction's changes included."""
        return frozenset(self._clusters)

    # -- reading current rows --------------------------------------------------------------

    async def load(self, resource: str, cluster: str, keys_: Sequence[str]) -> None:
        """Read the current rows of ``keys_`` (one query) unless already known."""
        wanted = [k for k in keys_ if (resource, cluster, k) not in self._current]
        if not wanted:
            return
        cur = await self._conn.execute(
            "SELECT key, namespace, seq, original_rv, object FROM kubemirror_objects "
            "WHERE resource = %s AND cluster = %s AND key = ANY(%s)",
            (resource, cluster, wanted),
        )
        for key in wanted:
            self._current[(resource, cluster, key)] = None
        for key, namespace, seq, orig, raw in await cur.fetchall():
            self._current[(resource, cluster, key)] = CurrentRow(namespace, seq, orig, bytes(raw))

    async def versions(self, resource: str, cluster: str) -> dict[str, str]:
        """``{key: original rv}`` of every current object of ``cluster`` (this
        transaction's writes included)."""
        cur = await self._conn.execute(
            "SELECT key, original_rv FROM kubemirror_objects WHERE resource = %s AND cluster = %s",
            (resource, cluster),
        )
        out = {str(k): str(v) for k, v in await cur.fetchall()}
        for (res, clu, key), row in self._current.items():
            if res == resource and clu == cluster:
                if row is None:
                    out.pop(key, None)
                else:
                    out[key] = row.original_rv
        return out

    def current(self, resource: str, cluster: str, key: str) -> CurrentRow | None:
        """The current row of a key ``load`` has read (``None``: absent)."""
        return self._current[(resource, cluster, key)]

    # -- writing ---------------------------------------------------------------------------

    def _check_cluster(self, cluster: str) -> None:
        if cluster not in self._clusters:
            raise status.not_found("clusters", cluster, "cluster.clusterpedia.io")

    def _write(
        self,
        info: ResourceInfo,
        cluster: str,
        key: str,
        namespace: str,
        type_: watch_cache.EventType,
        obj: Obj,
        original_rv: str,
        previous: CurrentRow | None,
    ) -> watch_cache.StoredObject:
        self._check_cluster(cluster)
        self.index += 1
        index = self.index
        orig = original_rv or str(index)
        if isinstance(obj, RawObject):  # a synchro's ListWatch with a PartialDecoder
            obj = obj.decode()
        stamped = stamp_object(info, self._prefix, cluster, obj, index, orig)
        raw = orjson.dumps(stamped)
        resource = resource_name(info)
        pk = (resource, cluster, key)
        if type_ == "DELETED":
            self._current[pk] = None
            self._final[pk] = None
        else:
            meta = stamped["metadata"]
            labels = meta.get("labels")
            self._current[pk] = CurrentRow(namespace, index, orig, raw)
            self._final[pk] = (
                resource,
                cluster,
                key,
                namespace,
                str(meta.get("name") or ""),
                orjson.dumps(labels if isinstance(labels, dict) else {}).decode(),
                index,
                orig,
                raw,
            )
        self._events.append(
            (
                index,
                resource,
                cluster,
                key,
                namespace,
                type_,
                orig,
                raw,
                previous.raw if previous is not None else None,
            )
        )
        return watch_cache.StoredObject(
            stamped,
            cluster=cluster,
            key=key,
            namespace=namespace,
            index=index,
            original_rv=orig,
            encoded=raw,
        )

    def _stamped_rv(self, row: CurrentRow) -> str:
        return rvs.to_memory_resource_version(self._prefix, row.seq, row.original_rv)

    async def create(self, info: ResourceInfo, cluster: str, obj: Obj) -> watch_cache.StoredObject:
        """Store a new object (``ConflictError`` AlreadyExists if the key is taken)."""
        key, namespace = key_and_namespace(info, obj)
        self._check_cluster(cluster)
        resource = resource_name(info)
        await self.load(resource, cluster, [key])
        if self.current(resource, cluster, key) is not None:
            raise status.already_exists(info.gvr.resource, key, info.gvr.group)
        return self._write(
            info, cluster, key, namespace, "ADDED", obj, original_resource_version(obj), None
        )

    async def _existing(
        self, info: ResourceInfo, cluster: str, key: str, expected: str | None, conflict: str
    ) -> CurrentRow:
        resource = resource_name(info)
        await self.load(resource, cluster, [key])
        row = self.current(resource, cluster, key)
        if row is None:
            raise status.not_found(info.gvr.resource, key, info.gvr.group)
        if expected and expected != self._stamped_rv(row):
            raise status.conflict(info.gvr.resource, key, conflict, info.gvr.group)
        return row

    async def update(
        self,
        info: ResourceInfo,
        cluster: str,
        obj: Obj,
        *,
        expected_resource_version: str | None = None,
        original_rv: str | None = None,
    ) -> watch_cache.StoredObject:
        """Replace an existing object (``NotFoundError``; ``ConflictError`` on a stale
        ``expected_resource_version``)."""
        key, namespace = key_and_namespace(info, obj)
        self._check_cluster(cluster)
        previous = await self._existing(
            info,
            cluster,
            key,
            expected_resource_version,
            "the object has been modified; please apply your changes to the latest "
            "version and try again",
        )
        orig = original_resource_version(obj) if original_rv is None else original_rv
        return self._write(info, cluster, key, namespace, "MODIFIED", obj, orig, previous)

    async def upsert(self, info: ResourceInfo, cluster: str, obj: Obj) -> watch_cache.StoredObject:
        """Create or update (a synchro's add/update)."""
        key, namespace = key_and_namespace(info, obj)
        self._check_cluster(cluster)
        resource = resource_name(info)
        await self.load(resource, cluster, [key])
        previous = self.current(resource, cluster, key)
        return self._write(
            info,
            cluster,
            key,
            namespace,
            "ADDED" if previous is None else "MODIFIED",
            obj,
            original_resource_version(obj),
            previous,
        )

    async def delete_by_key(
        self,
        info: ResourceInfo,
        cluster: str,
        key: str,
        *,
        final_state: Obj | None = None,
        expected_resource_version: str | None = None,
    ) -> watch_cache.StoredObject:
        """Remove ``key``; the DELETED event carries ``deleted_state``. ``NotFoundError``
        when absent."""
        self._check_cluster(cluster)
        previous = await self._existing(
            info, cluster, key, expected_resource_version, "the resourceVersion precondition failed"
        )
        prev_obj = previous.entry(cluster, key).object
        state = deleted_state(prev_obj, final_state)
        orig = previous.original_rv
        if state is not prev_obj:
            orig = original_resource_version(state) or orig
        return self._write(info, cluster, key, previous.namespace, "DELETED", state, orig, previous)

    async def delete_object(self, info: ResourceInfo, cluster: str, obj: Any) -> None:
        """A synchro's delete: ``obj`` is an object, a tombstone or a key; absent is fine."""
        key = keys.meta_namespace_key(obj)
        final: Obj | None = obj if isinstance(obj, dict) else None
        if isinstance(obj, keys.DeletedFinalStateUnknown) and isinstance(obj.obj, dict):
            final = obj.obj
        self._check_cluster(cluster)
        resource = resource_name(info)
        await self.load(resource, cluster, [key])
        if self.current(resource, cluster, key) is not None:
            await self.delete_by_key(info, cluster, key, final_state=final)

    async def replace(self, info: ResourceInfo, cluster: str, objs: Sequence[Obj]) -> None:
        """Make ``cluster``'s objects of this type exactly ``objs``: write only those whose
        original resourceVersion changed, delete the keys that vanished."""
        self._check_cluster(cluster)
        resource = resource_name(info)
        versions = await self.versions(resource, cluster)
        changed: list[tuple[str, Obj]] = []
        seen: set[str] = set()
        for obj in objs:
            key, _ = key_and_namespace(info, obj)
            seen.add(key)
            original = original_resource_version(obj)
            if original and versions.get(key) == original:
                continue
            changed.append((key, obj))
        vanished = sorted(k for k in versions if k not in seen)
        await self.load(resource, cluster, [k for k, _ in changed] + vanished)
        for _, obj in changed:
            await self.upsert(info, cluster, obj)
        for key in vanished:
            await self.delete_by_key(info, cluster, key)

    async def clean(self, info: ResourceInfo, cluster: str) -> int:
        """Delete every object of ``cluster`` of this type (a DELETED event each)."""
        resource = resource_name(info)
        versions = await self.versions(resource, cluster)
        doomed = sorted(versions)
        await self.load(resource, cluster, doomed)
        for key in doomed:
            await self.delete_by_key(info, cluster, key)
        return len(doomed)

    async def prepare_cluster(self, cluster: str) -> None:
        """Allow writes for ``cluster``."""
        if cluster not in self._clusters:
            await self._conn.execute(
                "INSERT INTO kubemirror_clusters VALUES (%s) ON CONFLICT DO NOTHING", (cluster,)
            )
            self._clusters.add(cluster)
            self.cluster_changes = True

    async def forget_cluster(self, cluster: str) -> None:
        """Disallow writes for ``cluster`` (after its objects were cleaned)."""
        await self._conn.execute("DELETE FROM kubemirror_clusters WHERE name = %s", (cluster,))
        self._clusters.discard(cluster)
        self.cluster_changes = True

    async def finish(self) -> None:
        """Write the rows and events, move the counter, notify the replicas."""
        conn = self._conn
        gone = [pk for pk, row in self._final.items() if row is None]
        kept = [row for row in self._final.values() if row is not None]
        async with conn.cursor() as cur:
            if gone:
                await cur.execute(
                    "DELETE FROM kubemirror_objects o USING unnest(%s::text[], %s::text[], "
                    "%s::text[]) AS d(resource, cluster, key) WHERE o.resource = d.resource "
                    "AND o.cluster = d.cluster AND o.key = d.key",
                    ([p[0] for p in gone], [p[1] for p in gone], [p[2] for p in gone]),
                )
            if kept:  # one statement, parameters as arrays in binary
                await cur.execute(
                    "INSERT INTO kubemirror_objects (resource, cluster, key, namespace, name, "
                    "labels, seq, original_rv, object) SELECT u.resource, u.cluster, u.key, "
                    "u.namespace, u.name, u.labels::jsonb, u.seq, u.original_rv, u.object "
                    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
                    "%b::text[], %b::int8[], %b::text[], %b::bytea[]) AS u(resource, cluster, "
                    "key, namespace, name, labels, seq, original_rv, object) "
                    "ON CONFLICT (resource, cluster, key) DO UPDATE SET namespace = "
                    "EXCLUDED.namespace, name = EXCLUDED.name, labels = EXCLUDED.labels, "
                    "seq = EXCLUDED.seq, original_rv = EXCLUDED.original_rv, "
                    "object = EXCLUDED.object",
                    [list(column) for column in zip(*kept, strict=True)],
                )
            if self._events:
                async with cur.copy(
                    "COPY kubemirror_events (seq, resource, cluster, key, namespace, type, "
                    "original_rv, object, previous) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_EVENT_TYPES)
                    for event in self._events:
                        await copy.write_row(event)
            if self.index != self._start:
                await cur.execute(
                    "UPDATE kubemirror_counter SET index = %s WHERE id = 1", (self.index,)
                )
                await cur.execute(
                    "SELECT pg_notify(%s, %s)", (schema.NOTIFY_CHANNEL, str(self.index))
                )
            if self.cluster_changes:
                await cur.execute("SELECT pg_notify(%s, 'clusters')", (schema.NOTIFY_CHANNEL,))
