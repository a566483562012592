"""Shared helpers for the multicluster tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import aiohttp
import pytest
import pytest_asyncio

from kubemirror.multicluster import resources
from kubemirror.multicluster.storage import MemoryStorage, ResourceStorage
from kubemirror.testing import PODS, new_storage

if TYPE_CHECKING:
    from kubemirror.multicluster.postgres import PostgresResourceStorage, PostgresStorage

    AnyStorage = MemoryStorage | PostgresStorage
    AnyResourceStorage = ResourceStorage | PostgresResourceStorage


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


@pytest_asyncio.fixture(
    params=["memory", "memory-compact", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[AnyStorage]:
    """The storage conformance fixture: ``MemoryStorage`` (objects as dicts, or compact:
    as bytes) and ``PostgresStorage`` (on a fresh database of a real PostgreSQL), each
    with prefix ``p``, a 64-event window, the built-in types and clusters ``a`` and ``b``."""
    if request.param.startswith("memory"):
        mem = new_storage(prefix="p", event_window=64, compact=request.param.endswith("compact"))
        mem.prepare_cluster("a")
        mem.prepare_cluster("b")
        yield mem
        return
    from kubemirror.multicluster.postgres import PostgresStorage

    dsn: str = request.getfixturevalue("postgres_dsn")
    pg = PostgresStorage(
        dsn, prefix="p", event_window=64, poll_interval=0.2, resource_version_wait=0.2
    )
    for info in resources.BUILTIN_RESOURCES:
        pg.new_resource_storage(info)
    async with pg:
        pg.prepare_cluster("a")
        pg.prepare_cluster("b")
        await pg.flush()
        yield pg


@pytest.fixture
def any_pods(storage: AnyStorage) -> AnyResourceStorage:
    """The Pod storage of ``storage``."""
    return storage.resource_storage(PODS)
