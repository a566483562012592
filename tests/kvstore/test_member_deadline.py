"""``answer_within``: a late answer because the event loop was busy is no timeout.

The loop is really blocked here (``time.sleep`` inside a callback, as a long garbage
collection or a burst of decoding blocks it); the "member" is a future another
callback resolves, so no socket is involved.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kubemirror.kvstore import member_deadline

SECONDS = 0.1  # the request deadline under test
STALL = 0.4  # a loop stall several times longer than it


async def read_reply(answer: asyncio.Future[str]) -> str:
    """The client side of a call: the answer arrives, then takes a loop turn to read
    (as gRPC's completion wakes a reader task, which wakes the caller)."""
    value = await answer
    await asyncio.sleep(0)
    return value


def stall_loop_soon(seconds: float) -> None:
    """Block the running event loop for ``seconds`` on its next turn."""
    asyncio.get_running_loop().call_soon(time.sleep, seconds)


async def test_an_answer_that_arrived_during_a_stall_is_delivered() -> None:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    loop.call_later(SECONDS / 2, answer.set_result, "on time")  # due during the stall
    stall_loop_soon(STALL)
    assert await member_deadline.answer_within(read_reply(answer), SECONDS) == "on time"


async def test_plain_wait_for_loses_that_answer() -> None:
    """The hazard ``answer_within`` removes: asyncio's timer fires in the same turn."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    loop.call_later(SECONDS / 2, answer.set_result, "on time")
    stall_loop_soon(STALL)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(read_reply(answer), SECONDS)


async def test_a_stall_gives_the_member_a_full_timeout_again() -> None:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def answer_after_the_stall() -> None:
        time.sleep(STALL)
        loop.call_later(SECONDS / 2, answer.set_result, "after the stall")

    loop.call_soon(answer_after_the_stall)
    got = await member_deadline.answer_within(read_reply(answer), SECONDS)
    assert got == "after the stall"


async def test_a_silent_member_times_out_on_a_responsive_loop_and_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    cancelled = asyncio.Event()

    async def silent() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    started = loop.time()
    with pytest.raises(TimeoutError, match="responsive event loop"):
        await member_deadline.answer_within(silent(), SECONDS)
    elapsed = loop.time() - started
    # at least the timeout; more only if this (shared) machine stalled the loop
    assert SECONDS <= elapsed < 20 * SECONDS
    assert cancelled.is_set()


async def test_a_silent_member_still_times_out_after_a_stall() -> None:
    loop = asyncio.get_running_loop()
    silent: asyncio.Future[str] = loop.create_future()
    stall_loop_soon(STALL)
    started = loop.time()
    with pytest.raises(TimeoutError):
        await member_deadline.answer_within(silent, SECONDS)
    # the stall, then one full timeout of a responsive loop
    assert loop.time() - started >= STALL + SECONDS
    assert silent.cancelled()


async def test_errors_propagate_and_cancelling_the_caller_cancels_the_call() -> None:
    async def failing() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        await member_deadline.answer_within(failing(), SECONDS)

    pending: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiter = asyncio.ensure_future(member_deadline.answer_within(pending, 60.0))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pending.cancelled()
