"""What the ``demo`` and ``watch`` commands measure about a running ``Watcher``.

Part of the ``cli`` layer. ``ObservedListerWatcher`` wraps the watcher's
``ListerWatcher``: it records the pages of the first LIST in a ``SyncProgress``
(the total comes from the server's ``remainingItemCount``, when it sends one)
and can hand every watch event to an observer. ``MirrorStats`` collects the
watcher's ``on_sync_complete``/``on_change`` reports; ``RateMeter`` turns a
growing counter into a rate over a sliding window; ``LatencyWindow`` keeps
recent latency samples for percentiles. Every number comes from something that
happened; nothing is estimated. All of it is used from one event loop.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from kubemirror import listwatch, watcher
from kubemirror.stores import indexed_store
from kubemirror.types import WatchEvent

__all__ = [
    "LatencyWindow",
    "MirrorStats",
    "ObservedListerWatcher",
    "RateMeter",
    "SyncProgress",
]

EventObserver = Callable[[WatchEvent], None]


@dataclass(slots=True)
class SyncProgress:
    """Progress of the first LIST, page by page.

    ``total`` is the object count the server announced (listed so far plus its
    ``remainingItemCount``), or ``None`` when it did not say (selectors, servers
    without the field). ``seconds`` is the LIST duration once ``done``.
    """

    listed: int = 0
    total: int | None = None
    pages: int = 0
    started: float | None = None
    finished: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def done(self) -> bool:
        """True once the last page arrived."""
        return self.finished is not None

    @property
    def seconds(self) -> float:
        """Seconds spent listing so far (or in total, once done)."""
        if self.started is None:
            return 0.0
        end = self.finished if self.finished is not None else self.clock()
        return end - self.started

    def start(self) -> None:
        """Note the moment the first page was requested (once)."""
        if self.started is None:
            self.started = self.clock()

    def record_page(self, items: int, remaining: int | None, more: bool) -> None:
        """Account one page of ``items`` objects; ``more`` if a continue token came with it."""
        self.pages += 1
        self.listed += items
        if remaining is not None:
            self.total = self.listed + remaining
        elif not more:
            self.total = self.listed
        if not more:
            self.finished = self.clock()
            self.total = self.listed


class _ObservedStream:
    """An ``EventStream`` that shows each event to ``observe`` before passing it on."""

    __slots__ = ("_inner", "_observe")

    def __init__(self, inner: listwatch.EventStream, observe: EventObserver) -> None:
        self._inner = inner
        self._observe = observe

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self._inner.__anext__()
        self._observe(event)
        return event

    async def aclose(self) -> None:
        await self._inner.aclose()


class ObservedListerWatcher:
    """A ``ListerWatcher`` that records the first LIST in ``progress`` and shows watch
    events to ``observe`` (if given). Relists after the first sync are not recorded.
    Adds one function call per event; use from one event loop.
    """

    def __init__(
        self,
        inner: listwatch.ListerWatcher,
        progress: SyncProgress,
        observe: EventObserver | None = None,
    ) -> None:
        self.inner = inner
        self.progress = progress
        self.observe = observe

    async def list(self, opts: listwatch.ListOptions) -> listwatch.ListPage[dict[str, Any]]:
        progress = self.progress
        if not progress.done:
            progress.start()
        page = await self.inner.list(opts)
        if not progress.done:
            progress.record_page(
                len(page.items), page.remaining_item_count, bool(page.continue_token)
            )
        return page

    async def watch(self, opts: listwatch.ListOptions) -> listwatch.EventStream:
        stream = await self.inner.watch(opts)
        if self.observe is None:
            return stream
        return _ObservedStream(stream, self.observe)

    def __str__(self) -> str:
        return str(self.inner)


class RateMeter:
    """A rate (per second) of a growing counter over the last ``window`` seconds."""

    __slots__ = ("_clock", "_samples", "window")

    def __init__(self, window: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def sample(self, count: int) -> float:
        """Record ``count`` now; returns the rate since the oldest sample in the window."""
        now = self._clock()
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        then, before = samples[0]
        return (count - before) / (now - then) if now > then else 0.0


class LatencyWindow:
    """The last ``size`` latency samples (seconds) and their percentiles."""

    __slots__ = ("_samples", "count")

    def __init__(self, size: int = 4096) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100) of the window, or ``None`` when empty."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


@dataclass(slots=True)
class MirrorStats:
    """What a ``Watcher`` reported: the initial count and every debounced change batch.

    Pass ``on_change`` and ``on_sync_complete`` to the ``WatcherConfig`` (they are
    coroutines, so they run on the loop).
    """

    synced_count: int | None = None
    synced_at: float | None = None
    created: int = 0
    modified: int = 0
    deleted: int = 0
    calls: int = 0
    last: watcher.ChangeStats | None = None
    last_at: float | None = None

    @property
    def synced(self) -> bool:
        return self.synced_count is not None

    @property
    def total(self) -> int:
        """Changes reported since the initial sync."""
        return self.created + self.modified + self.deleted

    async def on_sync_complete(self, store: indexed_store.IndexedStore, count: int) -> None:
        self.synced_count = count
        self.synced_at = time.monotonic()

    async def on_change(
        self, store: indexed_store.IndexedStore, stats: watcher.ChangeStats
    ) -> None:
        self.created += stats.created
        self.modified += stats.modified
        self.deleted += stats.deleted
        self.calls += 1
        self.last = stats
        self.last_at = time.time()
