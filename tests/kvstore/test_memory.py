"""MemoryKVServer specifics: revisions and lease expiry on an injected clock."""

from __future__ import annotations

import asyncio

from kubemirror.kvstore import memory
from kubemirror.kvstore.backend import KVEventType


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


def test_revisions_increase_per_mutation() -> None:
    server = memory.MemoryKVServer()
    r1 = server.put("a", b"1")
    r2 = server.put("a", b"2")
    assert r2 == r1 + 1
    assert server.put_if_different("a", b"2") is False
    assert server.revision == r2
    assert server.delete("a") is True
    assert server.revision == r2 + 1
    assert server.delete("a") is False
    assert server.revision == r2 + 1


def test_lease_expires_on_the_injected_clock_without_sleeping() -> None:
    clock = FakeClock()
    server = memory.MemoryKVServer(clock)
    lease = server.grant(5.0)
    server.put("k/leased", b"v", lease)
    server.put("k/plain", b"v")
    clock.t += 4.9
    assert server.keepalive(lease) == 5.0  # refreshed: new deadline t+5
    clock.t += 4.9
    assert server.get("k/leased") == b"v"
    clock.t += 0.2
    assert server.expire_due() == 1
    assert server.get("k/leased") is None
    assert server.get("k/plain") == b"v"
    assert server.keepalive(lease) == 0.0
    assert server.leases() == []


def test_rewriting_a_key_moves_it_between_leases() -> None:
    clock = FakeClock()
    server = memory.MemoryKVServer(clock)
    old, new = server.grant(1.0), server.grant(100.0)
    server.put("k", b"1", old)
    server.put("k", b"2", new)
    assert server.lease_of("k") == new
    clock.t += 2
    assert server.get("k") == b"2"  # the old lease's expiry does not take it
    server.put("k", b"3")
    assert server.lease_of("k") == 0
    assert server.revoke(new) is True
    assert server.get("k") == b"3"


async def test_subscription_sees_lease_expiry_as_delete() -> None:
    clock = FakeClock()
    server = memory.MemoryKVServer(clock)
    session = memory.MemoryBackend(server, lease_ttl=10.0)
    watcher = memory.MemoryBackend(server)
    await session.update("p/x", b"1", lease=True)
    stream = watcher.list_and_watch("p/")
    assert (await anext(stream)).type is KVEventType.CREATE
    assert (await anext(stream)).type is KVEventType.LIST_DONE
    clock.t += 11
    assert server.expire_due() == 1
    event = await asyncio.wait_for(anext(stream), 1)
    assert (event.type, event.key) == (KVEventType.DELETE, "p/x")
    await stream.aclose()
    await session.close()
    await watcher.close()


def test_default_server_is_process_wide() -> None:
    assert memory.default_server() is memory.default_server()
