"""EtcdBackend against a real etcd that is killed (-9), restarted and compacted."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aetcd
import pytest

from kubemirror import errors
from kubemirror.kvstore import etcd, etcd_server
from kubemirror.kvstore.backend import KVEventType
from kubemirror.kvstore.etcd_config import EtcdClientConfig

from .conftest import eventually
from .test_backend import EventTail

pytestmark = pytest.mark.etcd


def test_parse_endpoint() -> None:
    assert etcd._parse_endpoint("etcd://127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert etcd._parse_endpoint("http://localhost:1/") == ("localhost", 1)
    with pytest.raises(errors.ConfigError, match="endpoint"):
        etcd._parse_endpoint("no-port")


def test_prefix_end() -> None:
    assert etcd._prefix_end(b"a/") == b"a0"
    assert etcd._prefix_end(b"a\xff") == b"b"
    assert etcd._prefix_end(b"\xff") == b"\0"


async def test_watch_resumes_after_kill_without_gaps(
    etcd_server_fn: etcd_server.EtcdServer,
) -> None:
    """Changes made right after a restart reach a watch that was cut by kill -9."""
    server = etcd_server_fn
    async with (
        etcd.EtcdBackend(server.endpoint) as watcher,
        etcd.EtcdBackend(server.endpoint) as writer,
    ):
        for i in range(5):
            await writer.update(f"r/{i}", b"0")
        tail = EventTail(watcher, "r/")
        try:
            await asyncio.wait_for(tail.listed.wait(), 10)
            await writer.update("r/0", b"1")
            await eventually(lambda: len(tail.changes()) == 6)
            server.kill()
            await server.arestart()
            await writer.delete("r/1")
            await writer.update("r/2", b"2")
            await writer.update("r/9", b"9")
            await eventually(lambda: len(tail.changes()) == 9, message=lambda: str(tail.events))
            assert tail.changes()[6:] == [
                (KVEventType.DELETE, "r/1", b""),
                (KVEventType.MODIFY, "r/2", b"2"),
                (KVEventType.CREATE, "r/9", b"9"),
            ]
        finally:
            await tail.close()


async def test_relist_after_compaction_emits_the_difference(
    etcd_server_fn: etcd_server.EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The watch starts from a compacted revision: a relist yields the missed changes."""
    caplog.set_level(logging.INFO, logger="kubemirror.kvstore")
    server = etcd_server_fn
    async with (
        etcd.EtcdBackend(server.endpoint) as watcher,
        etcd.EtcdBackend(server.endpoint) as writer,
    ):
        await writer.update("c/keep", b"1")
        await writer.update("c/change", b"1")
        await writer.update("c/gone", b"1")
        stream = watcher.list_and_watch("c/")
        seen = [await anext(stream) for _ in range(4)]
        assert seen[-1].type is KVEventType.LIST_DONE
        # The generator is parked after LIST_DONE; its watch is not created yet.
        await writer.update("c/change", b"1.5")  # history would show both changes
        await writer.update("c/change", b"2")
        await writer.update("c/tmp", b"1")  # history would show a create and a delete
        await writer.delete("c/tmp")
        await writer.delete("c/gone")
        await writer.update("c/new", b"1")
        async with aetcd.Client(host=server.host, port=server.client_port) as admin:
            head = await admin.get(b"c/new")
            await admin.compact(head.mod_revision, physical=True)
        after = [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
        assert sorted((e.type.value, e.key) for e in after) == [
            ("create", "c/new"),
            ("delete", "c/gone"),
            ("modify", "c/change"),
        ]
        await writer.update("c/keep", b"2")
        nxt = await asyncio.wait_for(anext(stream), 10)
        assert (nxt.type, nxt.key, nxt.value) == (KVEventType.MODIFY, "c/keep", b"2")
        assert "compacted; relisting" in caplog.text
        await stream.aclose()


async def test_write_during_outage_lands_after_restart(
    etcd_server_fn: etcd_server.EtcdServer,
) -> None:
    server = etcd_server_fn
    async with etcd.EtcdBackend(server.endpoint, retry_timeout=20.0) as b:
        await b.update("o/a", b"before", lease=True)
        server.kill()
        write = asyncio.create_task(b.update("o/a", b"during", lease=True))
        await asyncio.sleep(0.3)  # let the write hit the dead server and start retrying
        assert not write.done()
        await server.arestart()
        await asyncio.wait_for(write, 20)
        assert await b.get("o/a") == b"during"


async def test_outage_longer_than_retry_timeout_raises_unavailable(
    etcd_server_fn: etcd_server.EtcdServer,
) -> None:
    server = etcd_server_fn
    async with etcd.EtcdBackend(server.endpoint, retry_timeout=0.3) as b:
        await b.update("u/a", b"1")
        server.kill()
        with pytest.raises(errors.KVStoreUnavailableError) as info:
            await b.update("u/a", b"2")
        assert (info.value.operation, info.value.key) == ("update", "u/a")
        with pytest.raises(errors.KVStoreUnavailableError):
            await b.list_prefix("u/")


async def test_lease_survives_a_server_restart(etcd_server_fn: etcd_server.EtcdServer) -> None:
    """etcd restores leases on restart and the keep-alive resumes: the key stays."""
    server = etcd_server_fn
    async with etcd.EtcdBackend(server.endpoint, lease_ttl=2.0) as b:
        await b.update("l/a", b"1", lease=True)
        first = b.lease_id
        server.kill()
        await server.arestart()
        await asyncio.sleep(3.0)  # longer than the TTL: only the keep-alive can hold it
        assert await b.get("l/a") == b"1"
        assert b.lease_id == first


async def _enable_auth(server: etcd_server.EtcdServer, password: str) -> None:
    """etcdctl's ``user add root``, ``user grant-role root root``, ``auth enable``."""
    import grpc
    from aetcd import rpc

    async with grpc.aio.insecure_channel(server.endpoint) as channel:
        auth = rpc.AuthStub(channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password))
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await auth.AuthEnable(rpc.AuthEnableRequest())


