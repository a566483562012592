"""``kubemirror serve`` for real: a member cluster (the project's API server) mirrored behind
TLS and bearer tokens, read by kubectl and plain HTTP; unsafe listeners refused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import ssl
from pathlib import Path

import aiohttp
import pytest
import yaml

from kubemirror import errors
from kubemirror.cli.serve import sync_readiness
from kubemirror.cli.serve_config import DEFAULT_UNREADY_AFTER, ServeFlags, load_serve_config
from kubemirror.client import ClientConfig, KubeClient
from kubemirror.client.transport import new_connector
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, make_self_signed_cert, seed
from kubemirror.types import GroupVersionResource
from tests.cli.conftest import KUBECTL, Running, Spawn, run_cli, skip_without_kubectl
from tests.faultproxy import FaultProxy

CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")

TOKEN = "s3cret-token"


@pytest.fixture
def member(tmp_path: Path, kube_storage: MemoryStorage, kube_api_server: KubeApiServer) -> str:
    """The member cluster's kubeconfig (context ``kubemirror``), with 5 pods."""
    seed(kube_storage, [make_pod(f"web-{i}", "default", {"app": "web"}) for i in range(5)])
    return kube_api_server.write_kubeconfig(tmp_path / "member")


@pytest.fixture
def tls(tmp_path: Path) -> tuple[str, str, bytes]:
    return make_self_signed_cert(tmp_path)


async def _kubectl(*args: str) -> tuple[int, str]:
    assert KUBECTL is not None, "kubectl is required (KUBEMIRROR_REQUIRE_KUBECTL=1)"
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.kubectl
@skip_without_kubectl
async def test_serve_answers_kubectl_with_a_token_and_refuses_without(
    tmp_path: Path, member: str, tls: tuple[str, str, bytes], spawn: Spawn
) -> None:
    cert, key, ca = tls
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    served = tmp_path / "served"
    running = await spawn(
        "serve", "--cluster", "east=kubemirror", "--cluster", "west=kubemirror",
        "--resource", "pods,deploy", "--kubeconfig", member, "--port", "0",
        "--tls-cert", cert, "--tls-key", key, "--token-file", str(tokens),
        "--write-kubeconfig", str(served),
    )  # fmt: skip
    await running.line_matching(lambda line: "ready: every cluster synced" in line)
    header = "\n".join(running.lines)
    assert "(TLS, bearer tokens, read-only)" in header
    assert "cluster east (context kubemirror): pods, deploy" in header

    code, out = await _kubectl("--kubeconfig", str(served), "get", "pods", "-A", "-o", "wide")
    assert code == 0, out
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    assert len(rows) == 10, "5 pods from each of the 2 clusters"
    assert {row[-1] for row in rows} == {"east", "west"}

    code, out = await _kubectl(
        "--kubeconfig", str(served), "--token", "wrong", "get", "pods", "-A"
    )
    assert code != 0
    assert "Unauthorized" in out

    code, out = await _kubectl("--kubeconfig", str(served), "delete", "pod", "web-0")
    assert code != 0
    assert "read-only" in out

    assert served.stat().st_mode & 0o777 == 0o600, "the kubeconfig holds a token"
    config = yaml.safe_load(served.read_text())
    url = config["clusters"][0]["cluster"]["server"]
    context = ssl.create_default_context(cadata=ca.decode())
    async with aiohttp.ClientSession(connector=new_connector(context)) as http:
        async with http.get(f"{url}/readyz") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 401, "metrics need the token like the API"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"{url}/metrics", headers=headers) as resp:
            metrics = await resp.text()
        async with http.get(f"{url}/clusters/west/api/v1/pods", headers=headers) as resp:
            west = await resp.json()
    assert 'kubemirror_objects{cluster="east",resource="pods.v1"} 5.0' in metrics
    assert 'kubemirror_synced{cluster="west",resource="deployments.v1.apps"} 1.0' in metrics
    assert "kubemirror_ready 1.0" in metrics
    assert len(west["items"]) == 5

    running.proc.terminate()
    result = await running.finish()
    assert result.returncode == 0, result.stderr


