"""WorkqueueSyncStore on both backends, with injected write failures where needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import memory, sync_store, workqueue
from kubemirror.kvstore.key import KVPair

from .conftest import Harness, eventually


def fast_retry() -> workqueue.ExponentialFailureRateLimiter:
    return workqueue.ExponentialFailureRateLimiter(0.001, 0.01)


class FaultyBackend:
    """Wraps a real backend to inject write failures on demand.

    Fault injection a real server cannot produce deterministically: the first
    ``fail[key]`` writes of a key raise ``KVStoreUnavailableError``; with
    ``apply_before_failing`` the write is applied first, i.e. its outcome was
    "unknown" to the caller. It also records every write and checks that no key is
    written by two callers at once.
    """

    def __init__(self, inner: backend_mod.Backend, *, yield_in_writes: bool = False) -> None:
        self.inner = inner
        self.fail: dict[str, int] = {}
        self.apply_before_failing = False
        self.writes: list[tuple[str, str]] = []
        self.active: set[str] = set()
        self.overlaps = 0
        self._yield = yield_in_writes

    @property
    def lease_id(self) -> int | None:
        return self.inner.lease_id

    async def _write(self, op: str, key: str, value: bytes, lease: bool) -> None:
        if key in self.active:
            self.overlaps += 1
        self.active.add(key)
        try:
            if self._yield:
                await asyncio.sleep(0)
            if self.fail.get(key, 0) > 0:
                self.fail[key] -= 1
                if self.apply_before_failing:
                    await self._apply(op, key, value, lease)
                raise errors.KVStoreUnavailableError(op, key)
            await self._apply(op, key, value, lease)
            self.writes.append((op, key))
        finally:
            self.active.discard(key)

    async def _apply(self, op: str, key: str, value: bytes, lease: bool) -> None:
        if op == "update":
            await self.inner.update(key, value, lease)
        else:
            await self.inner.delete(key)

    async def update(self, key: str, value: bytes, lease: bool = False) -> None:
        await self._write("update", key, value, lease)

    async def update_if_different(self, key: str, value: bytes, lease: bool = False) -> bool:
        return await self.inner.update_if_different(key, value, lease)

    async def update_many(self, writes: Mapping[str, bytes | None], lease: bool = False) -> None:
        """One batch: fails as a whole if any of its keys is set to fail."""
        keys = list(writes)
        self.overlaps += sum(1 for key in keys if key in self.active)
        self.active.update(keys)
        try:
            if self._yield:
                await asyncio.sleep(0)
            failing = [key for key in keys if self.fail.get(key, 0) > 0]
            for key in failing:
                self.fail[key] -= 1
            if failing and not self.apply_before_failing:
                raise errors.KVStoreUnavailableError("update_many", failing[0])
            await self.inner.update_many(writes, lease)
            if failing:
                raise errors.KVStoreUnavailableError("update_many", failing[0])
            self.writes.extend(("delete" if v is None else "update", k) for k, v in writes.items())
        finally:
            self.active.difference_update(keys)

    async def delete(self, key: str) -> bool:
        await self._write("delete", key, b"", False)
        return True

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def list_prefix(self, prefix: str) -> dict[str, bytes]:
        return await self.inner.list_prefix(prefix)

    def list_and_watch(self, prefix: str) -> AsyncGenerator[backend_mod.KVEvent, None]:
        return self.inner.list_and_watch(prefix)

    def register_lease_expired_observer(
        self, prefix: str, observer: backend_mod.LeaseExpiredObserver | None
    ) -> None:
        self.inner.register_lease_expired_observer(prefix, observer)

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> FaultyBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def pair(name: str, value: str) -> KVPair:
    return KVPair(name, value.encode())


async def converged(b: backend_mod.Backend, prefix: str, expected: dict[str, bytes]) -> None:
    await eventually(
        lambda: _equal(b, prefix, expected), message=lambda: f"backend != {expected!r}"
    )


async def _equal(b: backend_mod.Backend, prefix: str, expected: dict[str, bytes]) -> bool:
    return await b.list_prefix(prefix + "/") == expected


@pytest.mark.parametrize("batch_size", [1, 16], ids=["single", "batched"])
async def test_upserts_and_deletes_land(kv: Harness, batch_size: int) -> None:
    b = kv.new_backend()
    async with sync_store.WorkqueueSyncStore(
        "c1", b, "nodes/v1", workers=2, batch_size=batch_size
    ) as store:
        for i in range(20):
            store.upsert_key(pair(f"n{i}", f"v{i}"))
        for i in range(5):
            store.delete_key(pair(f"n{i}", ""))
        expected = {f"nodes/v1/n{i}": f"v{i}".encode() for i in range(5, 20)}
        await converged(kv.admin, "nodes/v1", expected)
        await eventually(lambda: store.pending_operations() == 0)
        assert store.desired_state() == {f"n{i}": f"v{i}".encode() for i in range(5, 20)}


async def test_latest_operation_per_key_wins_while_queued(kv: Harness) -> None:
    b = FaultyBackend(kv.new_backend())
    store = sync_store.WorkqueueSyncStore("c1", b, "q")
    store.upsert_key(pair("a", "1"))
    store.upsert_key(pair("a", "2"))
    store.delete_key(pair("a", ""))
    store.upsert_key(pair("a", "3"))
    store.upsert_key(pair("b", "1"))
    store.delete_key(pair("b", ""))
    store.delete_key(pair("never", ""))  # unknown: ignored
    assert store.queue_length() == 2
    async with store:
        await converged(kv.admin, "q", {"q/a": b"3"})
        await eventually(lambda: store.pending_operations() == 0)
    assert b.writes == [("update", "q/a"), ("delete", "q/b")]


async def test_unchanged_upsert_is_not_written_again(kv: Harness) -> None:
    b = FaultyBackend(kv.new_backend())
    async with sync_store.WorkqueueSyncStore("c1", b, "u") as store:
        store.upsert_key(pair("a", "1"))
        await eventually(lambda: len(b.writes) == 1)
        store.upsert_key(pair("a", "1"))
        assert store.pending_operations() == 0
        store.upsert_key(pair("a", "2"))
        await eventually(lambda: len(b.writes) == 2)
    assert await kv.admin.get("u/a") == b"2"


@pytest.mark.parametrize("batch_size", [1, 8], ids=["single", "batched"])
async def test_failed_writes_are_retried_idempotently(kv: Harness, batch_size: int) -> None:
    b = FaultyBackend(kv.new_backend())
    b.apply_before_failing = True  # the server applied it, the client saw an error
    b.fail = {"r/a": 3, "r/b": 2}
    limiter = fast_retry()
    async with sync_store.WorkqueueSyncStore(
        "c1", b, "r", rate_limiter=limiter, batch_size=batch_size
    ) as store:
        store.upsert_key(pair("a", "1"))
        store.upsert_key(pair("b", "1"))
        await eventually(lambda: store.pending_operations() == 0)
        store.delete_key(pair("b", ""))
        b.fail["r/b"] = 1
        await converged(kv.admin, "r", {"r/a": b"1"})
    assert b.fail == {"r/a": 0, "r/b": 0}
    assert limiter.num_requeues("a") == 0  # forgotten after success


async def test_synced_canary_waits_for_earlier_upserts(kv: Harness) -> None:
    b = FaultyBackend(kv.new_backend())
    b.fail = {"s/k1": 3}
    calls: list[str] = []

    async def async_callback() -> None:
        calls.append("async")

    store = sync_store.WorkqueueSyncStore(
        "c1", b, "s", workers=3, rate_limiter=fast_retry(), batch_size=2
    )
    assert store.synced_key == "kubemirror/synced/c1/s"
    async with store:
        for i in range(5):
            store.upsert_key(pair(f"k{i}", "v"))
        store.synced(lambda: calls.append("sync"), async_callback)
        store.synced(lambda: calls.append("second call: ignored"))
        store.upsert_key(pair("late", "v"))  # after synced(): not waited for
        await eventually(lambda: calls == ["sync", "async"])
        assert store.is_synced
        canary_at = b.writes.index(("update", "kubemirror/synced/c1/s"))  # the canary lands last
        for i in range(5):
            assert b.writes.index(("update", f"s/k{i}")) < canary_at
        stamp = await kv.admin.get("kubemirror/synced/c1/s")
        assert stamp is not None
        assert stamp.startswith(b"20")
    assert calls == ["sync", "async"]


async def test_synced_with_nothing_pending_writes_at_once(kv: Harness) -> None:
    b = kv.new_backend()
    done = asyncio.Event()
    store = sync_store.WorkqueueSyncStore("c2", b, "e", synced_key_override="custom/name")
    async with store:
        store.synced(done.set)
        await asyncio.wait_for(done.wait(), 10)
    assert list(await kv.admin.list_prefix("kubemirror/synced/")) == [
        "kubemirror/synced/c2/custom/name"
    ]


async def test_keys_use_the_lease_and_return_after_it_expires(kv: Harness) -> None:
    b = kv.new_backend(lease_ttl=30.0)
    async with sync_store.WorkqueueSyncStore("c1", b, "l", rate_limiter=fast_retry()) as store:
        store.upsert_key(pair("a", "1"))
        store.upsert_key(pair("b", "2"))
        done = asyncio.Event()
        store.synced(done.set)
        await asyncio.wait_for(done.wait(), 10)
        first = b.lease_id
        assert first is not None
        await kv.revoke_lease(first)
        store.upsert_key(pair("c", "3"))  # this leased write discovers the expiry
        await converged(kv.admin, "l", {"l/a": b"1", "l/b": b"2", "l/c": b"3"})
        assert b.lease_id not in (None, first)
        await eventually(lambda: _exists(kv.admin, "kubemirror/synced/c1/l"))


async def _exists(b: backend_mod.Backend, key: str) -> bool:
    return await b.get(key) is not None


async def test_without_lease_keys_are_plain(kv: Harness) -> None:
    b = kv.new_backend()
    async with sync_store.WorkqueueSyncStore("c1", b, "p", without_lease=True) as store:
        store.upsert_key(pair("a", "1"))
        store.synced()
        await eventually(lambda: store.is_synced)
    assert b.lease_id is None
    assert await kv.admin.get("p/a") == b"1"


async def test_a_key_is_never_written_by_two_workers_at_once(kv: Harness) -> None:
    b = FaultyBackend(kv.new_backend(), yield_in_writes=True)
    async with sync_store.WorkqueueSyncStore("c1", b, "w", workers=4) as store:
        for round_ in range(30):
            for name in "abc":
                store.upsert_key(pair(name, f"{round_}"))
            await asyncio.sleep(0)
        await converged(kv.admin, "w", {f"w/{n}": b"29" for n in "abc"})
    assert b.overlaps == 0


async def test_run_until_stop_event(kv: Harness) -> None:
    b = kv.new_backend()
    store = sync_store.WorkqueueSyncStore("c1", b, "run")
    stop = asyncio.Event()
    runner = asyncio.create_task(store.run(stop))
    store.upsert_key(pair("a", "1"))
    await converged(kv.admin, "run", {"run/a": b"1"})
    stop.set()
    await asyncio.wait_for(runner, 5)
    store.upsert_key(pair("b", "1"))  # accepted, never written: the store stopped
    with pytest.raises(errors.KVStoreClosedError):
        store.start()


def test_invalid_arguments_name_the_field() -> None:
    b = memory.MemoryBackend()
    with pytest.raises(errors.ConfigError) as info:
        sync_store.WorkqueueSyncStore("c", b, "/")
    assert info.value.field == "prefix"
    with pytest.raises(errors.ConfigError) as info:
        sync_store.WorkqueueSyncStore("c", b, "p", workers=0)
    assert info.value.field == "workers"
    with pytest.raises(errors.ConfigError) as info:
        sync_store.WorkqueueSyncStore("c", b, "p", batch_size=129)
    assert info.value.field == "batch_size"


def test_marshal_failure_is_a_kvstore_error() -> None:
    class Broken(KVPair):
        def marshal(self) -> bytes:
            raise ValueError("cannot encode")

    store = sync_store.WorkqueueSyncStore("c", memory.MemoryBackend(), "p")
    with pytest.raises(errors.KVStoreError, match="cannot marshal key 'x'"):
        store.upsert_key(Broken("x", b""))


OPS = st.lists(
    st.tuples(
        st.sampled_from(["k0", "k1", "k2", "k3"]),
        st.one_of(st.none(), st.binary(max_size=3)),  # None: delete
        st.integers(0, 2),  # injected failures for this write
        st.booleans(),  # let the workers run before the next operation
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, workers=st.integers(1, 3), batch_size=st.sampled_from([1, 2, 128]))
def test_final_state_is_the_last_operation_per_key(
    ops: list[tuple[str, bytes | None, int, bool]], workers: int, batch_size: int
) -> None:
    """Any interleaving of upserts, deletes and failing writes converges to the last op."""

    async def scenario() -> None:
        server = memory.MemoryKVServer()
        b = FaultyBackend(memory.MemoryBackend(server), yield_in_writes=True)
        b.apply_before_failing = True
        limiter = workqueue.ExponentialFailureRateLimiter(0.0005, 0.002)
        expected: dict[str, bytes] = {}
        async with sync_store.WorkqueueSyncStore(
            "c", b, "h", workers=workers, rate_limiter=limiter, batch_size=batch_size
        ) as store:
            for name, value, failures, let_run in ops:
                b.fail[f"h/{name}"] = b.fail.get(f"h/{name}", 0) + failures
                if value is None:
                    store.delete_key(KVPair(name))
                    expected.pop(name, None)
                else:
                    store.upsert_key(KVPair(name, value))
                    expected[name] = value
                if let_run:
                    await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                if not store.pending_operations() or loop.time() > deadline:
                    break
                await asyncio.sleep(0.001)
            assert store.pending_operations() == 0
        assert b.overlaps == 0
        stored = {key: value for key, value, _ in server.range("h/")[0]}
        assert stored == {f"h/{k}": v for k, v in expected.items()}
        await b.close()

    asyncio.run(scenario())
