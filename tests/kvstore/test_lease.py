"""LeaseManager bookkeeping, driven by a scripted lease driver.

The driver is a test double: it produces orderings a real server cannot be made to
produce on demand (a keep-alive reporting expiry between a write and its bookkeeping).
"""

from __future__ import annotations

import asyncio

import pytest

from kubemirror import errors
from kubemirror.kvstore import lease

from .conftest import eventually


class ScriptedDriver:
    def __init__(self) -> None:
        self.granted: list[int] = []
        self.ttl_replies: list[float | Exception] = []
        self.keepalives = 0

    async def grant_lease(self, ttl: float) -> int:
        await asyncio.sleep(0)
        self.granted.append(100 + len(self.granted))
        return self.granted[-1]

    async def keep_lease_alive(self, lease_id: int) -> float:
        self.keepalives += 1
        reply = self.ttl_replies.pop(0) if self.ttl_replies else 1.0
        if isinstance(reply, Exception):
            raise reply
        return reply


async def test_concurrent_acquire_grants_once() -> None:
    driver = ScriptedDriver()
    manager = lease.LeaseManager(driver, 60.0, "t")
    ids = await asyncio.gather(*(manager.acquire() for _ in range(5)))
    assert ids == [100] * 5
    assert driver.granted == [100]
    await manager.close()
    with pytest.raises(errors.KVStoreClosedError):
        await manager.acquire()


async def test_expiry_notifies_the_longest_matching_prefix_once() -> None:
    manager = lease.LeaseManager(ScriptedDriver(), 60.0, "t")
    seen: dict[str, list[str]] = {"a/": [], "a/b/": []}
    manager.register_observer("a/", seen["a/"].append)
    manager.register_observer("a/b/", seen["a/b/"].append)
    lid = await manager.acquire()
    for key in ("a/1", "a/b/2", "c/3"):
        manager.attach(key, lid)
    manager.detach("a/1")
    manager.attach("a/4", lid)
    manager.expired(lid)
    manager.expired(lid)  # reported again (a failed write): nothing new
    assert seen == {"a/": ["a/4"], "a/b/": ["a/b/2"]}
    assert manager.lease_id is None
    assert await manager.acquire() == 101
    await manager.close()


async def test_write_landing_after_expiry_is_reported_lost() -> None:
    manager = lease.LeaseManager(ScriptedDriver(), 60.0, "t")
    lost: list[str] = []
    manager.register_observer("", lost.append)
    lid = await manager.acquire()
    manager.expired(lid)  # the keep-alive saw the expiry first...
    manager.attach("k", lid)  # ...then the write under that lease returned
    assert lost == ["k"]
    await manager.close()


async def test_keepalive_retries_soon_after_errors_and_reports_expiry() -> None:
    driver = ScriptedDriver()
    driver.ttl_replies = [errors.KVStoreUnavailableError("lease keep-alive", ""), 0.3, 0.0]
    manager = lease.LeaseManager(driver, 0.3, "t")  # keep-alive every 0.1 s
    lost: list[str] = []
    manager.register_observer("", lost.append)
    lid = await manager.acquire()
    manager.attach("k", lid)
    await eventually(lambda: lost == ["k"], within=5, message="expiry never reported")
    assert driver.keepalives == 3
    await manager.close()


def test_ttl_must_be_positive() -> None:
    with pytest.raises(errors.ConfigError, match="lease_ttl"):
        lease.LeaseManager(ScriptedDriver(), 0, "t")


async def test_with_lease_retries_once_under_a_new_lease() -> None:
    manager = lease.LeaseManager(ScriptedDriver(), 60.0, "t")
    tried: list[int] = []

    async def write(lease_id: int) -> str:
        tried.append(lease_id)
        if len(tried) == 1:
            raise lease.LeaseNotFoundError(lease_id)
        return "written"

    assert await manager.with_lease("'k'", write) == (101, "written")
    assert tried == [100, 101]
    await manager.close()


async def test_with_lease_gives_up_when_the_new_lease_is_gone_too() -> None:
    manager = lease.LeaseManager(ScriptedDriver(), 60.0, "t")

    async def write(lease_id: int) -> None:
        raise lease.LeaseNotFoundError(lease_id)

    with pytest.raises(errors.LeaseExpiredError, match="'k' expired again"):
        await manager.with_lease("'k'", write)
    assert manager.lease_id is None
    await manager.close()
