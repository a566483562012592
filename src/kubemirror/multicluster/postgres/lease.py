"""Sync leases on PostgreSQL session advisory locks (multicluster layer).

Each ``PostgresStorage`` replica keeps one dedicated connection (``LeaseHolder``)
on which it takes ``pg_try_advisory_lock(<kubemirror>, hashtext(cluster))`` for
every member cluster it syncs (``application_name`` ``kubemirror leases <pid>``
tells who holds what in ``pg_locks``). PostgreSQL releases a session's advisory locks
the moment the session ends, so when a replica dies (its socket closes) the
next replica retrying (every ``retry_interval`` seconds) takes the cluster over.
The holder checks its connection every ``check_interval`` seconds; when it
breaks, every granted lease is marked ``lost`` (another replica may hold them
now) and the connection is reopened. A partitioned replica stops writing once
its check fails; its locks go when PostgreSQL notices the dead session (TCP
keepalives). asyncio only, one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, Final

import psycopg

__all__ = ["LeaseHolder", "PostgresSyncLease"]

log = logging.getLogger(__name__)

_LOCK_SPACE: Final = 0x6B6D7379  # "kmsy": the first key of every sync lease


class LeaseHolder:
    """The connection holding this replica's sync leases (see the module docstring)."""

    def __init__(self, dsn: str, *, retry_interval: float = 0.5, check_interval: float = 1.0):
        self.dsn = dsn
        self.retry_interval = retry_interval
        self.check_interval = check_interval
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._use = asyncio.Lock()
        self._granted: set[PostgresSyncLease] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._backend_pid = 0
        self.ever_granted: set[str] = set()
        """Clusters this replica has held a lease for (their writes are fenced)."""

    def lease(self, cluster: str) -> PostgresSyncLease:
        """A lease for ``cluster`` (not yet acquired)."""
        return PostgresSyncLease(self, cluster)

    async def start(self) -> None:
        """Start checking the connection (opened on first use)."""
        self._monitor = asyncio.get_running_loop().create_task(
            self._check_forever(), name="kubemirror lease check"
        )

    async def stop(self) -> None:
        """Close the connection: every lease is released at once."""
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        for lease in list(self._granted):
            lease.lost.set()
        self._granted.clear()
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, application_name=f"kubemirror leases {os.getpid()}"
            )
            self._backend_pid = self._conn.info.backend_pid
        return self._conn

    async def held_now(self, conn: psycopg.AsyncConnection[Any], clusters: set[str]) -> set[str]:
        """Which of ``clusters`` this replica's lease session holds now, asked on ``conn``
        (another session: PostgreSQL's lock table is the truth, not our bookkeeping)."""
        if not self._backend_pid:
            return set()
        cur = await conn.execute(
            "SELECT c FROM unnest(%s::text[]) AS c WHERE EXISTS (SELECT 1 FROM pg_locks l "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.pid = %s AND l.classid = %s "
            "AND l.objid = hashtext(c)::oid AND l.objsubid = 2)",
            (sorted(clusters), self._backend_pid, _LOCK_SPACE),
        )
        return {str(row[0]) for row in await cur.fetchall()}

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            if self._conn is None:
                continue
            try:
                async with self._use:
                    await self._conn.execute("SELECT 1")
            except (psycopg.Error, OSError) as exc:
                log.warning("sync leases: connection lost (%s); leases dropped", exc)
                async with self._use:
                    await self._drop()

    async def try_lock(self, lease: PostgresSyncLease) -> bool:
        """One attempt to take ``lease``'s lock."""
        try:
            async with self._use:
                conn = await self._connection()
                cur = await conn.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_SPACE, lease.cluster)
                )
                row = await cur.fetchone()
        except (psycopg.Error, OSError) as exc:
            log.warning("sync lease %s: %s", lease.cluster, exc)
            async with self._use:
                await self._drop()
            return False
        if row is not None and row[0]:
            self._granted.add(lease)
            self.ever_granted.add(lease.cluster)
            return True
        return False

    async def unlock(self, lease: PostgresSyncLease) -> None:
        """Give ``lease``'s lock back (nothing to do once the session is gone)."""
        if lease not in self._granted:
            return
        self._granted.discard(lease)
        with contextlib.suppress(psycopg.Error, OSError):
            async with self._use:
                if self._conn is not None and not self._conn.closed:
                    await self._conn.execute(
                        "SELECT pg_advisory_unlock(%s, hashtext(%s))",
                        (_LOCK_SPACE, lease.cluster),
                    )


class PostgresSyncLease:
    """The right to sync one member cluster, held by a replica's ``LeaseHolder``.

    Implements ``sync_lease.SyncLease``; one acquisition at a time, one task.
    """

    def __init__(self, holder: LeaseHolder, cluster: str) -> None:
        self.holder = holder
        self.cluster = cluster
        self._lost = asyncio.Event()

    @property
    def lost(self) -> asyncio.Event:
        """Set when the holder's connection broke after the grant."""
        return self._lost

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Retry every ``retry_interval`` seconds until granted (True) or ``stop`` (False)."""
        self._lost = asyncio.Event()
        while not stop.is_set():
            if await self.holder.try_lock(self):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.holder.retry_interval)
        return False

    async def release(self) -> None:
        """Unlock (idempotent)."""
        await self.holder.unlock(self)
