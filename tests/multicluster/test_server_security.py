"""KubeApiServer's request safety over real HTTP: Host allow-list (DNS rebinding), browser
Origin and write content types (CSRF), continue tokens bound to their request, errors
that never carry exception text, and quiet client disconnects."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from kubemirror.multicluster import request_info
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, seed
from kubemirror.types import GroupVersionResource

from .conftest import wait_until

CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")
UNKNOWN_FORMAT = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json, application/yaml"
)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.request(method, url, data=body, headers=headers or {}) as resp:
        text = await resp.read()
        try:
            return resp.status, orjson.loads(text)
        except orjson.JSONDecodeError:
            return resp.status, text.decode()


# -- Host allow-list --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:1", "127.1.2.3", "[::1]", "[::1]:443",
     "LOCALHOST"],
)
async def test_loopback_hosts_are_accepted(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession, host: str
) -> None:
    code, body = await call(http, "GET", f"{kube_api_server.url}/api/v1/pods",
                            headers={"Host": host})
    assert code == 200, body


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io",
             "10.0.0.1", "[::2]"],
)
async def test_foreign_hosts_are_refused_without_data(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession,
    host: str,
) -> None:
    seed(kube_storage, [make_pod("secret-pod")])
    code, body = await call(http, "GET", f"{kube_api_server.url}/api/v1/pods",
                            headers={"Host": host})
    assert code == 403
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Forbidden", 403)
    assert "secret-pod" not in orjson.dumps(body).decode()
    # health endpoints stay reachable (probes use the pod IP as Host)
    code, text = await call(http, "GET", f"{kube_api_server.url}/healthz", headers={"Host": host})
    assert (code, text) == (200, "ok")


async def test_accept_hosts_widens_and_bind_host_is_accepted(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    async with KubeApiServer(kube_storage, accept_hosts=[r"^mirror\.internal$"]) as server:
        url = f"{server.url}/api/v1/pods"
        assert (await call(http, "GET", url, headers={"Host": "mirror.internal:1"}))[0] == 200
        assert (await call(http, "GET", url, headers={"Host": "other.internal"}))[0] == 403
    assert request_info.default_accept_hosts("0.0.0.0") == request_info.LOOPBACK_HOSTS
    patterns = request_info.default_accept_hosts("10.1.2.3")
    compiled = [re.compile(p) for p in patterns]
    assert request_info.host_allowed("10.1.2.3:6443", compiled)
    assert not request_info.host_allowed("10.1.2.30", compiled)
    assert not request_info.host_allowed(None, compiled)


# -- Origin and content types (CSRF) ----------------------------------------------------------


async def test_cross_origin_requests_are_refused(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    url = f"{kube_api_server.url}/api/v1/namespaces/default/configmaps"
    body = orjson.dumps({"metadata": {"name": "c"}})
    headers = {"Origin": "https://evil.example", "Content-Type": "application/json"}
    code, status = await call(http, "POST", url, body=body, headers=headers)
    assert (code, status["reason"]) == (403, "Forbidden")
    code, status = await call(http, "GET", url, headers={"Origin": "http://evil.example"})
    assert code == 403
    # the same loopback origin (a page served by this server) is fine
    same = {"Origin": kube_api_server.url, "Content-Type": "application/json"}
    assert (await call(http, "POST", url, body=body, headers=same))[0] == 201


async def test_allowed_origins_option(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    async with KubeApiServer(kube_storage, allowed_origins=["https://ui.example"]) as server:
        url = f"{server.url}/api/v1/pods"
        assert (await call(http, "GET", url, headers={"Origin": "https://ui.example"}))[0] == 200
        assert (await call(http, "GET", url, headers={"Origin": "https://ui.example.evil"}))[
            0] == 403


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_writes_need_a_json_or_yaml_body(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession,
    content_type: str | None, method: str,
) -> None:
    seed(kube_storage, [{"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c", "namespace": "default"}}])
    base = f"{kube_api_server.url}/api/v1/namespaces/default/configmaps"
    url = base if method == "POST" else f"{base}/c"
    headers = {"Content-Type": content_type} if content_type else {}
    body = orjson.dumps({"metadata": {"name": "c" if method != "POST" else "n"}})
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as raw:
        code, status = await call(raw, method, url, body=body, headers=headers)
    assert (code, status["reason"], status["message"]) == (
        415, "UnsupportedMediaType", UNKNOWN_FORMAT)
    assert kube_storage.resource_storage(PODS).count() == 0
    names = [o["metadata"]["name"] for o in kube_storage.resource_storage(CONFIGMAPS).list().items]
    assert names == ["c"], "nothing was written or deleted"


async def test_patch_needs_a_patch_content_type(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod("p")])
    url = f"{kube_api_server.url}/api/v1/namespaces/default/pods/p"
    for content_type in ("application/json", "text/plain"):
        code, status = await call(http, "PATCH", url, body=b'{"metadata":{"labels":{"a":"b"}}}',
                                  headers={"Content-Type": content_type})
        assert (code, status["message"], status["details"]) == (
            415, "415: Unsupported Media Type", {})
    code, _ = await call(http, "PATCH", url, body=b'{"metadata":{"labels":{"a":"b"}}}',
                         headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200


async def test_yaml_bodies_are_accepted(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    url = f"{kube_api_server.url}/api/v1/namespaces/default/configmaps"
    yaml_body = b"metadata:\n  name: from-yaml\ndata:\n  when: 2024-01-02\n  n: 5\n"
    code, created = await call(http, "POST", url, body=yaml_body,
                               headers={"Content-Type": "application/yaml"})
    assert code == 201, created
    assert created["data"] == {"when": "2024-01-02", "n": 5}
    # YAML is not JSON: sent as JSON it is a decode error, as on kube-apiserver
    code, status = await call(http, "POST", url, body=yaml_body,
                              headers={"Content-Type": "application/json"})
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"].startswith(
        "the object provided is unrecognized (must be of type ConfigMap): couldn't get "
        "version/kind; json parse error: ")


async def test_yaml_alias_bombs_are_refused(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} " + "[" + ", ".join(
            [f"*{chr(96 + i)}"] * 10) + "]")
    bomb = ("metadata:\n  name: bomb\ndata:\n" + "\n".join("  " + line for line in lines)).encode()
    code, status = await call(http, "POST",
                              f"{kube_api_server.url}/api/v1/namespaces/default/configmaps",
                              body=bomb, headers={"Content-Type": "application/yaml"})
    assert (code, status["reason"]) == (400, "BadRequest")


# -- continue tokens are bound to their request -----------------------------------------------


async def test_continue_tokens_are_bound_to_path_cluster_and_selectors(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod(f"p{i}", "a", labels={"app": "x"}) for i in range(3)]
         + [make_pod(f"q{i}", "b", labels={"app": "x"}) for i in range(3)], cluster="east")
    seed(kube_storage, [make_pod(f"w{i}", "a") for i in range(3)], cluster="west")
    url = kube_api_server.url

    async def token(path: str) -> str:
        code, page = await call(http, "GET", f"{url}{path}{'&' if '?' in path else '?'}limit=1")
        assert code == 200, page
        value: str = page["metadata"]["continue"]
        return value

    cases = [
        ("/api/v1/pods", "/api/v1/namespaces/a/pods"),
        ("/api/v1/namespaces/b/pods", "/api/v1/namespaces/a/pods"),
        ("/clusters/east/api/v1/pods", "/clusters/west/api/v1/pods"),
        ("/clusters/east/api/v1/pods", "/api/v1/pods"),
        ("/api/v1/pods?labelSelector=app%3Dx", "/api/v1/pods"),
        ("/api/v1/pods", "/api/v1/pods?labelSelector=app%3Dx"),
        ("/api/v1/pods?fieldSelector=metadata.namespace%3Da", "/api/v1/pods"),
        ("/api/v1/pods", "/api/v1/configmaps"),
    ]
    for issued_on, used_on in cases:
        tok = await token(issued_on)
        sep = "&" if "?" in used_on else "?"
        code, status = await call(http, "GET", f"{url}{used_on}{sep}limit=1&continue={tok}")
        assert (code, status["reason"]) == (400, "BadRequest"), (issued_on, used_on, status)
        assert status["message"].startswith(
            "invalid continue token: continue key is not valid: "), status["message"]
    # ...and still works where it was issued
    tok = await token("/clusters/east/api/v1/namespaces/b/pods")
    code, page = await call(http, "GET",
                            f"{url}/clusters/east/api/v1/namespaces/b/pods?limit=5&continue={tok}")
    assert code == 200
    assert [o["metadata"]["name"] for o in page["items"]] == ["q1", "q2"]


# -- errors never carry exception text; disconnects are quiet ---------------------------------


async def test_unexpected_errors_answer_500_without_the_exception_text(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("secret detail /etc/passwd")

    async with KubeApiServer(kube_storage, extra_routes={"/broken": broken}) as server:
        with caplog.at_level(logging.ERROR, logger="kubemirror.multicluster.server"):
            code, status = await call(http, "GET", f"{server.url}/broken")
    assert (code, status["reason"]) == (500, "InternalError")
    assert status["message"].startswith("Internal error occurred")
    assert "secret detail" not in orjson.dumps(status).decode()
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records), "logged"


async def test_client_disconnects_during_list_and_watch_are_not_errors(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(kube_storage, [make_pod(f"p{i:05d}") for i in range(5000)])
    pods = kube_storage.resource_storage(PODS)
    runner = kube_api_server._runner
    assert runner is not None
    assert runner.server is not None
    server = runner.server
    caplog.set_level(logging.DEBUG)
    host = f"127.0.0.1:{kube_api_server.port}"
    for path in ("/api/v1/pods", "/api/v1/pods?watch=1"):
        reader, writer = await asyncio.open_connection("127.0.0.1", kube_api_server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.read(64)).startswith(b"HTTP/1.1 200")
        writer.transport.abort()
    await wait_until(lambda: pods.watcher_count == 0 and not server.connections)
    seed(kube_storage, [make_pod("after")])
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING
             and r.name.startswith(("kubemirror", "aiohttp"))]
    assert noisy == []
