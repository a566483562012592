"""Terminal output for the commands: rich consoles, number formats, the sync bar, live refresh.

Part of the ``cli`` layer. On a terminal, ``run_live`` redraws a rich renderable
a few times per second (one ``Live`` display, refreshed from the event loop, so
rendering never races the code that updates the numbers); otherwise it prints a
plain status line now and then, so logs and pipes get text, not escape codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from kubemirror.cli.mirror import SyncProgress


__all__ = [
    "SyncBar",
    "fmt_bytes",
    "fmt_count",
    "fmt_seconds",
    "install_stop_handlers",
    "key_value_table",
    "rss_bytes",
    "run_live",
    "uptime_footer",
]


def fmt_count(n: int | float) -> str:
    """``5,000``; rates under 10 keep one decimal."""
    if isinstance(n, float) and n < 10:
        return f"{n:.1f}"
    return f"{round(n):,}"


def fmt_seconds(seconds: float | None) -> str:
    """``850 µs``, ``12.5 ms``, ``1.42 s``, ``-`` for ``None``."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: int | None) -> str:
    """``212.4 MB`` (decimal units), ``-`` for ``None``."""
    if n is None:
        return "-"
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def rss_bytes() -> int | None:
    """This process's resident memory, from ``/proc/self/statm`` (``None`` elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def uptime_footer(started: float, duration: float | None) -> str:
    """The footer of a live display: time up since ``started`` (a ``time.monotonic()``
    reading) and, with a ``duration``, the time left before the command exits."""
    up = time.monotonic() - started
    if duration is not None:
        left = max(0.0, duration - up)
        return f"Running for {up:.0f} s; exits in {left:.0f} s (or press Ctrl-C)"
    return f"Running for {up:.0f} s; press Ctrl-C to exit"


def key_value_table(rows: list[tuple[str, RenderableType]], title: str | None = None) -> Table:
    """Two columns, label and value, no borders."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    if title:
        table.title = title
        table.title_justify = "left"
        table.title_style = "bold"
    for label, value in rows:
        table.add_row(label, value)
    return table


class SyncBar:
    """The initial-sync progress bar of one mirror, fed from a ``SyncProgress``.

    Determinate when the server announced a total, a spinner with a count otherwise.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✔[/]"),
            TextColumn("[bold]Initial sync[/] of {task.fields[what]}"),
            BarColumn(bar_width=32),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[detail]}"),
            auto_refresh=False,
        )
        self.task: TaskID = self.progress.add_task(
            "sync", total=None, what=what, count="", detail=""
        )

    def update(self, sync: SyncProgress, synced_count: int | None) -> None:
        detail = ""
        if sync.listed and sync.seconds > 0:
            detail = f"{fmt_count(sync.listed / sync.seconds)}/s"
        if synced_count is not None:
            total = max(synced_count, 1)
            detail = f"in {fmt_seconds(sync.seconds)} ({detail})" if detail else ""
            self.progress.update(
                self.task,
                total=total,
                completed=total,
                count=f"{synced_count:,} {self.what}",
                detail=detail,
            )
            self.progress.stop_task(self.task)
        else:
            count = f"{sync.listed:,}" + (f"/{sync.total:,}" if sync.total is not None else "")
            self.progress.update(
                self.task,
                total=sync.total,
                completed=sync.listed,
                count=f"{count} {self.what}",
                detail=detail,
            )

    def __rich__(self) -> RenderableType:
        return self.progress.get_renderable()


async def run_live(
    console: Console,
    render: Callable[[], RenderableType],
    stop: asyncio.Event,
    *,
    plain: Callable[[], str | None] | None = None,
    interval: float = 0.25,
    plain_interval: float = 5.0,
) -> None:
    """Redraw ``render()`` every ``interval`` s until ``stop`` is set (terminal), or print
    ``plain()`` (when not ``None``) every ``plain_interval`` s (not a terminal).

    The last frame stays on screen.
    """
    if not console.is_terminal:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), plain_interval)
            if plain is not None and not stop.is_set():
                line = plain()
                if line:
                    console.print(line, highlight=False, soft_wrap=True)
        return
    with Live(
        render(), console=console, auto_refresh=False, transient=False, redirect_stderr=True
    ) as live:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            live.update(render(), refresh=True)


def install_stop_handlers(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM set ``stop``; a second Ctrl-C interrupts at once."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C raises KeyboardInterrupt

    loop.add_signal_handler(signal.SIGINT, first)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
