"""The official ``kubernetes`` Python client lists and watches KubeApiServer unchanged."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kubernetes import client, watch

from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, seed

from .conftest import wait_until


def api_client(server: KubeApiServer) -> client.ApiClient:
    config = client.Configuration()
    config.host = server.url
    return client.ApiClient(config)


async def test_list_with_selectors_and_pages(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage
) -> None:
    kube_storage.prepare_cluster("b")
    seed(kube_storage, [make_pod(f"a{i}", labels={"app": "x" if i % 2 else "y"}) for i in range(7)])
    seed(kube_storage, [make_pod("b0", "other")], cluster="b")

    def run() -> tuple[list[str], list[str], list[str], str]:
        with api_client(kube_api_server) as api:
            v1: Any = client.CoreV1Api(api)
            everything = v1.list_pod_for_all_namespaces()
            selected = v1.list_namespaced_pod("default", label_selector="app=x")
            paged: list[str] = []
            token = None
            while True:
                page = v1.list_namespaced_pod("default", limit=3, _continue=token)
                paged += [p.metadata.name for p in page.items]
                token = page.metadata._continue
                if not token:
                    break
            return (
                [p.metadata.name for p in everything.items],
                [p.metadata.name for p in selected.items],
                paged,
                everything.metadata.resource_version,
            )

    every, selected, paged, rv = await asyncio.to_thread(run)
    assert every == ["b0"] + [f"a{i}" for i in range(7)]
    assert selected == ["a1", "a3", "a5"]
    assert paged == [f"a{i}" for i in range(7)]
    assert rv == kube_storage.resource_version


async def test_watch_sees_every_change_once_in_order(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage
) -> None:
    kube_storage.prepare_cluster("b")
    seed(kube_storage, [make_pod("existing")])
    pods = kube_storage.resource_storage(PODS)
    start = kube_storage.resource_version
    expected: list[tuple[str, str, str]] = []
    received: list[tuple[str, str, str]] = []
    total = 60
    stop = threading.Event()

    def watch_thread() -> None:
        with api_client(kube_api_server) as api:
            v1: Any = client.CoreV1Api(api)
            watch_type: Any = watch.Watch
            w = watch_type()
            for event in w.stream(
                v1.list_pod_for_all_namespaces, resource_version=start, timeout_seconds=20
            ):
                obj: Any = event["object"]
                received.append((event["type"], obj.metadata.name, obj.metadata.resource_version))
                if len(received) == total or stop.is_set():
                    w.stop()

    thread = asyncio.create_task(asyncio.to_thread(watch_thread))
    try:
        await wait_until(lambda: pods.watcher_count == 1, within=10)
        for i in range(total // 3):
            cluster = "b" if i % 2 else "default"
            created = pods.create(cluster, make_pod(f"p{i}"))
            updated = pods.update(cluster, make_pod(f"p{i}", phase="Succeeded"))
            deleted = pods.delete(cluster, make_pod(f"p{i}"))
            for kind, obj in (("ADDED", created), ("MODIFIED", updated), ("DELETED", deleted)):
                expected.append((kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
        async with asyncio.timeout(20):
            await thread
    finally:
        stop.set()
    assert received == expected