async def test_username_and_password_auth(etcd_server_fn: etcd_server.EtcdServer) -> None:
    server = etcd_server_fn
    await _enable_auth(server, "s3cret")
    good = EtcdClientConfig.from_endpoints(server.endpoint, username="root", password="s3cret")
    async with etcd.EtcdBackend(good, lease_ttl=2.0) as session:
        tail = EventTail(session, "auth/")
        try:
            await asyncio.wait_for(tail.listed.wait(), 10)
            await session.update("auth/a", b"1", lease=True)
            assert await session.get("auth/a") == b"1"
            await eventually(lambda: tail.changes() == [(KVEventType.CREATE, "auth/a", b"1")])
        finally:
            await tail.close()
    for config in (
        EtcdClientConfig.from_endpoints(server.endpoint, username="root", password="wrong"),
        EtcdClientConfig.from_endpoints(server.endpoint),
    ):
        async with etcd.EtcdBackend(config, retry_timeout=0.5) as session:
            with pytest.raises(errors.KVStoreError) as caught:
                await session.get("auth/a")
            assert not isinstance(caught.value, errors.KVStoreUnavailableError)


async def test_an_expired_auth_token_is_renewed(tmp_path: Path) -> None:
    """etcd forgets a simple token after --auth-token-ttl seconds without use (here 1 s):
    the session authenticates again on a new connection instead of failing for good."""
    binary = etcd_server.find_etcd_binary()
    assert binary is not None
    server = etcd_server.EtcdServer(tmp_path / "etcd", binary=binary,
                                    extra_args=("--auth-token-ttl", "1"))
    await server.astart()
    try:
        await _enable_auth(server, "pw")
        config = EtcdClientConfig.from_endpoints(server.endpoint, username="root", password="pw")
        async with etcd.EtcdBackend(config) as session:
            await session.update("token/a", b"1")
            await asyncio.sleep(3)  # etcd's own clock: the token must go unused past its TTL
            assert await session.get("token/a") == b"1"
            assert session.failovers == 1
    finally:
        await asyncio.to_thread(server.cleanup)


class _TxnRecorder:
    """Records the transactions a backend sends (the real etcd still serves them) and,
    once, drops the reply of one: the fault a real member cannot produce on demand."""

    def __init__(self, backend: etcd.EtcdBackend) -> None:
        self.sent: list[Any] = []
        self.lose_next_reply = False
        self._send = backend._txn_rpc

    async def __call__(self, request: Any) -> Any:
        self.sent.append(request)
        reply = await self._send(request)
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise TimeoutError("reply lost (injected)")
        return reply


async def _mod_revisions(admin: aetcd.Client, *keys: str) -> list[int | None]:
    got = [await admin.get(k.encode()) for k in keys]
    return [None if kv is None else int(kv.mod_revision) for kv in got]


