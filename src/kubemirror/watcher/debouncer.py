"""``ChangeStats`` and the ``Debouncer``: what changed, and when to say so.

Sans-I/O part of the ``watcher`` layer (haproxy-template-ic ``types.ChangeStats``
and the watcher's debouncer): no tasks, no sleeps; time comes from an injectable
``Clock``, so the policy is tested on a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubemirror import errors
from kubemirror.types import Clock, MonotonicClock

__all__ = ["ChangeStats", "Debouncer"]


@dataclass(frozen=True, slots=True)
class ChangeStats:
    """Changes aggregated since the last ``on_change`` call.

    ``is_initial_sync`` marks the bulk load of pre-existing objects (then
    ``created`` counts them). ``a + b`` sums the counts; the sum is an initial-sync
    batch if either part is.
    """

    created: int = 0
    modified: int = 0
    deleted: int = 0
    is_initial_sync: bool = False

    @property
    def total(self) -> int:
        """``created + modified + deleted``."""
        return self.created + self.modified + self.deleted

    @property
    def is_empty(self) -> bool:
        """True when nothing changed."""
        return self.created == 0 and self.modified == 0 and self.deleted == 0

    def __add__(self, other: ChangeStats) -> ChangeStats:
        if not isinstance(other, ChangeStats):
            return NotImplemented
        return ChangeStats(
            self.created + other.created,
            self.modified + other.modified,
            self.deleted + other.deleted,
            self.is_initial_sync or other.is_initial_sync,
        )


class Debouncer:
    """Leading-edge debouncing with a refractory period; sans-I/O.

    ``record`` adds stats. They are due at once if no call was made in the last
    ``interval`` seconds, else ``interval`` after the previous call — so calls
    are at least ``interval`` apart, a lone change is reported without delay, and
    the last change of a burst is always reported (the trailing call). The
    driver asks ``deadline()``, waits until then, and calls ``pop_due()``;
    ``flush()`` takes whatever is pending now. Time comes from ``clock``.
    Not thread-safe.
    """

    __slots__ = ("_clock", "_last_fired", "_pending", "interval")

    def __init__(self, interval: float, clock: Clock | None = None) -> None:
        if interval < 0:
            raise errors.ConfigError(f"must be >= 0, got {interval!r}", field="debounce_interval")
        self.interval = interval
        self._clock: Clock = clock or MonotonicClock()
        self._pending: ChangeStats | None = None
        self._last_fired: float | None = None

    @property
    def pending(self) -> ChangeStats | None:
        """Stats recorded and not yet popped, or ``None``."""
        return self._pending

    def record(self, stats: ChangeStats) -> None:
        """Aggregate ``stats`` into the pending batch (empty stats are ignored)."""
        if stats.is_empty:
            return
        self._pending = stats if self._pending is None else self._pending + stats

    def deadline(self) -> float | None:
        """Clock time at which the pending batch is due; ``None`` if nothing is pending."""
        if self._pending is None:
            return None
        if self._last_fired is None:
            return self._clock.now()
        return self._last_fired + self.interval

    def pop_due(self) -> ChangeStats | None:
        """The pending batch if it is due now (and start a new refractory period)."""
        deadline = self.deadline()
        if deadline is None or self._clock.now() < deadline:
            return None
        return self.flush()

    def flush(self) -> ChangeStats | None:
        """The pending batch regardless of time, or ``None``."""
        stats, self._pending = self._pending, None
        if stats is not None:
            self._last_fired = self._clock.now()
        return stats
