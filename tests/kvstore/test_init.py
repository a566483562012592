"""The kvstore package's small helpers: connection URLs, KVPair, observer calls, errors."""

from __future__ import annotations

import pytest

from kubemirror import errors, kvstore
from kubemirror.kvstore import connection, etcd, key, memory

from .conftest import Recorder


async def test_connect_by_url() -> None:
    async with connection.connect("memory://") as m:
        assert isinstance(m, memory.MemoryBackend)
        assert m.server is memory.default_server()
    async with connection.connect("etcd://127.0.0.1:1", lease_ttl=3) as e:
        assert isinstance(e, etcd.EtcdBackend)
        assert (e.endpoint, e.lease_ttl) == ("127.0.0.1:1", 3)
    with pytest.raises(errors.ConfigError) as info:
        connection.connect("redis://x:1")
    assert info.value.field == "url"


async def test_list_and_watch_prefix_helpers_on_the_embedded_store() -> None:
    async with connection.connect("memory://") as b:
        await b.update("cli-test/a", b"1")
        assert await connection.list_prefix("memory://", "cli-test/") == {"cli-test/a": b"1"}
        stream = connection.watch_prefix("memory://", "cli-test/")
        first = await anext(stream)
        assert (first.type, first.key) == (kvstore.KVEventType.CREATE, "cli-test/a")
        assert (await anext(stream)).type is kvstore.KVEventType.LIST_DONE
        await b.update("cli-test/b", b"2")
        change = await anext(stream)
        assert (change.type, change.key, change.value) == (
            kvstore.KVEventType.CREATE, "cli-test/b", b"2",
        )
        await stream.aclose()
        await b.delete("cli-test/a")
        await b.delete("cli-test/b")


def test_kv_pair_is_a_local_key() -> None:
    made = key.kv_pair_creator()
    made.unmarshal("name", b"value")
    assert isinstance(made, key.LocalKey)
    assert isinstance(made, key.KVPair)
    copy = made.deep_key_copy()
    assert copy == made
    assert copy is not made
    assert (made.get_key_name(), made.marshal()) == ("name", b"value")


async def test_notify_awaits_coroutines_and_logs_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    assert await key.notify_update(rec, key.KVPair("a", b"1"))
    assert await key.notify_delete(rec, key.KVPair("a"))
    assert rec.events == [("update", "a", b"1"), ("delete", "a", b"")]
    assert await key.notify_update(None, key.KVPair("a"))

    class Broken:
        async def on_update(self, k: key.Key) -> None:
            raise RuntimeError("boom")

        def on_delete(self, k: key.NamedKey) -> None:
            raise RuntimeError("boom")

    assert not await key.notify_update(Broken(), key.KVPair("x"), "ctx")
    assert not await key.notify_delete(Broken(), key.KVPair("y"))
    assert "observer on_update failed for key 'x' (ctx)" in caplog.text
    assert "observer on_delete failed for key 'y'" in caplog.text


def test_new_errors_carry_their_culprit() -> None:
    err = errors.KVStoreUnavailableError("update", "a/b", ConnectionError("refused"))
    assert (err.operation, err.key) == ("update", "a/b")
    assert "refused" in str(err)
    assert isinstance(err, errors.KVStoreError)
    closed = errors.KVStoreClosedError("backend x")
    assert isinstance(closed, errors.KVStoreStateError)
    assert str(closed) == "backend x is closed"