async def test_update_many_is_fenced_against_a_late_copy(
    shared_etcd: etcd_server.EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of an update_many batch that arrives after a newer write is a no-op; the
    batch itself still lands over another writer's value (last writer wins, atomically)."""
    server = shared_etcd
    async with (
        aetcd.Client(host=server.host, port=server.client_port) as admin,
        etcd.EtcdBackend(server.endpoint) as writer,
        etcd.EtcdBackend(server.endpoint) as other,
    ):
        await admin.delete_range(b"\0", b"\0")
        recorder = _TxnRecorder(writer)
        monkeypatch.setattr(writer, "_txn_rpc", recorder)
        await writer.update("f/gone", b"0")
        await writer.update_many({"f/a": b"1", "f/b": b"1", "f/gone": None}, lease=True)
        late = recorder.sent[-1]
        a, b = await _mod_revisions(admin, "f/a", "f/b")
        assert a == b is not None  # one transaction
        assert await writer.get("f/gone") is None

        # Another session writes f/a (its own fence is older: it retries above it).
        await other.update_many({"f/a": b"2"})
        assert await writer.get("f/a") == b"2"

        # The batch's request, delivered late by a member: the fence rejects it.
        await admin.connect()
        reply = await admin.kvstub.Txn(late, metadata=admin.metadata)
        assert not reply.succeeded
        assert await other.list_prefix("f/") == {"f/a": b"2", "f/b": b"1"}

        # The first session writes again without having seen f/a=2: it wins, atomically.
        await writer.update_many({"f/a": b"3", "f/b": b"3"}, lease=True)
        a, b = await _mod_revisions(admin, "f/a", "f/b")
        assert a == b
        assert await other.list_prefix("f/") == {"f/a": b"3", "f/b": b"3"}


async def test_update_many_retried_after_a_lost_reply_writes_once(
    shared_etcd: etcd_server.EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that landed but whose reply was lost is found in place by the retry,
    which writes nothing more (no second revision, no duplicate watch event)."""
    server = shared_etcd
    async with (
        aetcd.Client(host=server.host, port=server.client_port) as admin,
        etcd.EtcdBackend(server.endpoint) as writer,
    ):
        await admin.delete_range(b"\0", b"\0")
        await writer.update("g/old", b"0")
        recorder = _TxnRecorder(writer)
        monkeypatch.setattr(writer, "_txn_rpc", recorder)
        recorder.lose_next_reply = True
        await writer.update_many({"g/a": b"1", "g/b": b"1", "g/old": None}, lease=True)
        assert len(recorder.sent) == 2  # the lost one and its retry
        assert recorder.sent[0] == recorder.sent[1]
        a, b = await _mod_revisions(admin, "g/a", "g/b")
        status = await admin.kvstub.Range(
            aetcd.rpc.RangeRequest(key=b"g/", range_end=b"g0"), metadata=admin.metadata
        )
        assert a == b == int(status.header.revision)  # nothing written after the batch
        assert await writer.list_prefix("g/") == {"g/a": b"1", "g/b": b"1"}


@pytest.mark.parametrize("reply", [
    "etcdserver: request timed out", "etcdserver: leader changed",
    "etcdserver: too many requests",
], ids=["request-timed-out", "leader-changed", "too-many-requests"])
async def test_a_member_saying_the_cluster_is_slow_is_retried_not_left(
    shared_etcd: etcd_server.EtcdServer, reply: str
) -> None:
    """etcd answers these (UNAVAILABLE) for a proposal the cluster did not commit in
    time, dropped for a new leader, or when applying lags: the member is alive, so the
    write is retried there (fenced, so a landed first attempt is not written twice)
    rather than moving the session (a new connection, every watch resumed). A real
    etcd gives them only under overload or elections, so the first two attempts of
    a real write are replaced by that reply here (fault injection)."""
    import grpc

    endpoint = shared_etcd.endpoint
    config = EtcdClientConfig.from_endpoints([endpoint, f"localhost:{shared_etcd.client_port}"])
    session = etcd.EtcdBackend(config, retry_timeout=10.0)
    real_txn = session._txn_rpc
    replies = 0

    async def slow_cluster(request: Any) -> Any:
        nonlocal replies
        if replies < 2:
            replies += 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), details=reply)
        return await real_txn(request)

    session._txn_rpc = slow_cluster  # type: ignore[method-assign]
    try:
        await session.update("busy-cluster/k", b"v")
        assert replies == 2
        assert session.failovers == 0
        assert await session.get("busy-cluster/k") == b"v"
        # a member without a leader (partitioned, or an election) is still left
        replies = 0
        reply = "etcdserver: no leader"
        await session.update("busy-cluster/k", b"w")
        assert session.failovers == 2  # one move per such reply
    finally:
        await session.close()
