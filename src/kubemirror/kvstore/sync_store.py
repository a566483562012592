"""``WorkqueueSyncStore``: write a set of keys into a kvstore prefix, reliably.

Part of the kvstore layer (seed: Cilium ``SyncStore``/``NewWorkqueueSyncStore``).
Callers declare the desired state (``upsert_key``/``delete_key``, never blocking);
workers drain a coalescing work queue into the backend, so only the latest state of
a key is written, failures are retried with per-key backoff, and keys lost with an
expired lease are written again. ``synced()`` publishes a canary key once every
earlier upsert has landed, which is what ``WatchStoreManager.sync`` waits for.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from kubemirror import errors, lifecycle
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import workqueue

__all__ = ["SyncedCallback", "WorkqueueSyncStore", "default_sync_rate_limiter"]

log = logging.getLogger(__name__)

SyncedCallback = Callable[[], Awaitable[None] | None]
"""Run once the synced canary was written; may be a plain function or a coroutine."""


class _Canary:
    """The work-queue item standing for "write the synced canary"."""

    def __repr__(self) -> str:
        return "<synced canary>"


_CANARY: Final = _Canary()
_Item = str | _Canary


def default_sync_rate_limiter() -> workqueue.RateLimiter:
    """Per-key exponential backoff from 10 ms to 30 s and no global bucket.

    client-go's controller default also caps all retries at 10 qps, which after an
    outage would spread 10,000 failed keys over 1,000 s; a kvstore outage fails
    every key at once, so only per-key backoff is used here.
    """
    return workqueue.ExponentialFailureRateLimiter(0.01, 30.0)


class WorkqueueSyncStore(lifecycle.StartStopService):
    """Synchronizes locally declared keys into ``<prefix>/<key name>`` of a backend.

    - ``upsert_key(key)`` records ``key.marshal()`` as the desired value (ignored if
      unchanged) and queues the key; ``delete_key(key)`` records its absence (ignored
      for keys never upserted). While a key is queued only its latest state counts;
      one key is never written by two workers at once.
    - ``workers`` tasks write queued keys (``update`` with the session lease unless
      ``without_lease``, or ``delete``); a failed write is retried after
      ``rate_limiter`` (default ``default_sync_rate_limiter()``) says so. Writes are
      idempotent, so a write whose outcome was unknown is simply repeated.
    - ``batch_size`` > 1 lets a worker take up to that many queued keys at once and
      write them with ``Backend.update_many`` (one etcd transaction): far fewer
      round trips under load; a failed batch retries each of its keys.
    - When the backend reports the lease of some keys expired, those still desired
      are queued again (and the canary, if it had been written).
    - ``synced(*callbacks)``: the first call queues the canary; it is written (with
      the lease unless ``without_lease``) at ``synced_key(cluster, prefix)``, i.e.
      ``kubemirror/synced/<cluster>/<prefix>``, or at
      ``synced_key(cluster, synced_key_override)``, as soon as every key upserted
      before the call has been written, then the callbacks run once, in order.

    Lifecycle: ``start()`` spawns the workers, ``stop()`` cancels them (queued writes
    are dropped; the keys already written stay), ``run(stop_event)`` does both around
    waiting, and ``async with`` starts and stops. Keys may be declared before
    ``start()``. Not thread-safe: call from the event loop running the store.
    """

    def __init__(
        self,
        cluster: str,
        backend: backend_mod.Backend,
        prefix: str,
        *,
        workers: int = 1,
        rate_limiter: workqueue.RateLimiter | None = None,
        without_lease: bool = False,
        synced_key_override: str | None = None,
        batch_size: int = 1,
    ) -> None:
        if not prefix.strip("/"):
            raise errors.ConfigError("must not be empty", field="prefix", expression=prefix)
        if workers < 1:
            raise errors.ConfigError("must be at least 1", field="workers", expression=str(workers))
        if not 1 <= batch_size <= backend_mod.MAX_BATCH:
            raise errors.ConfigError(
                f"must be between 1 and {backend_mod.MAX_BATCH}",
                field="batch_size",
                expression=str(batch_size),
            )
        self.cluster = cluster
        self.backend = backend
        self.prefix = backend_mod.join_key(prefix)
        self.workers = workers
        self.batch_size = batch_size
        self.with_lease = not without_lease
        self.synced_key = backend_mod.synced_key(cluster, synced_key_override or self.prefix)
        self._queue: workqueue.WorkQueue[_Item] = workqueue.WorkQueue(
            rate_limiter or default_sync_rate_limiter(), name=f"sync {self.prefix}"
        )
        self._state: dict[str, bytes] = {}
        self._pending: set[str] = set()
        self._synced_requested = False
        self._synced_written = False
        self._synced_callbacks: tuple[SyncedCallback, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []
        self._context = f"cluster={cluster} prefix={self.prefix}"

    # -- desired state -----------------------------------------------------------

    def key_path(self, name: str) -> str:
        """The backend key of the key named ``name``: ``<prefix>/<name>``."""
        return backend_mod.join_key(self.prefix, name)

    def upsert_key(self, key: key_mod.Key) -> None:
        """Declare ``key`` present with its current value; never blocks.

        Raises ``KVStoreError`` (from the cause) if ``key.marshal()`` fails.
        """
        name = key.get_key_name()
        try:
            value = bytes(key.marshal())
        except Exception as exc:
            raise errors.KVStoreError(f"cannot marshal key {name!r} ({self._context})") from exc
        if self._state.get(name) == value:
            log.debug("sync store %s: key %r unchanged", self._context, name)
            return
        self._state[name] = value
        if not self._synced_requested:
            self._pending.add(name)
        self._queue.add(name)

    def delete_key(self, key: key_mod.NamedKey) -> None:
        """Declare ``key`` absent; never blocks. No-op for keys never upserted."""
        name = key.get_key_name()
        if self._state.pop(name, None) is None:
            log.debug("sync store %s: ignoring delete of unknown key %r", self._context, name)
            return
        self._queue.add(name)

    def synced(self, *callbacks: SyncedCallback) -> None:
        """Write the synced canary once all earlier upserts landed, then run ``callbacks``.

        Only the first call has an effect.
        """
        if self._synced_requested:
            return
        self._synced_requested = True
        self._synced_callbacks = callbacks
        self._queue.add(_CANARY)

    @property
    def is_synced(self) -> bool:
        """True once the canary has been written."""
        return self._synced_written

    def desired_state(self) -> dict[str, bytes]:
        """A copy of the declared keys and values (what the backend converges to)."""
        return dict(self._state)

    def queue_length(self) -> int:
        """Keys waiting for a worker (not counting retries still backing off)."""
        return len(self._queue)

    def pending_operations(self) -> int:
        """Writes not yet done: waiting, being written, or backing off after a failure."""
        return len(self._queue) + self._queue.num_delayed() + self._queue.num_processing()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Spawn the workers (idempotent). Requires a running event loop."""
        if self._tasks:
            return
        if self._queue.shutting_down:
            raise errors.KVStoreClosedError(f"sync store {self._context}")
        self.backend.register_lease_expired_observer(self.prefix + "/", self._on_lease_expired)
        self.backend.register_lease_expired_observer(self.synced_key, self._on_lease_expired)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"sync-store {self.prefix} #{i}")
            for i in range(self.workers)
        ]
        log.info("sync store %s: started %d workers", self._context, self.workers)

    async def stop(self) -> None:
        """Cancel the workers and stop reacting to lease expiry (idempotent)."""
        self._queue.shut_down()
        tasks, self._tasks = self._tasks, []
        await lifecycle.cancel_and_wait(tasks)
        if tasks:
            self.backend.register_lease_expired_observer(self.prefix + "/", None)
            self.backend.register_lease_expired_observer(self.synced_key, None)
            log.info("sync store %s: stopped", self._context)

    # -- workers -----------------------------------------------------------------

    def _on_lease_expired(self, path: str) -> None:
        if path == self.synced_key:
            if self._synced_written:
                self._queue.add(_CANARY)
            return
        name = path[len(self.prefix) + 1:]
        if name in self._state:
            log.info("sync store %s: lease of %r expired; re-creating", self._context, name)
            self._queue.add(name)

    async def _next_batch(self) -> list[_Item]:
        batch = [await self._queue.get()]
        while len(batch) < self.batch_size:
            item = self._queue.get_nowait()
            if item is None:
                break
            batch.append(item)
        return batch

    async def _worker(self) -> None:
        while True:
            try:
                batch = await self._next_batch()
            except errors.FIFOClosedError:
                return
            names = [item for item in batch if isinstance(item, str)]
            try:
                if names:
                    await self._process(names, self._write_keys(names))
                if len(names) < len(batch):
                    await self._process([_CANARY], self._handle_canary())
            except asyncio.CancelledError:
                for item in batch:
                    if self._queue.is_processing(item):
                        self._queue.done(item)
                raise

    async def _process(self, items: Sequence[_Item], write: Awaitable[None]) -> None:
        """Await ``write`` (covering ``items``), then retry or complete the items."""
        try:
            await write
        except Exception as exc:
            shown = items[0] if len(items) == 1 else f"{len(items)} keys from {items[0]!r}"
            log.warning(
                "sync store %s: writing %s failed (retry %d): %s",
                self._context,
                shown,
                self._queue.num_requeues(items[0]) + 1,
                exc,
            )
            for item in items:
                self._queue.add_rate_limited(item)
                self._queue.done(item)
            return
        for item in items:
            self._queue.forget(item)
            # A key added again while it was being written is still pending: its
            # newest value has not landed yet.
            landed = not self._queue.is_queued(item)
            self._queue.done(item)
            if landed and isinstance(item, str) and item in self._pending:
                self._pending.discard(item)
                if not self._pending and self._synced_requested and not self._synced_written:
                    self._queue.add(_CANARY)

    async def _write_keys(self, names: list[str]) -> None:
        if len(names) > 1:
            await self.backend.update_many(
                {self.key_path(name): self._state.get(name) for name in names},
                lease=self.with_lease,
            )
            log.debug("sync store %s: wrote %d keys", self._context, len(names))
            return
        name = names[0]
        value = self._state.get(name)
        path = self.key_path(name)
        if value is None:
            await self.backend.delete(path)
            log.debug("sync store %s: deleted %r", self._context, name)
        else:
            await self.backend.update(path, value, lease=self.with_lease)
            log.debug("sync store %s: upserted %r", self._context, name)

    async def _handle_canary(self) -> None:
        if self._pending:
            log.debug(
                "sync store %s: %d keys still pending before the canary",
                self._context,
                len(self._pending),
            )
            return  # re-queued by the worker once the last pending key is written
        first = not self._synced_written
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").encode()
        await self.backend.update(self.synced_key, stamp, lease=self.with_lease)
        self._synced_written = True
        if not first:
            return
        log.info("sync store %s: initial synchronization completed", self._context)
        for callback in self._synced_callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("sync store %s: synced callback failed", self._context)
