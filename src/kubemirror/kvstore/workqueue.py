"""A rate-limited, coalescing asyncio work queue (client-go ``util/workqueue``).

Part of the kvstore layer; ``WorkqueueSyncStore`` uses it. An item waits in the
queue at most once however often it is added; an item being processed is never
handed to a second worker, and if it is added meanwhile it comes back once
``done()`` is called. Failed items are re-added after a delay chosen by a
``RateLimiter`` (per-item exponential backoff by default); ``forget()`` resets it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from kubemirror import errors
from kubemirror.backoff import exponential_delay
from kubemirror.types import Clock, MonotonicClock

__all__ = [
    "BucketRateLimiter",
    "ExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "WorkQueue",
    "default_controller_rate_limiter",
]

T = TypeVar("T", bound=Hashable)


class RateLimiter(Protocol):
    """Decides how long a failed item waits before its retry."""

    def when(self, item: Hashable) -> float:
        """Seconds to wait before re-adding ``item``; records one more failure."""
        ...

    def forget(self, item: Hashable) -> None:
        """``item`` succeeded: reset its failure history."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of ``item`` are on record."""
        ...


class ExponentialFailureRateLimiter:
    """``base_delay * 2**failures``, capped at ``max_delay``, per item.

    Not thread-safe (asyncio use). Memory: one counter per failing item.
    """

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise errors.ConfigError(
                "need 0 < base_delay <= max_delay",
                field="rate_limiter",
                expression=f"base_delay={base_delay}, max_delay={max_delay}",
            )
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        return exponential_delay(failures, self.base_delay, 2.0, self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket shared by all items: ``qps`` tokens a second, ``burst`` at most.

    ``when`` reserves the next token and returns the wait until it is available.
    ``clock`` is injectable for tests.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise errors.ConfigError(
                "need qps > 0 and burst >= 1",
                field="rate_limiter",
                expression=f"qps={qps}, burst={burst}",
            )
        self.qps = qps
        self.burst = burst
        self._clock = clock or MonotonicClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        now = self._clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters (all of them record every failure)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise errors.ConfigError("needs at least one limiter", field="rate_limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> MaxOfRateLimiter:
    """client-go's controller default: per-item 5 ms..1000 s, overall 10 qps (burst 100)."""
    return MaxOfRateLimiter(
        ExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100)
    )


class WorkQueue(Generic[T]):
    """A coalescing FIFO of hashable items with delayed and rate-limited adds.

    - ``add(item)``: queue ``item`` unless it is already waiting; if a worker is
      processing it, it is queued again when that worker calls ``done(item)``.
    - ``await get()``: the oldest waiting item, now marked as processing; raises
      ``FIFOClosedError`` once ``shut_down()`` was called and nothing is waiting.
    - ``done(item)`` must follow every ``get()``; ``add_rate_limited(item)`` re-adds
      after the limiter's delay, ``forget(item)`` clears the item's failure history.

    Ordering: FIFO by first add among waiting items. ``add*`` never block and are
    no-ops after shutdown. Not thread-safe: use from one event loop. All operations
    are O(1) except ``get`` wake-ups, which wake every waiting worker.
    """

    def __init__(self, rate_limiter: RateLimiter | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or ExponentialFailureRateLimiter()
        self._queue: collections.deque[T] = collections.deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiting: dict[T, asyncio.TimerHandle] = {}
        self._waiting_at: dict[T, float] = {}
        self._not_empty = asyncio.Event()
        self._shutting_down = False

    def __len__(self) -> int:
        """Items waiting to be handed out (not counting processing or delayed ones)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        """True after ``shut_down()``."""
        return self._shutting_down

    def is_processing(self, item: T) -> bool:
        """True between ``get()`` returning ``item`` and ``done(item)``."""
        return item in self._processing

    def is_queued(self, item: T) -> bool:
        """True if ``item`` waits to be handed out (also while processing: re-added)."""
        return item in self._dirty

    def num_processing(self) -> int:
        """Items handed out by ``get()`` and not yet ``done()``."""
        return len(self._processing)

    def num_delayed(self) -> int:
        """Items scheduled by ``add_after``/``add_rate_limited`` and not yet added."""
        return len(self._waiting)

    def add(self, item: T) -> None:
        """Queue ``item`` (coalesced with an identical waiting item)."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._not_empty.set()

    def add_after(self, item: T, delay: float) -> None:
        """``add(item)`` after ``delay`` seconds (keeping the earlier of two schedules)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        previous = self._waiting_at.get(item)
        if previous is not None:
            if previous <= due:
                return
            self._waiting.pop(item).cancel()
        self._waiting_at[item] = due
        self._waiting[item] = loop.call_at(due, self._fire, item)

    def _fire(self, item: T) -> None:
        self._waiting.pop(item, None)
        self._waiting_at.pop(item, None)
        self.add(item)

    def add_rate_limited(self, item: T) -> None:
        """``add_after(item, rate_limiter.when(item))``."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Reset the failure history of ``item`` in the rate limiter."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        """Failures of ``item`` recorded by the rate limiter."""
        return self.rate_limiter.num_requeues(item)

    async def get(self) -> T:
        """Wait for and return the next item, marking it as processing."""
        while not self._queue:
            if self._shutting_down:
                raise errors.FIFOClosedError(f"work queue {self.name!r} is shut down")
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def get_nowait(self) -> T | None:
        """The next waiting item (marked as processing), or None if none is waiting."""
        if not self._queue:
            return None
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        """Finish processing ``item``; re-queue it if it was added meanwhile."""
        self._processing.discard(item)
        if item in self._dirty and not self._shutting_down:
            self._queue.append(item)
            self._not_empty.set()

    def shut_down(self) -> None:
        """Stop accepting items, cancel delayed adds and wake every waiting ``get``."""
        self._shutting_down = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._waiting_at.clear()
        self._not_empty.set()