async def test_serve_follows_member_changes(
    member: str, kube_storage: MemoryStorage, spawn: Spawn
) -> None:
    """A loopback server without auth: what changes in the member shows up in the mirror."""
    running = await spawn(
        "serve", "--cluster", "east", "--resource", "pods", "--kubeconfig", member, "--port", "0",
        "--no-metrics",
    )  # fmt: skip
    url_line = await running.line_matching(lambda line: line.startswith("kubemirror serve: "))
    url = url_line.split()[2]
    await running.line_matching(lambda line: "ready" in line)
    seed(kube_storage, [make_pod("late", "default")])
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{url}/api/v1/namespaces/default/pods/late") as resp:
                if resp.status == 200:
                    body = json.loads(await resp.text())
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the new pod never reached the mirror")
        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 404, "--no-metrics"
    assert body["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] == "east"
    running.proc.terminate()
    assert (await running.finish()).returncode == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0"),
        (["--token", "t"], "bearer tokens need TLS"),
        (["--cluster", "x=nope"], "cluster x: kubeconfig context 'nope'"),
        (["--cluster", "x", "--resource", "podz"], "cluster x: the cluster at http"),
    ],
    ids=["public-without-tls", "token-without-tls", "unknown-context", "unknown-resource"],
)
async def test_serve_refuses_with_one_line(member: str, args: list[str], expected: str) -> None:
    base = ["serve", "--kubeconfig", member, "--port", "0", "--duration", "1"]
    if "--resource" not in args:
        args = [*args, "--resource", "pods"]
    result = await run_cli(*base, *args)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


async def test_readyz_waits_for_every_cluster() -> None:
    """``/readyz`` answers 503 naming what still syncs, then 200 (no fake: real HTTP)."""
    waiting = ["east/pods.v1"]
    server = KubeApiServer(MemoryStorage(), readiness=sync_readiness(lambda: list(waiting)))
    async with server, aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/readyz") as resp:
            assert resp.status == 503
            assert "east/pods.v1" in await resp.text()
        waiting.clear()
        async with http.get(f"{server.url}/readyz") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
        async with http.get(f"{server.url}/healthz") as resp:
            assert resp.status == 200


# -- platform: unknown clusters, unreachable members, forwarded writes --------------------------


async def _served_url(running: Running) -> str:
    line = await running.line_matching(lambda text: text.startswith("kubemirror serve: "))
    await running.line_matching(lambda text: "ready: every cluster synced" in text)
    return line.split()[2]


async def test_unknown_cluster_names_the_known_ones(member: str, spawn: Spawn) -> None:
    running = await spawn(
        "serve", "--cluster", "east=kubemirror", "--cluster", "west=kubemirror",
        "--resource", "pods", "--kubeconfig", member, "--port", "0", "--no-metrics",
    )  # fmt: skip
    url = await _served_url(running)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/clusters/nope/api/v1/pods") as resp:
            assert resp.status == 404
            status = await resp.json()
        async with http.get(f"{url}/clusters/west/api/v1/pods") as resp:
            assert resp.status == 200
    assert status["kind"] == "Status"
    assert status["message"] == 'cluster "nope" not found; known clusters: east, west'
    running.proc.terminate()
    assert (await running.finish()).returncode == 0


async def test_accept_hosts_widens_the_host_allow_list(member: str, spawn: Spawn) -> None:
    """Loopback names only by default (DNS rebinding); --accept-hosts adds patterns."""
    running = await spawn(
        "serve", "--cluster", "east=kubemirror", "--resource", "pods", "--kubeconfig", member,
        "--port", "0", "--no-metrics", "--accept-hosts", r"^mirror\.corp$",
    )  # fmt: skip
    url = await _served_url(running)
    async with aiohttp.ClientSession() as http:
        for host, expected in (("mirror.corp", 200), ("evil.example", 403), ("localhost", 200)):
            async with http.get(f"{url}/api/v1/pods", headers={"Host": host}) as resp:
                assert (host, resp.status) == (host, expected)
                body = await resp.json()
            if expected == 403:
                assert body["reason"] == "Forbidden"
                assert "items" not in body
    running.proc.terminate()
    assert (await running.finish()).returncode == 0


