"""The embedded kvstore: an in-process keyspace with revisions, watches and leases.

Part of the kvstore layer. ``MemoryKVServer`` plays the role of an etcd server inside
the process (one revisioned keyspace, prefix watchers, leases that expire on an
injectable clock); each ``MemoryBackend`` is a client session on it with its own
lease, so several collaborators in one process can share a store exactly as they
would through etcd. It needs no dependency and is the default backend of
``SharedStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field

from kubemirror.kvstore import backend, lease
from kubemirror.types import Clock, MonotonicClock

__all__ = ["MemoryBackend", "MemoryKVServer", "default_server"]

log = logging.getLogger(__name__)

_MAX_TIMER_DELAY = 1.0


@dataclass(slots=True)
class _Entry:
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(slots=True)
class _Lease:
    ttl: float
    deadline: float
    keys: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class _Subscription:
    prefix: str
    queue: asyncio.Queue[backend.KVEvent | None]


class MemoryKVServer:
    """An in-process revisioned keyspace with prefix watches and expiring leases.

    Every mutation bumps one global ``revision``. Watch subscriptions receive events
    synchronously with the mutation, so a list taken together with a subscription
    (``subscribe``) sees every later change exactly once. Leases expire when
    ``clock.now()`` passes their deadline: checked on every call and by a loop timer,
    so with a fake clock, advance it and call ``expire_due()``.

    Not thread-safe: use from one thread (normally one event loop's). Subscriptions
    belong to the loop that created them. Complexity: O(1) per key operation plus
    O(watchers) fan-out; ``range`` is O(n log n) in the size of the keyspace.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.revision = 1
        self._data: dict[str, _Entry] = {}
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x6B6D_0000_0001)
        self._subscriptions: list[_Subscription] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    # -- keys ------------------------------------------------------------------

    def put(self, key: str, value: bytes, lease_id: int = 0) -> int:
        """Create or overwrite ``key``; return the new revision.

        Raises ``lease.LeaseNotFoundError`` (internal) if ``lease_id`` is not live.
        """
        self.expire_due()
        if lease_id and lease_id not in self._leases:
            raise lease.LeaseNotFoundError(lease_id)
        self.revision += 1
        old = self._data.get(key)
        if old is not None and old.lease and old.lease != lease_id:
            old_lease = self._leases.get(old.lease)
            if old_lease is not None:
                old_lease.keys.discard(key)
        created = old.create_revision if old is not None else self.revision
        self._data[key] = _Entry(bytes(value), created, self.revision, lease_id)
        if lease_id:
            self._leases[lease_id].keys.add(key)
        kind = backend.KVEventType.CREATE if old is None else backend.KVEventType.MODIFY
        self._publish(backend.KVEvent(kind, key, self._data[key].value, self.revision))
        return self.revision

    def put_if_different(self, key: str, value: bytes, lease_id: int = 0) -> bool:
        """``put`` unless the key already holds ``value`` under ``lease_id``."""
        self.expire_due()
        old = self._data.get(key)
        if old is not None and old.value == value and old.lease == lease_id:
            return False
        self.put(key, value, lease_id)
        return True

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        self.expire_due()
        return self._delete(key)

    def _delete(self, key: str) -> bool:
        old = self._data.pop(key, None)
        if old is None:
            return False
        self.revision += 1
        if old.lease:
            owner = self._leases.get(old.lease)
            if owner is not None:
                owner.keys.discard(key)
        self._publish(backend.KVEvent(backend.KVEventType.DELETE, key, b"", self.revision))
        return True

    def get(self, key: str) -> bytes | None:
        """The value of ``key`` or None."""
        self.expire_due()
        entry = self._data.get(key)
        return None if entry is None else entry.value

    def lease_of(self, key: str) -> int:
        """The lease id ``key`` is attached to (0 for none or a missing key)."""
        self.expire_due()
        entry = self._data.get(key)
        return 0 if entry is None else entry.lease

    def range(self, prefix: str) -> tuple[list[tuple[str, bytes, int]], int]:
        """Sorted ``(key, value, mod_revision)`` under ``prefix``, and the revision."""
        self.expire_due()
        items = sorted(
            (k, e.value, e.mod_revision) for k, e in self._data.items() if k.startswith(prefix)
        )
        return items, self.revision

    # -- watches ---------------------------------------------------------------

    def subscribe(
        self, prefix: str
    ) -> tuple[list[tuple[str, bytes, int]], int, _Subscription]:
        """Atomically list ``prefix`` (items and revision) and subscribe to its later events."""
        items, revision = self.range(prefix)
        sub = _Subscription(prefix, asyncio.Queue())
        self._subscriptions.append(sub)
        return items, revision, sub

    def unsubscribe(self, sub: _Subscription) -> None:
        """Stop delivering events to ``sub`` (idempotent)."""
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)

    def _publish(self, event: backend.KVEvent) -> None:
        for sub in self._subscriptions:
            if event.key.startswith(sub.prefix):
                sub.queue.put_nowait(event)

    # -- leases ----------------------------------------------------------------

    def grant(self, ttl: float) -> int:
        """Grant a lease of ``ttl`` seconds; return its id."""
        self.expire_due()
        lease_id = next(self._lease_ids)
        self._leases[lease_id] = _Lease(ttl, self.clock.now() + ttl)
        self._schedule_timer()
        return lease_id

    def keepalive(self, lease_id: int) -> float:
        """Refresh ``lease_id``; its TTL, or 0 if it does not exist."""
        self.expire_due()
        entry = self._leases.get(lease_id)
        if entry is None:
            return 0.0
        entry.deadline = self.clock.now() + entry.ttl
        return entry.ttl

    def revoke(self, lease_id: int) -> bool:
        """Revoke ``lease_id`` now, deleting its keys; True if it existed."""
        self.expire_due()
        return self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> bool:
        entry = self._leases.pop(lease_id, None)
        if entry is None:
            return False
        for key in sorted(entry.keys):
            current = self._data.get(key)
            if current is not None and current.lease == lease_id:
                self._delete(key)
        return True

    def leases(self) -> list[int]:
        """Ids of the live leases."""
        self.expire_due()
        return sorted(self._leases)

    def expire_due(self) -> int:
        """Expire every lease whose deadline passed; return how many expired."""
        if not self._leases:
            return 0
        now = self.clock.now()
        due = [lid for lid, entry in self._leases.items() if entry.deadline <= now]
        for lease_id in due:
            log.debug("memory kvstore: lease %x expired", lease_id)
            self._revoke(lease_id)
        return len(due)

    def _schedule_timer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = self._next_delay()
        timer = self._timer
        if timer is not None and self._timer_loop is loop and not loop.is_closed():
            if timer.when() <= loop.time() + delay:
                return  # fires early enough; it reschedules itself
            timer.cancel()
        self._timer_loop = loop
        self._timer = loop.call_later(delay, self._on_timer)

    def _next_delay(self) -> float:
        if not self._leases:
            return _MAX_TIMER_DELAY
        earliest = min(entry.deadline for entry in self._leases.values())
        return min(max(earliest - self.clock.now(), 0.0) + 0.001, _MAX_TIMER_DELAY)

    def _on_timer(self) -> None:
        self._timer = None
        self.expire_due()
        if self._leases:
            self._schedule_timer()


