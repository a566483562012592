"""Sans-I/O tests for kubemirror.client.discovery name resolution (HTTP discovery: test_http.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from kubemirror import errors
from kubemirror.client import ClientConfig, KubeClient
from kubemirror.client.discovery import (
    ApiResource,
    Discovery,
    find_resource,
    parse_resource_list,
)
from kubemirror.types import GroupVersionResource

CORE: dict[str, Any] = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list", "watch"], "shortNames": ["po"]},
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod"},
        {"name": "services", "singularName": "service", "namespaced": True, "kind": "Service",
         "shortNames": ["svc"]},
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
         "shortNames": ["no"]},
    ],
}
APPS: dict[str, Any] = {
    "groupVersion": "apps/v1",
    "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": True,
         "kind": "Deployment", "shortNames": ["deploy"]},
    ],
}
APPS_BETA: dict[str, Any] = {
    "groupVersion": "apps/v1beta1",
    "resources": [{"name": "deployments", "namespaced": True, "kind": "Deployment"}],
}
CRD: dict[str, Any] = {
    "groupVersion": "example.com/v1",
    "resources": [
        {"name": "widgets", "singularName": "widget", "namespaced": True, "kind": "Widget",
         "shortNames": ["wd"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod"},
    ],
}


def all_resources() -> list[ApiResource]:
    return (parse_resource_list(CORE) + parse_resource_list(APPS_BETA, preferred=False)
            + parse_resource_list(APPS) + parse_resource_list(CRD))


def test_parse_resource_list_skips_subresources() -> None:
    names = [r.gvr.resource for r in parse_resource_list(CORE)]
    assert names == ["pods", "services", "nodes"]
    pods = parse_resource_list(CORE)[0]
    assert pods.gvr.group == ""
    assert pods.gvr.version == "v1"
    assert pods.short_names == ("po",)
    assert pods.namespaced
    beta = parse_resource_list(APPS_BETA)[0]
    assert beta.singular == "deployment"  # derived from the kind when absent


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pods", ("", "v1", "pods")),
        ("pod", ("", "v1", "pods")),
        ("po", ("", "v1", "pods")),
        ("Pod", ("", "v1", "pods")),
        ("PODS", ("", "v1", "pods")),
        ("deploy", ("apps", "v1", "deployments")),
        ("deployments.apps", ("apps", "v1", "deployments")),
        ("deployments.v1beta1.apps", ("apps", "v1beta1", "deployments")),
        ("Deployment", ("apps", "v1", "deployments")),
        ("widgets", ("example.com", "v1", "widgets")),
        ("wd", ("example.com", "v1", "widgets")),
        ("widgets.example.com", ("example.com", "v1", "widgets")),
        ("pods.example.com", ("example.com", "v1", "pods")),
        ("no", ("", "v1", "nodes")),
    ],
    ids=lambda v: v if isinstance(v, str) else "/".join(v),
)
def test_find_resource(name: str, expected: tuple[str, str, str]) -> None:
    found = find_resource(all_resources(), name)
    assert found is not None
    assert (found.gvr.group, found.gvr.version, found.gvr.resource) == expected


@pytest.mark.parametrize("name", ["gizmos", "deployments.batch", "pods.v2.apps", ""])
def test_find_resource_misses(name: str) -> None:
    assert find_resource(all_resources(), name) is None


# -- Discovery.require over real HTTP: a server with and without discovery documents --------


async def _serve(routes: dict[str, Any]) -> tuple[web.AppRunner, str]:
    """A throw-away aiohttp server on 127.0.0.1 answering ``routes`` (JSON), 404 elsewhere.

    A stand-in on purpose: kube-apiserver and KubeApiServer always serve discovery, and
    what is tested here is a server that does not (a proxy, the benchmarks' server)."""
    async def handler(request: web.Request) -> web.Response:
        if request.path in routes:
            return web.json_response(routes[request.path])
        return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"},
                                 status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


PODS = GroupVersionResource("", "v1", "pods")
WIDGETS = GroupVersionResource("example.com", "v1", "widgets")


async def test_require_without_discovery_documents_proves_nothing() -> None:
    """A server that serves collections but no discovery (a proxy, a bench server)."""
    runner, url = await _serve({})
    try:
        async with KubeClient(ClientConfig(url)) as client:
            await Discovery(client).require(PODS)
            await Discovery(client).require(WIDGETS)
    finally:
        await runner.cleanup()


async def test_require_reads_the_group_version_then_the_group_list() -> None:
    runner, url = await _serve({
        "/api/v1": {"resources": [{"name": "pods"}, {"name": "pods/status"}]},
        "/apis": {"groups": [{"versions": [{"groupVersion": "apps/v1"}]}]},
    })
    try:
        async with KubeClient(ClientConfig(url)) as client:
            await Discovery(client).require(PODS)
            with pytest.raises(errors.ResourceNotFoundError, match="'configmaps'"):
                await Discovery(client).require(GroupVersionResource("", "v1", "configmaps"))
            with pytest.raises(errors.ResourceNotFoundError, match=r"widgets\.v1\.example\.com"):
                await Discovery(client).require(WIDGETS)
    finally:
        await runner.cleanup()