async def test_an_unreachable_member_turns_readyz_503_with_one_line_warnings(
    member: str, kube_api_server: KubeApiServer, spawn: Spawn
) -> None:
    running = await spawn(
        "serve", "--cluster", "east=kubemirror", "--resource", "pods", "--kubeconfig", member,
        "--port", "0", "--unready-after", "0.5",
    )  # fmt: skip
    url = await _served_url(running)
    member_url = kube_api_server.url
    await kube_api_server.stop()  # its port now refuses connections
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    async with aiohttp.ClientSession() as http:
        while True:  # 503 past --unready-after; the cause is the newest error
            async with http.get(f"{url}/readyz") as resp:
                status, text = resp.status, await resp.text()
            if status == 503 and "connection refused" in text:
                break
            assert loop.time() < deadline, f"/readyz still {status} {text}"
            await asyncio.sleep(0.05)
        async with http.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
    assert text.startswith("cluster east: unreachable for "), text
    assert text.endswith(" s: connection refused"), text
    assert 'kubemirror_member_up{cluster="east"} 0.0' in metrics
    stale = re.search(r'kubemirror_member_stale_seconds\{cluster="east"\} (\S+)', metrics)
    assert stale is not None, metrics
    assert float(stale[1]) > 0.5, metrics
    running.proc.terminate()
    result = await running.finish()
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines, "no warning about the unreachable member"
    for line in lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d warning: cluster east: [^<>]+", line), result.stderr
    assert any(
        f"cluster east: connection refused to {member_url}; retrying in " in line
        for line in lines
    ), result.stderr


async def test_read_write_forwards_writes_to_the_owning_member(
    tmp_path: Path, kube_storage: MemoryStorage, spawn: Spawn
) -> None:
    """Two members (two of the project's servers): writes reach the member that owns the
    object, and the served API answers with the object as the mirror stores it."""
    members = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in ("east", "west"):
            storage = MemoryStorage()
            server = await stack.enter_async_context(KubeApiServer(storage))
            members[name] = (storage, server.write_kubeconfig(tmp_path / name, cluster=None))
        config = tmp_path / "serve.yaml"
        config.write_text(yaml.safe_dump({
            "readOnly": False,
            "resources": ["configmaps"],
            "unreadyAfter": 30,
            "clusters": [
                {"name": name, "context": "kubemirror", "kubeconfig": kubeconfig}
                for name, (_, kubeconfig) in members.items()
            ],
        }))  # fmt: skip
        running = await spawn("serve", "--config", str(config), "--port", "0", "--no-metrics")
        url = await _served_url(running)
        cms = members["east"][0].resource_storage(CONFIGMAPS)
        west_cms = members["west"][0].resource_storage(CONFIGMAPS)
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "default",
                             "annotations": {"shadow.clusterpedia.io/cluster-name": "west"}},
                "data": {"k": "v"}}  # fmt: skip
        path = "/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as http:
            async with http.post(url + path, json=body) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()
            assert created["metadata"]["annotations"] == {
                "shadow.clusterpedia.io/cluster-name": "west"
            }
            assert west_cms.get("default", "default", "c") is not None, "the annotated member"
            assert cms.get("default", "default", "c") is None
            stored = west_cms.get("default", "default", "c")
            assert stored is not None
            assert stored["metadata"]["annotations"] == {
                "shadow.clusterpedia.io/cluster-name": "default"
            }, "the mirror's annotation is not sent to the member"
            async with http.get(f"{url}{path}/c") as resp:
                assert (await resp.json()) == created, "read-your-writes, as a read returns it"
            patch = {"data": {"k": "patched"}}
            headers = {"Content-Type": "application/merge-patch+json"}
            async with http.patch(f"{url}{path}/c", json=patch, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            patched = west_cms.get("default", "default", "c")
            assert patched is not None
            assert patched["data"] == {"k": "patched"}
            async with http.delete(f"{url}/clusters/east{path}/c") as resp:
                assert resp.status == 404, "east has no configmap c: the member's answer"
                assert (await resp.json())["reason"] == "NotFound"
            async with http.delete(f"{url}{path}/c") as resp:
                assert resp.status == 200, await resp.text()
            assert west_cms.get("default", "default", "c") is None
            async with http.get(f"{url}{path}/c") as resp:
                assert resp.status == 404
        running.proc.terminate()
        assert (await running.finish()).returncode == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0.5", 0.5), (None, DEFAULT_UNREADY_AFTER), ("0", None), ("soon", None)],
)
def test_unready_after_comes_from_the_config_file(
    tmp_path: Path, value: str | None, expected: float | None
) -> None:
    config = tmp_path / "serve.yaml"
    text = "clusters: [{name: eu, context: eu}]\nresources: [pods]\n"
    config.write_text(text + (f"unreadyAfter: {value}\n" if value is not None else ""))
    flags = ServeFlags(config=str(config))
    if expected is None:
        with pytest.raises(errors.ConfigError, match="unreadyAfter"):
            load_serve_config(flags)
        return
    assert load_serve_config(flags).unready_after == expected
    assert load_serve_config(dataclasses.replace(flags, unready_after=2.0)).unready_after == 2.0


