"""Shared helpers for the multicluster tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import pytest_asyncio

from kubemirror.multicluster.storage import MemoryStorage, ResourceStorage
from kubemirror.testing import PODS, new_storage


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``predicate`` until true or fail after ``within`` seconds (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def mem() -> MemoryStorage:
    """A storage with prefix ``p``, a 64-event window and clusters ``a`` and ``b``."""
    storage = new_storage(prefix="p", event_window=64)
    storage.prepare_cluster("a")
    storage.prepare_cluster("b")
    return storage


@pytest.fixture
def pods(mem: MemoryStorage) -> ResourceStorage:
    """The Pod storage of ``mem``."""
    return mem.resource_storage(PODS)