_DEFAULT_SERVER: MemoryKVServer | None = None


def default_server() -> MemoryKVServer:
    """The process-wide embedded keyspace (created on first use)."""
    global _DEFAULT_SERVER
    if _DEFAULT_SERVER is None:
        _DEFAULT_SERVER = MemoryKVServer()
    return _DEFAULT_SERVER


class MemoryBackend(lease.LeasedSession):
    """A ``Backend`` session on a ``MemoryKVServer`` (a new private one by default).

    Pass the same ``server`` to several backends to let them share a store; each has
    its own lease of ``lease_ttl`` seconds, kept alive every TTL/3 while the backend
    is open. Semantics match ``EtcdBackend`` (see ``Backend``), minus connection
    failures. Not thread-safe; use from one event loop.
    """

    def __init__(
        self,
        server: MemoryKVServer | None = None,
        *,
        lease_ttl: float = 15.0,
        name: str = "memory",
    ) -> None:
        super().__init__(lease_ttl, name)
        self.server = server if server is not None else MemoryKVServer()
        self._subscriptions: set[_Subscription] = set()

    # -- LeaseDriver -----------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        return self.server.grant(ttl)

    async def keep_lease_alive(self, lease_id: int) -> float:
        return self.server.keepalive(lease_id)

    # -- Backend ---------------------------------------------------------------

    async def _leased_write(self, key: str, value: bytes, if_different: bool) -> bool:
        async def write(lease_id: int) -> bool:
            if if_different:
                return self.server.put_if_different(key, value, lease_id)
            self.server.put(key, value, lease_id)
            return True

        lease_id, written = await self._leases.with_lease(repr(key), write)
        self._leases.attach(key, lease_id)
        return written

    async def update(self, key: str, value: bytes, lease: bool = False) -> None:
        self._check_open()
        if lease:
            await self._leased_write(key, value, False)
        else:
            self.server.put(key, value)
            self._leases.detach(key)

    async def update_if_different(self, key: str, value: bytes, lease: bool = False) -> bool:
        self._check_open()
        if lease:
            return await self._leased_write(key, value, True)
        written = self.server.put_if_different(key, value)
        self._leases.detach(key)
        return written

    async def update_many(self, writes: Mapping[str, bytes | None], lease: bool = False) -> None:
        self._check_open()
        for key, value in writes.items():
            if value is None:
                self._leases.detach(key)
                self.server.delete(key)
            elif lease:
                await self._leased_write(key, value, False)
            else:
                self.server.put(key, value)
                self._leases.detach(key)

    async def delete(self, key: str) -> bool:
        self._check_open()
        self._leases.detach(key)
        return self.server.delete(key)

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        return self.server.get(key)

    async def list_prefix(self, prefix: str) -> dict[str, bytes]:
        self._check_open()
        items, _ = self.server.range(prefix)
        return {k: v for k, v, _ in items}

    async def list_and_watch(self, prefix: str) -> AsyncGenerator[backend.KVEvent, None]:
        """See ``Backend.list_and_watch``; close it with ``aclose()`` when done."""
        self._check_open()
        items, revision, sub = self.server.subscribe(prefix)
        self._subscriptions.add(sub)
        try:
            for key, value, mod_revision in items:
                yield backend.KVEvent(backend.KVEventType.CREATE, key, value, mod_revision)
            yield backend.KVEvent(backend.KVEventType.LIST_DONE, revision=revision)
            while not self._closed:
                event = await sub.queue.get()
                if event is None:
                    return
                yield event
        finally:
            self.server.unsubscribe(sub)
            self._subscriptions.discard(sub)

    async def _release(self) -> None:
        for sub in list(self._subscriptions):
            self.server.unsubscribe(sub)
            sub.queue.put_nowait(None)

    def __repr__(self) -> str:
        return f"MemoryBackend(name={self._name!r}, lease_id={self.lease_id})"
