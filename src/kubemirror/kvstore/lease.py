"""The session lease shared by a backend's leased keys, and its keep-alive loop.

Part of the kvstore layer (seed: Cilium's etcd lease manager). Each backend session
owns at most one live lease: granted on the first leased write, refreshed every
TTL/3, and replaced when the server reports it gone. ``LeaseManager`` remembers
which keys were written under which lease so that, when a lease is found expired,
the observers registered for a prefix of those keys are told which keys vanished.
``LeasedSession`` is the session half of a ``Backend`` built on it (lease id and
TTL, observers, closing); ``MemoryBackend`` and ``EtcdBackend`` both inherit it, so
they expire and close alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, Self, TypeVar

from kubemirror import errors, lifecycle
from kubemirror.kvstore import backend

__all__ = ["LeaseDriver", "LeaseManager", "LeaseNotFoundError", "LeasedSession"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class LeaseNotFoundError(Exception):
    """Internal signal: the server does not know the lease a write named.

    Raised by a backend's server call and turned into a retry (then
    ``errors.LeaseExpiredError``) by ``LeaseManager.with_lease``; it never leaves a
    backend.
    """


class LeaseDriver(Protocol):
    """The two server calls a ``LeaseManager`` needs."""

    async def grant_lease(self, ttl: float) -> int:
        """Grant a lease of ``ttl`` seconds and return its id."""
        ...

    async def keep_lease_alive(self, lease_id: int) -> float:
        """Refresh ``lease_id``; return its new TTL, or 0 if it no longer exists.

        Raises ``KVStoreUnavailableError`` when the server cannot be reached.
        """
        ...


class LeaseManager:
    """One backend session's lease: lazy grant, keep-alive, expiry bookkeeping.

    ``acquire()`` returns the current lease id, granting one (once, even under
    concurrent callers) when there is none, and starts the keep-alive task, which
    refreshes every ``ttl / 3`` seconds and retries sooner after a connection error.
    ``attach``/``detach`` record which keys live under which lease; ``expired(id)``
    forgets the lease and calls, for each of its keys, the observer registered for
    the longest matching prefix. Observer exceptions are logged, never raised.

    Not thread-safe; use from the event loop of its backend. Memory: one set entry
    per leased key.
    """

    def __init__(self, driver: LeaseDriver, ttl: float, name: str = "") -> None:
        if ttl <= 0:
            raise errors.ConfigError("must be positive", field="lease_ttl", expression=str(ttl))
        self._driver = driver
        self.ttl = ttl
        self._name = name
        self._lease_id: int | None = None
        self._keys: dict[int, set[str]] = {}
        self._key_lease: dict[str, int] = {}
        self._dead: set[int] = set()  # ids of leases found expired (a few per session)
        self._observers: dict[str, backend.LeaseExpiredObserver] = {}
        self._grant_lock = asyncio.Lock()
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def lease_id(self) -> int | None:
        """The current lease id, or None when none is granted."""
        return self._lease_id

    async def acquire(self) -> int:
        """The current lease id, granting a new lease if needed."""
        if self._closed:
            raise errors.KVStoreClosedError(f"lease manager {self._name}")
        current = self._lease_id
        if current is not None:
            return current
        async with self._grant_lock:
            if self._lease_id is None:
                lease_id = await self._driver.grant_lease(self.ttl)
                if self._closed:
                    raise errors.KVStoreClosedError(f"lease manager {self._name}")
                self._lease_id = lease_id
                self._keys.setdefault(lease_id, set())
                log.debug("%s: granted lease %x (ttl %ss)", self._name, lease_id, self.ttl)
                self._start_keepalive()
            return self._lease_id

    async def with_lease(self, what: str, write: Callable[[int], Awaitable[T]]) -> tuple[int, T]:
        """Run ``write(lease_id)`` under the current lease; return the id and its result.

        If ``write`` raises ``LeaseNotFoundError`` the lease is marked ``expired`` and
        the write is tried once more under a new lease; if that lease is gone too,
        raises ``LeaseExpiredError`` naming ``what``. Attaching keys is the caller's.
        """
        for _ in range(2):
            lease_id = await self.acquire()
            try:
                return lease_id, await write(lease_id)
            except LeaseNotFoundError:
                self.expired(lease_id)
        raise errors.LeaseExpiredError(f"lease for {what} expired again right after grant")

    def attach(self, key: str, lease_id: int) -> None:
        """Record that ``key`` was written under ``lease_id``.

        If that lease was already found expired (the write raced with the expiry),
        the key is reported lost at once instead.
        """
        if lease_id in self._dead:
            self.detach(key)
            self._notify([key])
            return
        old = self._key_lease.get(key)
        if old is not None and old != lease_id:
            self._keys.get(old, set()).discard(key)
        self._key_lease[key] = lease_id
        self._keys.setdefault(lease_id, set()).add(key)

    def detach(self, key: str) -> None:
        """Record that ``key`` was deleted or rewritten without a lease."""
        old = self._key_lease.pop(key, None)
        if old is not None:
            self._keys.get(old, set()).discard(key)

    def expired(self, lease_id: int) -> None:
        """``lease_id`` is gone on the server: forget it and notify observers."""
        if self._lease_id == lease_id:
            self._lease_id = None
        self._dead.add(lease_id)
        keys = self._keys.pop(lease_id, set())
        for key in keys:
            self._key_lease.pop(key, None)
        if keys:
            log.info("%s: lease %x expired; %d keys lost", self._name, lease_id, len(keys))
        self._notify(sorted(keys))

    def _notify(self, keys: list[str]) -> None:
        for key in keys:
            observer = self._observer_for(key)
            if observer is None:
                continue
            try:
                observer(key)
            except Exception:
                log.exception("%s: lease-expired observer failed for key %r", self._name, key)

    def register_observer(self, prefix: str, observer: backend.LeaseExpiredObserver | None) -> None:
        """Set (or with None remove) the observer for keys under ``prefix``."""
        if observer is None:
            self._observers.pop(prefix, None)
        else:
            self._observers[prefix] = observer

    def _observer_for(self, key: str) -> backend.LeaseExpiredObserver | None:
        best: str | None = None
        for prefix in self._observers:
            if key.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else self._observers[best]

    def _start_keepalive(self) -> None:
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.get_running_loop().create_task(
                self._keepalive_loop(), name=f"kvstore-lease-keepalive {self._name}"
            )

    async def _keepalive_loop(self) -> None:
        interval = self.ttl / 3
        delay = interval
        while not self._closed:
            await asyncio.sleep(delay)
            lease_id = self._lease_id
            if lease_id is None:
                return
            try:
                remaining = await self._driver.keep_lease_alive(lease_id)
            except errors.KVStoreError as exc:
                log.warning("%s: lease %x keep-alive failed: %s", self._name, lease_id, exc)
                delay = min(interval, 0.2)
                continue
            delay = interval
            if remaining <= 0:
                self.expired(lease_id)
                return

    async def close(self) -> None:
        """Stop the keep-alive; the lease itself is left to expire."""
        self._closed = True
        task, self._keepalive = self._keepalive, None
        if task is not None:
            await lifecycle.cancel_and_wait([task])


class LeasedSession:
    """Base class of a ``Backend``: the session half, around one ``LeaseManager``.

    Gives ``lease_id``, ``lease_ttl``, ``register_lease_expired_observer``,
    idempotent ``close()`` (marks the session closed, stops the keep-alive, then
    calls the subclass's ``_release()``) and ``async with`` (which closes). A
    subclass implements the ``LeaseDriver`` calls and ``_release``, calls
    ``_check_open()`` first thing in each operation (``KVStoreClosedError`` once
    closed) and tests ``_closed`` in its loops. Not thread-safe.
    """

    def __init__(self, lease_ttl: float, name: str) -> None:
        self._name = name
        self._leases = LeaseManager(self, lease_ttl, name)
        self._closed = False

    async def grant_lease(self, ttl: float) -> int:
        raise NotImplementedError

    async def keep_lease_alive(self, lease_id: int) -> float:
        raise NotImplementedError

    @property
    def lease_id(self) -> int | None:
        """The id of this session's current lease, or None before the first leased write."""
        return self._leases.lease_id

    @property
    def lease_ttl(self) -> float:
        """The TTL requested for this session's leases, in seconds."""
        return self._leases.ttl

    def register_lease_expired_observer(
        self, prefix: str, observer: backend.LeaseExpiredObserver | None
    ) -> None:
        self._leases.register_observer(prefix, observer)

    def _check_open(self) -> None:
        if self._closed:
            raise errors.KVStoreClosedError(f"backend {self._name}")

    async def close(self) -> None:
        """Stop the keep-alive and every watch and release the connection (idempotent).

        The lease is not revoked: leased keys live until it expires.
        """
        if self._closed:
            return
        self._closed = True
        await self._leases.close()
        await self._release()

    async def _release(self) -> None:
        """End the watches and release the connection; called once, by ``close()``."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
