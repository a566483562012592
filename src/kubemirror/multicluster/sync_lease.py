"""Who syncs a member cluster: the lease a ``ClusterSynchro`` holds (multicluster layer).

Several server replicas may share one durable storage (``PostgresStorage``);
exactly one of them may write a member cluster's objects at a time, or two
reflectors would race each other's relists. A ``ClusterSynchro`` asks its
storage for ``sync_lease(cluster)`` and runs the cluster's reflectors only while
it holds it: ``acquire`` waits until the lease is granted, ``lost`` is set when
it is taken away (the holder's database session ended), ``release`` gives it
back. ``LocalSyncLease`` is the one-process case (``MemoryStorage``): always
granted, never lost.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["LocalSyncLease", "SyncLease"]


class SyncLease(Protocol):
    """The right to sync one member cluster into a shared storage.

    Use from one event loop. ``acquire`` blocks (asynchronously) until granted or
    until ``stop`` is set (then returns False); after a grant, ``lost`` is set if
    the lease is taken away, and the holder must stop writing. ``release`` is
    idempotent.
    """

    cluster: str

    @property
    def lost(self) -> asyncio.Event:
        """Set when a granted lease was taken away."""

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is held (True) or ``stop`` is set (False)."""

    async def release(self) -> None:
        """Give the lease back."""


class LocalSyncLease:
    """A lease that is always granted and never lost (a storage no one else writes)."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._lost = asyncio.Event()

    @property
    def lost(self) -> asyncio.Event:
        """Never set."""
        return self._lost

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Granted at once (False only when ``stop`` is already set)."""
        return not stop.is_set()

    async def release(self) -> None:
        """Nothing to give back."""