async def test_metrics_show_drift_per_cluster_and_resource(
    kube_storage: MemoryStorage, kube_api_server: KubeApiServer, spawn: Spawn, tmp_path: Path
) -> None:
    """The member is reached through ``tests.faultproxy``, which swallows one DELETED event
    (a real server never loses one on demand): ``--check-drift`` finds the extra object."""
    seed(kube_storage, [make_pod(f"web-{i}", "default") for i in range(3)])
    async with FaultProxy(kube_api_server.url) as proxy, \
            KubeClient(ClientConfig(kube_api_server.url)) as writer:
        kubeconfig = tmp_path / "through-proxy"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kubemirror",
            "clusters": [{"name": "member", "cluster": {"server": proxy.url}}],
            "users": [{"name": "anonymous", "user": {}}],
            "contexts": [{"name": "kubemirror",
                          "context": {"cluster": "member", "user": "anonymous"}}],
        }))
        running = await spawn(
            "serve", "--cluster", "east=kubemirror", "--resource", "pods",
            "--kubeconfig", str(kubeconfig), "--port", "0", "--check-drift", "0.1",
        )  # fmt: skip
        url = await _served_url(running)
        proxy.swallow.append(lambda line: b'"DELETED"' in line)
        await writer.delete(PODS, "web-1", "default")
        await writer.create(PODS, make_pod("web-9", "default"), "default")  # moves the feed on
        drifted = 'kubemirror_drift_objects{cluster="east",kind="extra",resource="pods.v1"} 1.0'
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"{url}/metrics") as resp:
                    metrics = await resp.text()
                if drifted in metrics:
                    break
                assert loop.time() < deadline, metrics
                await asyncio.sleep(0.05)
        running.proc.terminate()
        result = await running.finish()
    assert 'kubemirror_drift_objects{cluster="east",kind="missing",resource="pods.v1"} 0.0' \
        in metrics
    checks = re.search(r'kubemirror_drift_checks_total\{cluster="east",resource="pods.v1"\} (\S+)',
                       metrics)
    assert checks is not None
    assert float(checks[1]) >= 1
    assert 'kubemirror_drift_repairs_total{cluster="east",resource="pods.v1"} 0.0' in metrics
    assert result.returncode == 0, result.stderr
    # The drift warning names the object, once while the drift stays the same.
    assert result.stderr.count("1 extra (default/web-1)") == 1, result.stderr


@pytest.mark.parametrize(
    ("doc", "field"),
    [({"checkDrift": -1}, "checkDrift"), ({"checkDrift": "often"}, "checkDrift"),
     ({"repairDrift": "yes"}, "repairDrift")],
    ids=["negative", "not-a-number", "repair-not-bool"],
)
def test_bad_drift_settings_are_named(tmp_path: Path, doc: dict[str, object], field: str) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(errors.ConfigError, match=field):
        load_serve_config(ServeFlags(config=str(config)))


def test_drift_flags_override_the_file(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"checkDrift": 30, "repairDrift": True}))
    assert (load_serve_config(ServeFlags(config=str(config))).check_drift,
            load_serve_config(ServeFlags(config=str(config))).repair_drift) == (30.0, True)
    flagged = load_serve_config(ServeFlags(config=str(config), check_drift=5, repair_drift=False))
    assert (flagged.check_drift, flagged.repair_drift) == (5.0, False)


@pytest.mark.parametrize("freeze_gc", [True, False], ids=["default-on", "no-freeze-gc"])
async def test_serve_reflectors_freeze_the_gc_after_their_first_sync_unless_turned_off(
    freeze_gc: bool,
) -> None:
    """``serve`` builds each (cluster, resource) feed with ``freeze_gc_after_sync`` from
    the configuration (the Reflector's own tests show what the freeze does)."""
    from kubemirror.cli.serve import _Mirror

    mirror = _Mirror()
    mirror.freeze_gc = freeze_gc
    mirror.clients["east"] = KubeClient(ClientConfig(server="http://127.0.0.1:9"))
    try:
        lw = mirror.lister_watcher_for("east", PODS)
        storage = MemoryStorage()
        storage.prepare_cluster("east")
        pods = storage.new_resource_storage(PODS, kind="Pod")
        feed = mirror.reflector_factory(lw, pods.cluster_store("east"), name=f"east/{PODS}")
        assert mirror.feeds[("east", PODS)] is feed
        assert mirror.feeds[("east", PODS)].freeze_gc_after_sync is freeze_gc
    finally:
        await mirror.close()
