"""``kubemirror kv`` on the embedded demo keyspace and on a real etcd server."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import typer

from kubemirror import errors, kvstore
from kubemirror.cli.app import app
from kubemirror.cli.kv import DEMO_PREFIX, EtcdOptions, render_value
from kubemirror.kvstore import EtcdClientConfig, etcd_cluster, etcd_server
from tests.certs import make_pki
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


@pytest.mark.etcd
async def test_kv_on_a_tls_cluster_from_a_cilium_config_file(tmp_path: Path) -> None:
    """Three TLS members, one of them killed: the CLI reads the config file and fails over."""
    binary = _etcd_binary()
    pki = make_pki(tmp_path)
    tls = etcd_server.EtcdServerTLS(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key))
    async with etcd_cluster.EtcdCluster(3, tmp_path / "cluster", binary=binary,
                                        tls=tls) as cluster:
        config_file = tmp_path / "etcd.config"
        config_file.write_text(
            "endpoints:\n" + "".join(f"- {url}\n" for url in cluster.endpoints)
            + f"trusted-ca-file: {pki.ca_cert}\ncert-file: {pki.client_cert}\n"
            f"key-file: {pki.client_key}\n"
        )
        config = EtcdClientConfig.from_file(config_file)
        async with kvstore.connect(config) as backend:
            await backend.update("app/a", b"1")
        cluster.kill(cluster.members[0])
        for flags in (
            ["--etcd-config", str(config_file)],
            ["--etcd", ",".join(cluster.endpoints), "--cacert", str(pki.ca_cert),
             "--cert", str(pki.client_cert), "--key", str(pki.client_key)],
        ):
            listed = await run_cli("kv", "list", "app/", *flags)
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.splitlines() == ["app/a  1"]
        no_cert = await run_cli("kv", "get", "app/a", "--etcd", cluster.endpoints[1],
                                "--cacert", str(pki.ca_cert))
        assert no_cert.returncode == 1
        assert len(no_cert.stderr.strip().splitlines()) == 1, no_cert.stderr


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (EtcdOptions(), None),
        (EtcdOptions("a:1,b:2", user="root:pw"),
         EtcdClientConfig.from_endpoints("a:1,b:2", username="root", password="pw")),
        (EtcdOptions("a:1", user="root", password="pw"),
         EtcdClientConfig.from_endpoints("a:1", username="root", password="pw")),
        (EtcdOptions("https://a:1", cacert=Path("ca.pem")),
         EtcdClientConfig.from_endpoints("https://a:1", ca_file="ca.pem")),
    ],
    ids=["demo", "user-colon-password", "user-and-password", "cacert"],
)
def test_etcd_options(options: EtcdOptions, expected: EtcdClientConfig | None) -> None:
    assert options.client_config() == expected


def test_etcd_options_flags_override_the_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "etcd.config"
    config_file.write_text("endpoints: [https://a:1]\ntrusted-ca-file: file-ca.pem\n")
    config = EtcdOptions("b:2", config_file=config_file, cacert=Path("flag-ca.pem")).client_config()
    assert config == EtcdClientConfig.from_endpoints("https://b:2", ca_file="flag-ca.pem")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (EtcdOptions(cacert=Path("ca.pem")), "etcd"),
        (EtcdOptions("a:1", user="root"), "user"),
        (EtcdOptions("a:1,nope"), "endpoints[1]"),
    ],
    ids=["tls-without-etcd", "user-without-password", "bad-endpoint"],
)
def test_etcd_options_errors_name_the_flag(options: EtcdOptions, field: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        options.client_config()
    assert caught.value.field == field


ETCD_FLAGS = {"--etcd", "--etcd-config", "--cacert", "--cert", "--key", "--user", "--password"}


@pytest.mark.parametrize("command", ["list", "get", "watch"])
def test_every_kv_command_takes_the_etcd_client_flags(command: str) -> None:
    kv = typer.main.get_group(app).commands["kv"]
    assert isinstance(kv, typer.core.TyperGroup)
    options = {name for param in kv.commands[command].params for name in param.opts}
    assert options >= ETCD_FLAGS


@pytest.mark.parametrize(
    "args", [["list", "app/"], ["get", "app/a"], ["watch", "app/"]], ids=["list", "get", "watch"]
)
async def test_kv_commands_turn_the_flags_into_etcd_options(args: list[str]) -> None:
    # --user without a password fails in EtcdOptions.client_config, before any connection:
    # the flag went through the shared declaration to the options of each command.
    result = await run_cli("kv", *args, "--etcd", "127.0.0.1:1", "--user", "root")
    assert result.returncode == 1
    assert "needs a password" in result.stderr, result.stderr
