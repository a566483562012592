"""``answer_within``: a request deadline that measures the etcd member, not the event loop.

Part of the kvstore layer, under ``EtcdBackend``. A plain ``asyncio.wait_for``
deadline also counts the time this process's event loop spent busy elsewhere (a
long garbage collection, a thousand sessions' events being decoded): an answer the
member sent in time then sits unread while the timer fires, and the session would
fail over from a healthy member, relist and re-watch, adding the very load that made
it late. ``answer_within`` declares a member late only when the loop was responsive:

- when the timer fires, the loop first gets ``GRACE_TURNS`` more turns, so answers
  that already arrived (gRPC reads them off the socket in its own threads) are
  delivered before anything is declared late;
- a timer that fired more than ``STALL_FRACTION`` of the timeout late shows that
  the loop was stalled during the wait: the member gets the full timeout again,
  counted from the end of the stall.

So under sustained overload no request times out at all; a dead member is still
found at once by its refused or reset connection, and a silent one by gRPC's
keep-alive pings, which run in gRPC's threads on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["GRACE_TURNS", "STALL_FRACTION", "answer_within"]

_T = TypeVar("_T")

GRACE_TURNS = 8
"""Loop turns granted after the timer fired, to deliver answers already received."""

STALL_FRACTION = 0.1
"""A timer this fraction of the timeout late means the loop stalled: the wait restarts."""


async def answer_within(call: Awaitable[_T], seconds: float) -> _T:
    """Await ``call``; raise ``TimeoutError`` (after cancelling it) once it took
    ``seconds`` of a responsive event loop without an answer.

    Cancelling the caller cancels ``call``. Exceptions of ``call`` propagate. Must
    run in the event loop ``call`` belongs to.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(call)
    deadline = loop.time() + seconds
    try:
        while True:
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            if task.done():
                return task.result()
            fired = loop.time()
            for _ in range(GRACE_TURNS):
                await asyncio.sleep(0)
                if task.done():
                    return task.result()
            if fired - deadline <= seconds * STALL_FRACTION:
                break
            deadline = loop.time() + seconds
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    raise TimeoutError(f"no answer within {seconds:g} s of a responsive event loop")
