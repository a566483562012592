"""The Backend contract, run against MemoryBackend and a real etcd server alike."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore.backend import KVEvent, KVEventType

from .conftest import Harness, eventually


class EventTail:
    """Consumes ``list_and_watch`` in a task, keeping every event."""

    def __init__(self, b: backend_mod.Backend, prefix: str) -> None:
        self.events: list[KVEvent] = []
        self.listed = asyncio.Event()
        self._stream = b.list_and_watch(prefix)
        self.task = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self._stream:
            self.events.append(event)
            if event.type is KVEventType.LIST_DONE:
                self.listed.set()

    def changes(self) -> list[tuple[KVEventType, str, bytes]]:
        return [
            (e.type, e.key, e.value) for e in self.events if e.type is not KVEventType.LIST_DONE
        ]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self._stream.aclose()


async def test_update_get_delete_list(kv: Harness) -> None:
    b = kv.new_backend()
    assert await b.get("app/a") is None
    await b.update("app/a", b"1")
    await b.update("app/b", b"2")
    await b.update("apple", b"sibling")
    assert await b.get("app/a") == b"1"
    assert await b.list_prefix("app/") == {"app/a": b"1", "app/b": b"2"}
    assert await b.delete("app/a") is True
    assert await b.delete("app/a") is False  # idempotent
    assert await b.list_prefix("app/") == {"app/b": b"2"}
    assert await b.list_prefix("nothing/") == {}


async def test_values_are_bytes_roundtrip(kv: Harness) -> None:
    b = kv.new_backend()
    payload = bytes(range(256)) * 4
    await b.update("bin/x", payload)
    assert await b.get("bin/x") == payload
    await b.update("bin/ünïcode key", b"")
    assert await b.list_prefix("bin/") == {"bin/x": payload, "bin/ünïcode key": b""}


async def test_update_if_different_compares_value_and_lease(kv: Harness) -> None:
    b = kv.new_backend()
    assert await b.update_if_different("cas/k", b"v") is True
    assert await b.update_if_different("cas/k", b"v") is False
    assert await b.update_if_different("cas/k", b"w") is True
    assert await b.update_if_different("cas/k", b"w", lease=True) is True  # lease differs
    assert await b.update_if_different("cas/k", b"w", lease=True) is False
    assert await b.update_if_different("cas/k", b"w", lease=False) is True
    assert await b.get("cas/k") == b"w"


async def test_list_and_watch_lists_then_marks_then_streams(kv: Harness) -> None:
    writer = kv.new_backend()
    await writer.update("w/b", b"2")
    await writer.update("w/a", b"1")
    await writer.update("wx/sibling", b"no")
    tail = EventTail(kv.new_backend(), "w/")
    try:
        await asyncio.wait_for(tail.listed.wait(), 10)
        assert [e.type for e in tail.events][-1] is KVEventType.LIST_DONE
        assert sorted(tail.changes()) == [
            (KVEventType.CREATE, "w/a", b"1"),
            (KVEventType.CREATE, "w/b", b"2"),
        ]
        await writer.update("w/a", b"1b")
        await writer.update("w/c", b"3")
        await writer.delete("w/b")
        await writer.update("wx/sibling", b"still no")
        await eventually(lambda: len(tail.changes()) == 5, message=lambda: str(tail.events))
        assert tail.changes()[2:] == [
            (KVEventType.MODIFY, "w/a", b"1b"),
            (KVEventType.CREATE, "w/c", b"3"),
            (KVEventType.DELETE, "w/b", b""),
        ]
        revisions = [e.revision for e in tail.events[3:]]
        assert revisions == sorted(revisions)
        assert len(set(revisions)) == 3
    finally:
        await tail.close()


async def test_watch_reports_every_change_once_in_order(kv: Harness) -> None:
    writer = kv.new_backend()
    tail = EventTail(kv.new_backend(), "seq/")
    try:
        await asyncio.wait_for(tail.listed.wait(), 10)
        for i in range(50):
            await writer.update(f"seq/{i % 7}", str(i).encode())
        await eventually(lambda: len(tail.changes()) == 50)
        state: dict[str, bytes] = {}
        for kind, name, value in tail.changes():
            assert kind is (KVEventType.MODIFY if name in state else KVEventType.CREATE)
            state[name] = value
        assert state == await writer.list_prefix("seq/")
    finally:
        await tail.close()


async def test_close_ends_watches_and_rejects_calls(kv: Harness) -> None:
    b = kv.new_backend()
    tail = EventTail(b, "end/")
    await asyncio.wait_for(tail.listed.wait(), 10)
    await b.close()
    await asyncio.wait_for(tail.task, 10)  # the stream ended on its own
    with pytest.raises(errors.KVStoreClosedError):
        await b.update("end/x", b"1")
    with pytest.raises(errors.KVStoreClosedError):
        await b.get("end/x")
    await b.close()  # idempotent


async def test_leased_key_lives_while_kept_alive(kv: Harness) -> None:
    """TTL 1 s: the keep-alive (every TTL/3) holds the key well past its TTL."""
    b = kv.new_backend(lease_ttl=1.0)
    await b.update("live/k", b"v", lease=True)
    assert b.lease_id is not None
    await asyncio.sleep(2.5)  # 2.5 TTLs: the point of this test is elapsed real time
    assert await kv.admin.get("live/k") == b"v"


async def test_dead_session_loses_leased_keys_only(kv: Harness) -> None:
    b = kv.new_backend(lease_ttl=1.0)
    await b.update("dead/leased", b"v", lease=True)
    await b.update("dead/plain", b"v")
    tail = EventTail(kv.admin, "dead/")
    try:
        await asyncio.wait_for(tail.listed.wait(), 10)
        await b.close()  # no keep-alive any more: like a crashed process
        await eventually(
            lambda: (KVEventType.DELETE, "dead/leased", b"") in tail.changes(), within=10
        )
        assert await kv.admin.list_prefix("dead/") == {"dead/plain": b"v"}
    finally:
        await tail.close()


async def test_revoked_lease_notifies_observers_and_is_replaced(kv: Harness) -> None:
    b = kv.new_backend(lease_ttl=2.0)
    lost: list[str] = []
    other: list[str] = []
    b.register_lease_expired_observer("obs/", lost.append)
    b.register_lease_expired_observer("obs/deep/", other.append)
    await b.update("obs/a", b"1", lease=True)
    await b.update("obs/deep/b", b"2", lease=True)
    await b.update("obs/plain", b"3")
    await b.update("elsewhere/c", b"4", lease=True)
    first = b.lease_id
    assert first is not None
    await kv.revoke_lease(first)
    # Detected by the keep-alive (every TTL/3) or by the next leased write.
    await eventually(lambda: lost == ["obs/a"] and other == ["obs/deep/b"], within=10)
    assert await kv.admin.list_prefix("obs/") == {"obs/plain": b"3"}
    await b.update("obs/a", b"again", lease=True)
    assert b.lease_id not in (None, first)
    assert await kv.admin.get("obs/a") == b"again"


async def test_leased_write_after_silent_revoke_regrants(kv: Harness) -> None:
    """A leased write with a lease revoked behind our back gets a new lease."""
    b = kv.new_backend(lease_ttl=30.0)  # keep-alive far away: the write must notice
    lost: list[str] = []
    b.register_lease_expired_observer("re/", lost.append)
    await b.update("re/a", b"1", lease=True)
    first = b.lease_id
    assert first is not None
    await kv.revoke_lease(first)
    await b.update("re/b", b"2", lease=True)
    assert b.lease_id not in (None, first)
    assert lost == ["re/a"]
    assert await kv.admin.list_prefix("re/") == {"re/b": b"2"}


async def test_unregistered_observer_is_not_called(kv: Harness) -> None:
    b = kv.new_backend(lease_ttl=30.0)
    lost: list[str] = []
    b.register_lease_expired_observer("un/", lost.append)
    b.register_lease_expired_observer("un/", None)
    await b.update("un/a", b"1", lease=True)
    assert b.lease_id is not None
    await kv.revoke_lease(b.lease_id)
    await b.update("un/b", b"1", lease=True)
    assert lost == []


async def test_failing_lease_observer_is_logged(
    kv: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    b = kv.new_backend(lease_ttl=30.0)

    def boom(key: str) -> None:
        raise RuntimeError("observer bug")

    b.register_lease_expired_observer("boom/", boom)
    await b.update("boom/a", b"1", lease=True)
    assert b.lease_id is not None
    await kv.revoke_lease(b.lease_id)
    await b.update("boom/b", b"1", lease=True)  # does not raise
    assert "lease-expired observer failed for key 'boom/a'" in caplog.text


async def test_sessions_share_one_keyspace(kv: Harness) -> None:
    one, two = kv.new_backend(), kv.new_backend()
    await one.update("share/one", b"1", lease=True)
    await two.update("share/two", b"2", lease=True)
    assert one.lease_id != two.lease_id
    assert await one.list_prefix("share/") == await two.list_prefix("share/") == {
        "share/one": b"1",
        "share/two": b"2",
    }


def test_join_key_and_synced_key() -> None:
    assert backend_mod.join_key("a/", "/b", "", "c/") == "a/b/c"
    assert backend_mod.synced_key("c1", "/state/nodes/v1/") == "kubemirror/synced/c1/state/nodes/v1"


async def test_backends_satisfy_the_protocol(kv: Harness) -> None:
    assert isinstance(kv.new_backend(), backend_mod.Backend)


async def test_update_many_puts_and_deletes_in_batches(kv: Harness) -> None:
    b = kv.new_backend(lease_ttl=30.0)
    await b.update("many/old", b"x")
    tail = EventTail(kv.admin, "many/")
    try:
        await asyncio.wait_for(tail.listed.wait(), 10)
        count = backend_mod.MAX_BATCH * 2 + 5  # three batches
        writes: dict[str, bytes | None] = {f"many/k{i:04d}": b"%d" % i for i in range(count)}
        writes["many/old"] = None
        await b.update_many(writes, lease=True)
        listed = await kv.admin.list_prefix("many/")
        assert listed == {k: v for k, v in writes.items() if v is not None}
        await eventually(lambda: len(tail.changes()) == count + 2)  # + listed "old"
        assert (KVEventType.DELETE, "many/old", b"") in tail.changes()
        lost: list[str] = []
        b.register_lease_expired_observer("many/", lost.append)
        assert b.lease_id is not None
        await kv.revoke_lease(b.lease_id)
        await b.update("many/probe", b"1", lease=True)  # discovers the expiry
        assert len(lost) == count
        assert await kv.admin.list_prefix("many/") == {"many/probe": b"1"}
    finally:
        await tail.close()


async def test_events_carry_revisions_and_list_done_the_listing_revision(kv: Harness) -> None:
    """Mod revisions order the listing's keys; LIST_DONE names the revision the listing
    was taken at (what a mirror resumes from); a DELETE carries its own revision."""
    b = kv.new_backend()
    await b.update("rev/a", b"1")
    await b.update("rev/b", b"1")
    await b.update("elsewhere", b"1")  # moves the revision, not the prefix
    tail = EventTail(b, "rev/")
    try:
        await asyncio.wait_for(tail.listed.wait(), 10)
        listed, done = tail.events[:-1], tail.events[-1]
        assert done.type is KVEventType.LIST_DONE
        assert [e.key for e in listed] == ["rev/a", "rev/b"]
        assert 0 < listed[0].revision < listed[1].revision < done.revision
        await b.delete("rev/a")
        await eventually(lambda: len(tail.events) == 4)
        assert tail.events[-1].type is KVEventType.DELETE
        assert tail.events[-1].revision == done.revision + 1
    finally:
        await tail.close()
