"""Following the PostgreSQL event log: NOTIFY wakes, the table is the truth (multicluster layer).

An ``EventLogTail`` keeps one connection that LISTENs on
``schema.NOTIFY_CHANNEL`` and reads ``kubemirror_events`` in index order from
its position on, handing each batch to a callback (``PostgresStorage`` feeds
its replica-local watch windows with it). Notifications only wake it: it reads
whatever the table holds, and also polls every ``poll_interval`` seconds, so a
lost notification delays events but never loses them. Writers commit in index
order (the counter row lock), so reading ``seq > position`` never skips a
committed event; a gap means the log was trimmed past this replica's position,
which the callback hears as ``gap_to``. A dropped connection is reopened after
``retry_delay``. asyncio only; ``wait_for(index)`` lets a writer wait until its
own write has been read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from kubemirror.multicluster.postgres import schema

__all__ = ["EventLogTail", "LogEvent"]

log = logging.getLogger(__name__)

_BATCH = 2000


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One row of ``kubemirror_events``."""

    seq: int
    resource: str
    cluster: str
    key: str
    namespace: str
    type: str
    original_rv: str
    object: bytes
    previous: bytes | None


class EventLogTail:
    """Reads the event log after ``position`` forever (see the module docstring).

    ``on_events(events, gap_to)`` runs on the loop for every batch, in order
    (``gap_to`` is the index up to which events are unknown, else 0);
    ``on_clusters()`` when the set of clusters changed. Not thread-safe.
    """

    def __init__(
        self,
        dsn: str,
        position: int,
        on_events: Callable[[list[LogEvent], int], None],
        on_clusters: Callable[[], None],
        *,
        poll_interval: float = 1.0,
        retry_delay: float = 0.5,
    ) -> None:
        self.dsn = dsn
        self.position = position
        self._on_events = on_events
        self._on_clusters = on_clusters
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self._advanced = asyncio.Condition()

    async def wait_for(self, index: int, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the events up to ``index`` were handed out; False on timeout."""
        async with self._advanced:
            try:
                async with asyncio.timeout(timeout):
                    await self._advanced.wait_for(lambda: self.position >= index)
            except TimeoutError:
                return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until ``stop`` is set (within ``poll_interval``) or the task is
        cancelled; reconnects after errors."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except (psycopg.Error, OSError) as exc:
                log.warning("event log: %s; reconnecting in %.1f s", exc, self.retry_delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_delay)

    async def _follow(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {schema.NOTIFY_CHANNEL}".encode())
            while not stop.is_set():
                while await self._read(conn):
                    pass
                await self._wait(conn, stop)

    async def _wait(self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        """Until a notification or the poll interval (``stop`` is seen by cancellation)."""
        async for notify in conn.notifies(timeout=self.poll_interval, stop_after=1):
            if notify.payload == "clusters":
                self._on_clusters()

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Hand out the next batch; True when there may be more."""
        cur = await conn.execute(
            "SELECT seq, resource, cluster, key, namespace, type, original_rv, object, previous "
            "FROM kubemirror_events WHERE seq > %s ORDER BY seq LIMIT %s",
            (self.position, _BATCH),
            binary=True,  # bytea as is, no hex
        )
        rows = await cur.fetchall()
        if not rows:
            return False
        events = [
            LogEvent(
                int(r[0]),
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                bytes(r[7]),
                bytes(r[8]) if r[8] is not None else None,
            )
            for r in rows
        ]
        gap_to = events[0].seq - 1 if events[0].seq != self.position + 1 else 0
        self._on_events(events, gap_to)
        async with self._advanced:
            self.position = events[-1].seq
            self._advanced.notify_all()
        return len(rows) == _BATCH
