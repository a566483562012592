"""``kubemirror kv`` on the embedded demo keyspace and on a real etcd server."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kubemirror import kvstore
from kubemirror.cli.kv import DEMO_PREFIX, render_value
from kubemirror.kvstore import etcd_server
from tests.cli.conftest import Spawn, run_cli


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (b"plain", "plain"),
        (b'{ "a" : [1, 2] }', '{"a":[1,2]}'),
        (b"\xff\x00", "base64:/wA="),
        (b"line\nbreak", "base64:bGluZQpicmVhaw=="),
    ],
    ids=["text", "json", "binary", "control"],
)
def test_render_value(value: bytes, shown: str) -> None:
    assert render_value(value) == shown


async def test_demo_keyspace_list_get_and_watch() -> None:
    listed = await run_cli("kv", "list", f"{DEMO_PREFIX}/nodes")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 6
    key, value = lines[0].split("  ", 1)
    assert key == f"{DEMO_PREFIX}/nodes/v1/default/node-a-01"
    assert json.loads(value)["Name"] == "node-a-01"

    got = await run_cli("kv", "get", f"{DEMO_PREFIX}/identities/v1/id/10000", "-o", "json")
    assert json.loads(got.stdout)["value"].startswith("k8s:app=frontend;")

    missing = await run_cli("kv", "get", "no/such/key")
    assert missing.returncode == 1
    assert "key 'no/such/key' does not exist" in missing.stderr

    watched = await run_cli("kv", "watch", f"{DEMO_PREFIX}/ip", "-o", "json", "--duration", "1.5")
    assert watched.returncode == 0, watched.stderr
    records = [json.loads(line) for line in watched.stdout.splitlines()]
    done = next(i for i, r in enumerate(records) if r["type"] == "list-done")
    assert records[done]["keys"] == done
    assert done > 0
    changes = records[done + 1 :]
    assert changes, "the demo keyspace keeps changing"
    assert {r["type"] for r in changes} <= {"create", "modify", "delete"}


def _etcd_binary() -> str:
    binary = etcd_server.find_etcd_binary()
    if binary is None:
        if os.environ.get("KUBEMIRROR_REQUIRE_ETCD") == "1":
            pytest.fail("KUBEMIRROR_REQUIRE_ETCD=1 but etcd is not installed")
        pytest.skip("etcd binary not found (run `kubemirror envtest setup`, which builds it)")
    return binary


@pytest_asyncio.fixture
async def etcd_url(tmp_path: os.PathLike[str]) -> AsyncIterator[str]:
    binary = _etcd_binary()
    async with etcd_server.EtcdServer(os.path.join(tmp_path, "etcd"), binary=binary) as server:
        yield server.client_url


@pytest.mark.etcd
async def test_kv_on_etcd(etcd_url: str, spawn: Spawn) -> None:
    async with kvstore.connect(etcd_url) as backend:
        await backend.update("app/a", b"1")
        await backend.update("app/b", b'{"x": 1}')
        await backend.update("other/c", b"3")
        listed = await run_cli("kv", "list", "app/", "--etcd", etcd_url)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines() == ["app/a  1", 'app/b  {"x":1}']
        got = await run_cli("kv", "get", "app/a", "--etcd", etcd_url)
        assert got.stdout == "1\n"

        running = await spawn("kv", "watch", "app/", "--etcd", etcd_url, "-o", "json")
        done = json.loads(await running.line_matching(lambda line: "list-done" in line))
        assert done["keys"] == 2
        await backend.update("app/c", b"new")
        await backend.delete("app/a")
        created = json.loads(await running.line_matching(lambda line: "app/c" in line))
        deleted = json.loads(await running.line_matching(lambda line: "app/a" in line))
    assert (created["type"], created["value"]) == ("create", "new")
    assert deleted["type"] == "delete"
    assert deleted["revision"] >= created["revision"] > 0  # the mirror's revision at the time
    running.proc.terminate()
    assert (await running.finish()).returncode == 0


@pytest.mark.etcd
async def test_kv_unreachable_etcd_is_one_line() -> None:
    _etcd_binary()
    port = etcd_server.free_port()
    result = await run_cli("kv", "list", "x", "--etcd", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot reach etcd at http://127.0.0.1:{port}" in lines[0]
    assert "--etcd" in lines[0]
