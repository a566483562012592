"""Tests for kubemirror.listwatch against the project's API server over real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kubemirror import errors
from kubemirror.client import ClientConfig, Discovery, KubeClient, ListOptions
from kubemirror.listwatch import ListWatch
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import PODS, make_pod, new_storage
from kubemirror.types import GroupVersionResource


@pytest_asyncio.fixture
async def client() -> AsyncIterator[KubeClient]:
    storage = new_storage()
    async with KubeApiServer(storage) as server, KubeClient(ClientConfig(server.url)) as c:
        for name, ns in (("web-1", "default"), ("web-2", "default"), ("db-1", "default"),
                         ("web-9", "other")):
            await c.create(PODS, make_pod(name, ns), ns)
        yield c


async def test_selectors_and_namespace_apply_to_list_and_watch(client: KubeClient) -> None:
    lw = ListWatch(client, PODS, "default", label_selector="app=web")
    page = await lw.list(ListOptions())
    assert sorted(p["metadata"]["name"] for p in page.items) == ["web-1", "web-2"]
    await client.create(PODS, make_pod("db-2"), "default")
    await client.create(PODS, make_pod("web-3"), "default")
    stream = await lw.watch(ListOptions(resource_version=page.resource_version,
                                        timeout_seconds=1))
    names = []
    async with contextlib.aclosing(stream):
        async for event in stream:
            if event["type"] == "ADDED":
                names.append(event["object"]["metadata"]["name"])
    assert names == ["web-3"]
    assert str(lw) == "pods.v1 in default [app=web]"


async def test_explicit_options_override_the_list_watch_selectors(client: KubeClient) -> None:
    lw = ListWatch(client, PODS, None, label_selector="app=web")
    page = await lw.list(ListOptions(label_selector="app=db"))
    assert [p["metadata"]["name"] for p in page.items] == ["db-1"]
    everywhere = await ListWatch(client, PODS).list(ListOptions())
    assert len(everywhere.items) == 4


async def test_for_resource_resolves_short_names_and_drops_the_namespace_of_cluster_scoped(
    client: KubeClient,
) -> None:
    resolver = Discovery(client)
    pods = await ListWatch.for_resource(client, "po", "default", resolver=resolver)
    assert pods.gvr == PODS
    assert pods.namespace == "default"
    nodes = await ListWatch.for_resource(client, "no", "default", resolver=resolver)
    assert nodes.gvr == GroupVersionResource("", "v1", "nodes")
    assert nodes.namespace is None
    assert resolver.refreshes == 1
    with pytest.raises(errors.ResourceNotFoundError, match="gizmo"):
        await ListWatch.for_resource(client, "gizmo", resolver=resolver)
