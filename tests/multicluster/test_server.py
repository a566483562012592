"""KubeApiServer over real HTTP: discovery, LIST/GET/WATCH, writes and their error Statuses."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION, MemoryStorage
from kubemirror.testing import PODS, make_pod, new_storage, seed
from kubemirror.types import GroupVersionResource

from .conftest import wait_until


async def get_json(http: aiohttp.ClientSession, url: str, code: int = 200) -> Any:
    async with http.get(url) as resp:
        body = await resp.json()
        assert resp.status == code, body
        return body


async def send(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any,
    code: int,
    content_type: str = "application/json",
) -> Any:
    async with http.request(
        method, url, data=orjson.dumps(body), headers={"Content-Type": content_type}
    ) as resp:
        out = await resp.json()
        assert resp.status == code, out
        return out


def names(body: Any) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


async def test_discovery(kube_api_server: KubeApiServer, http: aiohttp.ClientSession) -> None:
    url = kube_api_server.url
    assert (await get_json(http, f"{url}/api"))["versions"] == ["v1"]
    groups = {g["name"] for g in (await get_json(http, f"{url}/apis"))["groups"]}
    assert {"apps", "networking.k8s.io", "coordination.k8s.io"} <= groups
    core = await get_json(http, f"{url}/api/v1")
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["kind"] == "Pod"
    assert pods["namespaced"] is True
    assert pods["shortNames"] == ["po"]
    assert "watch" in pods["verbs"]
    apps = await get_json(http, f"{url}/apis/apps/v1")
    assert {r["name"] for r in apps["resources"]} >= {"deployments", "statefulsets"}
    await get_json(http, f"{url}/apis/nope.io/v1", 404)
    assert (await get_json(http, f"{url}/version"))["major"] == "1"
    async with http.get(f"{url}/healthz") as resp:
        assert await resp.text() == "ok"


async def test_list_aggregated_and_per_cluster(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod("a1", "ns1"), make_pod("a2", "ns2")], cluster="default")
    seed(kube_storage, [make_pod("b1", "ns1", labels={"app": "x"})], cluster="b")
    url = kube_api_server.url
    everything = await get_json(http, f"{url}/api/v1/pods")
    assert everything["kind"] == "PodList"
    assert names(everything) == ["b1", "a1", "a2"], "ordered by cluster, then namespace/name"
    assert everything["metadata"]["resourceVersion"] == kube_storage.resource_version
    assert names(await get_json(http, f"{url}/api/v1/namespaces/ns1/pods")) == ["b1", "a1"]
    assert names(await get_json(http, f"{url}/clusters/b/api/v1/pods")) == ["b1"]
    assert names(await get_json(http, f"{url}/api/v1/pods?labelSelector=app%3Dx")) == ["b1"]
    by_name = await get_json(http, f"{url}/api/v1/pods?fieldSelector=metadata.name%3Da2")
    assert names(by_name) == ["a2"]
    one = await get_json(http, f"{url}/clusters/b/api/v1/namespaces/ns1/pods/b1")
    assert one["metadata"]["annotations"][CLUSTER_ANNOTATION] == "b"
    await get_json(http, f"{url}/clusters/nope/api/v1/pods", 404)
    await get_json(http, f"{url}/api/v1/namespaces/ns1/nodes", 404)


async def test_pagination_over_http(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod(f"p{i:04d}") for i in range(1500)])
    url = f"{kube_api_server.url}/api/v1/pods"
    full = await get_json(http, url)
    assert len(full["items"]) == 1500
    seen: list[str] = []
    token = ""
    while True:
        page = await get_json(http, f"{url}?limit=400&continue={token}")
        seen += names(page)
        token = page["metadata"].get("continue", "")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 1500 - len(seen)
    assert seen == names(full)


async def test_pages_over_http_keep_the_first_page_state_until_the_window_moves_on(
    http: aiohttp.ClientSession,
) -> None:
    """Writes between pages do not show in them; once the writes since the first page
    outgrow the event window, 410 Expired with a fresh token in ``metadata.continue``
    that reads the rest at the current version."""
    storage = new_storage(event_window=8)
    seed(storage, [make_pod(f"p{i}") for i in range(6)])
    pods = storage.resource_storage(PODS)
    async with KubeApiServer(storage) as server:
        url = f"{server.url}/api/v1/pods"
        full = await get_json(http, url)
        first = await get_json(http, f"{url}?limit=2")
        pods.delete("default", make_pod("p3"))
        pods.create("default", make_pod("p6"))
        second = await get_json(http, f"{url}?limit=2&continue={first['metadata']['continue']}")
        assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        assert names(first) + names(second) == names(full)[:4]  # p3 still there, no p6
        for i in range(8):
            pods.update("default", make_pod("p0", labels={"i": str(i)}))
        gone = await get_json(
            http, f"{url}?limit=2&continue={second['metadata']['continue']}", 410
        )
        assert (gone["kind"], gone["reason"]) == ("Status", "Expired")
        rest = await get_json(http, f"{url}?continue={gone['metadata']['continue']}")
        assert names(rest) == ["p4", "p5", "p6"]  # after p3, now: p6 shows
        assert rest["metadata"]["resourceVersion"] == storage.resource_version


@pytest.mark.parametrize(
    ("query", "code", "reason"),
    [
        ("labelSelector=a%20in%20b", 400, "BadRequest"),
        ("resourceVersion=zz", 400, "BadRequest"),
        ("resourceVersion=other.1", 410, "Expired"),
        ("limit=x", 400, "BadRequest"),
        ("continue=bm9wZQ", 400, "BadRequest"),
        ("watch=1&resourceVersion=other.1", 410, "Expired"),
    ],
    ids=["selector", "rv-junk", "rv-foreign", "limit", "continue", "watch-foreign"],
)
async def test_list_errors_are_statuses(
    kube_api_server: KubeApiServer,
    http: aiohttp.ClientSession,
    query: str,
    code: int,
    reason: str,
) -> None:
    body = await get_json(http, f"{kube_api_server.url}/api/v1/pods?{query}", code)
    assert body["kind"] == "Status"
    assert body["reason"] == reason
    assert body["code"] == code


async def test_create_update_patch_delete(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    base = f"{kube_api_server.url}/api/v1/namespaces/default/pods"
    pod = make_pod("w")
    created = await send(http, "POST", base, pod, 201)
    meta = created["metadata"]
    assert meta["uid"]
    assert meta["creationTimestamp"]
    assert meta["generation"] == 1
    assert meta["annotations"][CLUSTER_ANNOTATION] == "default"
    assert kube_storage.resource_storage(PODS).get("default", "default", "w") is not None
    exists = await send(http, "POST", base, pod, 409)
    assert exists["reason"] == "AlreadyExists"
    generated = await send(http, "POST", base, {"metadata": {"generateName": "gen-"}}, 201)
    assert generated["metadata"]["name"].startswith("gen-")
    assert len(generated["metadata"]["name"]) == 9
    invalid = await send(http, "POST", base, {"metadata": {}}, 422)
    assert invalid["reason"] == "Invalid"
    wrong_ns = await send(http, "POST", base, make_pod("v", namespace="other"), 400)
    assert wrong_ns["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )

    changed = dict(created, spec={**created["spec"], "nodeName": "n1"})
    updated = await send(http, "PUT", f"{base}/w", changed, 200)
    assert updated["metadata"]["generation"] == 2
    assert updated["metadata"]["uid"] == meta["uid"]
    stale = await send(http, "PUT", f"{base}/w", changed, 409)
    assert stale["reason"] == "Conflict"
    patched = await send(
        http,
        "PATCH",
        f"{base}/w",
        {"metadata": {"labels": {"extra": "1", "app": None}}},
        200,
        "application/merge-patch+json",
    )
    assert patched["metadata"]["labels"] == {"extra": "1"}
    assert patched["metadata"]["generation"] == 2
    json_patched = await send(
        http,
        "PATCH",
        f"{base}/w",
        [{"op": "replace", "path": "/spec/nodeName", "value": "n2"}],
        200,
        "application/json-patch+json",
    )
    assert json_patched["spec"]["nodeName"] == "n2"
    assert json_patched["metadata"]["generation"] == 3
    deleted = await send(http, "DELETE", f"{base}/w", {}, 200)
    assert deleted["metadata"]["name"] == "w"
    await get_json(http, f"{base}/w", 404)
    await send(http, "DELETE", f"{base}/w", {}, 404)


async def test_writes_under_a_cluster_path(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    kube_storage.prepare_cluster("east")
    url = f"{kube_api_server.url}/clusters/east/api/v1/namespaces/default/configmaps"
    await send(http, "POST", url, {"metadata": {"name": "c"}, "data": {"k": "v"}}, 201)
    stored = kube_storage.resource_storage(GroupVersionResource("", "v1", "configmaps"))
    assert stored.get("east", "default", "c") is not None
    assert stored.get("default", "default", "c") is None


async def test_watch_streams_changes_and_stops_on_disconnect(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    pods = kube_storage.resource_storage(PODS)
    seed(kube_storage, [make_pod("before")])
    rv = kube_storage.resource_version
    url = f"{kube_api_server.url}/api/v1/pods?watch=1&resourceVersion={rv}"
    async with http.get(url) as resp:
        assert resp.status == 200
        await wait_until(lambda: pods.watcher_count == 1)
        seed(kube_storage, [make_pod("after")])
        pods.delete("default", make_pod("before"))
        events = [orjson.loads(await resp.content.readline()) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("DELETED", "before"),
    ]
    await wait_until(lambda: pods.watcher_count == 0)


async def test_watch_timeout_seconds_ends_stream(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    url = f"{kube_api_server.url}/api/v1/pods?watch=true&timeoutSeconds=1"
    async with asyncio.timeout(10), http.get(url) as resp:
        assert await resp.read() == b""


async def test_bearer_tokens(kube_storage: MemoryStorage, http: aiohttp.ClientSession) -> None:
    async with KubeApiServer(kube_storage, tokens={"s3cret"}) as server:
        body = await get_json(http, f"{server.url}/api/v1/pods", 401)
        assert body["reason"] == "Unauthorized"
        async with http.get(
            f"{server.url}/api/v1/pods", headers={"Authorization": "Bearer s3cret"}
        ) as resp:
            assert resp.status == 200
        async with http.get(f"{server.url}/healthz") as resp:
            assert resp.status == 200


async def test_readiness_decides_readyz_which_stays_public(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    state = {"ready": False}

    def readiness() -> tuple[bool, str]:
        return (True, "ok") if state["ready"] else (False, "not ready: syncing east/pods")

    async with KubeApiServer(kube_storage, tokens={"s3cret"}, readiness=readiness) as server:
        async with http.get(f"{server.url}/readyz") as resp:
            assert (resp.status, await resp.text()) == (503, "not ready: syncing east/pods")
        state["ready"] = True
        async with http.get(f"{server.url}/readyz") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
        async with http.get(f"{server.url}/livez") as resp:
            assert resp.status == 200


async def test_extra_routes_are_served_behind_the_tokens(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    async def hello(request: web.Request) -> web.StreamResponse:
        return web.Response(text=f"hello {request.method}")

    async def broken(request: web.Request) -> web.StreamResponse:
        raise ValueError("boom")

    routes = {"/hello": hello, "/broken": broken}
    async with KubeApiServer(kube_storage, tokens={"s3cret"}, extra_routes=routes) as server:
        body = await get_json(http, f"{server.url}/hello", 401)
        assert body["reason"] == "Unauthorized"
        auth = {"Authorization": "Bearer s3cret"}
        async with http.post(f"{server.url}/hello", headers=auth) as resp:
            assert (resp.status, await resp.text()) == (200, "hello POST")
        async with http.get(f"{server.url}/broken", headers=auth) as resp:
            assert resp.status == 500
            broken_status = await resp.json()
            assert broken_status["reason"] == "InternalError"
            assert "boom" not in orjson.dumps(broken_status).decode(), "no exception text"
        async with http.get(f"{server.url}/api/v1/pods", headers=auth) as resp:
            assert resp.status == 200, "the API is still served"
        async with http.get(f"{server.url}/hello/more", headers=auth) as resp:
            assert resp.status == 404, "exact paths only"


async def test_read_only_rejects_writes(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    async with KubeApiServer(kube_storage, read_only=True) as server:
        url = f"{server.url}/api/v1/namespaces/default/pods"
        body = await send(http, "POST", url, make_pod("x"), 405)
        assert body["reason"] == "MethodNotAllowed"


async def test_runtime_registered_and_crd_resources(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    url = kube_api_server.url
    kube_api_server.register_resource(
        ResourceInfo(GroupVersionResource("example.com", "v1", "widgets"), kind="Widget")
    )
    await send(
        http,
        "POST",
        f"{url}/apis/example.com/v1/namespaces/default/widgets",
        {"metadata": {"name": "w1"}, "spec": {"size": 3}},
        201,
    )
    assert names(await get_json(http, f"{url}/apis/example.com/v1/widgets")) == ["w1"]
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.org"},
        "spec": {
            "group": "example.org",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget", "shortNames": ["gd"]},
            "versions": [{"name": "v1alpha1", "served": True, "storage": True}],
        },
    }
    await send(
        http, "POST", f"{url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, 201
    )
    resources = await get_json(http, f"{url}/apis/example.org/v1alpha1")
    assert resources["resources"][0]["shortNames"] == ["gd"]
    await send(
        http, "POST", f"{url}/apis/example.org/v1alpha1/gadgets", {"metadata": {"name": "g"}}, 201
    )
    listed = await get_json(http, f"{url}/apis/example.org/v1alpha1/gadgets")
    assert listed["kind"] == "GadgetList"


async def read_events(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        return [orjson.loads(await resp.content.readline()) for _ in range(n)]


async def test_streaming_list_with_initial_events_and_bookmark(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod("a"), make_pod("b")])
    url = (
        f"{kube_api_server.url}/api/v1/watch/pods?sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    )
    async with http.get(url) as resp:
        events = await read_events(resp, 3)
        seed(kube_storage, [make_pod("c")])
        [later] = await read_events(resp, 1)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    bookmark = events[2]["object"]["metadata"]
    assert bookmark["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["resourceVersion"] == f"{kube_storage.prefix}.2"
    assert (later["type"], later["object"]["metadata"]["name"]) == ("ADDED", "c")


async def test_idle_watch_gets_bookmarks(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    kube_storage.bookmark_interval = 0.05
    async with KubeApiServer(kube_storage) as server:
        rv = kube_storage.resource_version
        url = f"{server.url}/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
        async with http.get(url) as resp:
            [event] = await read_events(resp, 1)
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"]["resourceVersion"] == rv


async def test_watch_as_table_for_kubectl(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    url = (
        f"{kube_api_server.url}/api/v1/pods?watch=1&resourceVersion={kube_storage.resource_version}"
    )
    async with http.get(url, headers=headers) as resp:
        seed(kube_storage, [make_pod("t1"), make_pod("t2", phase="Failed")])
        first, second = await read_events(resp, 2)
    assert first["object"]["kind"] == "Table"
    assert [c["name"] for c in first["object"]["columnDefinitions"]][:3] == [
        "Name",
        "Ready",
        "Status",
    ]
    assert second["object"]["columnDefinitions"] == []
    assert second["object"]["rows"][0]["cells"][:3] == ["t2", "2/2", "Failed"]
    assert second["object"]["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_many_http_watchers_each_get_every_event(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage
) -> None:
    pods = kube_storage.resource_storage(PODS)
    watchers = 150
    rv = kube_storage.resource_version
    url = f"{kube_api_server.url}/api/v1/pods?watch=1&resourceVersion={rv}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        responses = [await session.get(url) for _ in range(watchers)]
        try:
            await wait_until(lambda: pods.watcher_count == watchers)
            seed(kube_storage, [make_pod(f"p{i}") for i in range(20)])
            results = await asyncio.gather(*(read_events(r, 20) for r in responses))
        finally:
            for resp in responses:
                resp.close()
    expected = [f"p{i}" for i in range(20)]
    for events in results:
        assert [e["object"]["metadata"]["name"] for e in events] == expected
    await wait_until(lambda: pods.watcher_count == 0)


async def test_stop_ends_open_watches(kube_storage: MemoryStorage) -> None:
    pods = kube_storage.resource_storage(PODS)
    server = KubeApiServer(kube_storage)
    await server.start()
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{server.url}/api/v1/pods?watch=1")
        await wait_until(lambda: pods.watcher_count == 1)
        await server.stop()
        async with asyncio.timeout(10):
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        resp.close()
    assert pods.watcher_count == 0


async def test_client_that_stops_reading_is_disconnected(kube_storage: MemoryStorage) -> None:
    pods = kube_storage.resource_storage(PODS)
    async with KubeApiServer(kube_storage, watch_write_timeout=0.3) as server:
        url = f"{server.url}/api/v1/pods?watch=1&resourceVersion={kube_storage.resource_version}"
        async with aiohttp.ClientSession() as session:
            resp = await session.get(url)  # never read: socket buffers fill up
            await wait_until(lambda: pods.watcher_count == 1)
            big = "x" * 20_000
            seed(kube_storage, [make_pod(f"p{i}", annotations={"pad": big}) for i in range(2000)])
            await wait_until(lambda: pods.watcher_count == 0, within=20)
            resp.close()
