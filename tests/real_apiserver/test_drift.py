"""Drift checks against the genuine kube-apiserver (and, where marked, kubemirror's own).

kube-apiserver lists at an exact resourceVersion within etcd's compaction window, so the
checks here are exact. Drift is made by writing into a synced mirror behind its back,
and by losing one watch event: ``tests.faultproxy`` (over HTTPS to the real server, as
the admin) holds the informer's watch back while an object changes, then swallows that
event's line, which a real server never does on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from kubemirror.client import ClientConfig, KubeClient
from kubemirror.drift import DriftReport
from kubemirror.envtest import EnvTest
from kubemirror.informer import SharedInformer
from kubemirror.listwatch import ListWatch
from kubemirror.reflector import Backoff
from kubemirror.stores import IndexedStore
from kubemirror.watcher import ChangeStats, Watcher, WatcherConfig
from tests.faultproxy import FaultProxy
from tests.polling import eventually
from tests.real_apiserver.conftest import CONFIGMAPS, REAL, ServerUnderTest, configmap


@pytest_asyncio.fixture
async def proxied(real_env: EnvTest) -> AsyncIterator[tuple[FaultProxy, KubeClient]]:
    """A fault proxy in front of the real server, and a client going through it."""
    ssl = real_env.ssl_context(client_cert=True)
    async with FaultProxy(real_env.url, ssl=ssl) as proxy, \
            KubeClient(ClientConfig(proxy.url)) as client:
        yield proxy, client


def informer(client: KubeClient, namespace: str, **kwargs: Any) -> SharedInformer:
    return SharedInformer(ListWatch(client, CONFIGMAPS, namespace),
                          backoff=Backoff(initial=0.01, cap=0.1), **kwargs)


async def test_check_drift_reports_exactly_the_object_removed_behind_its_back(
    api: ServerUnderTest,
) -> None:
    for i in range(4):
        await api.client.create(CONFIGMAPS, configmap(f"cm-{i}"), api.namespace)
    async with informer(api.client, api.namespace, page_size=3) as inf:  # pages of 3
        assert await inf.wait_for_sync(20)
        clean = await inf.check_drift()
        assert not clean.drifted
        assert clean.checked == 4
        gone = inf.get_indexer().get_by_key(f"{api.namespace}/cm-2")
        assert gone is not None
        inf.get_indexer().delete(gone)
        report = await inf.check_drift()
    assert report.keys() == [f"{api.namespace}/cm-2"]
    assert report.missing[0].server_version == gone["metadata"]["resourceVersion"]
    assert report.exact  # both servers list at the mirror's version while nothing changed
    if api.kind == REAL:
        assert report.mirror_version.isdigit()


async def test_a_held_back_change_is_not_drift(
    real_client: KubeClient, namespace: str, proxied: tuple[FaultProxy, KubeClient]
) -> None:
    proxy, client = proxied
    await real_client.create(CONFIGMAPS, configmap("a"), namespace)
    async with informer(client, namespace) as inf:
        assert await inf.wait_for_sync(20)
        proxy.pause_watches()
        obj = await real_client.get(CONFIGMAPS, "a", namespace)
        await real_client.replace(CONFIGMAPS, {**obj, "data": {"k": "changed"}}, namespace)
        report = await inf.check_drift()
        proxy.resume_watches()
    assert report.exact  # listed at the mirror's own version, before the change
    assert not report.drifted


async def test_periodic_check_reports_a_lost_update_then_repairs_it(
    real_client: KubeClient, namespace: str, proxied: tuple[FaultProxy, KubeClient]
) -> None:
    proxy, client = proxied
    for name in ("a", "b"):
        await real_client.create(CONFIGMAPS, configmap(name), namespace)
    reports: list[DriftReport] = []
    async with informer(client, namespace, check_drift_every=0.1, on_drift=reports.append,
                        repair_drift=True) as inf:
        assert await inf.wait_for_sync(20)
        proxy.swallow.append(lambda line: b'"MODIFIED"' in line and b'"name":"a"' in line)
        proxy.pause_watches()
        obj = await real_client.get(CONFIGMAPS, "a", namespace)
        changed = await real_client.replace(CONFIGMAPS, {**obj, "data": {"k": "lost"}},
                                            namespace)
        proxy.resume_watches()
        await real_client.create(CONFIGMAPS, configmap("c"), namespace)  # moves the mirror on
        await eventually(lambda: bool(reports), within=20, what="a drift report")
        new_rv = changed["metadata"]["resourceVersion"]
        key = f"{namespace}/a"
        assert reports[0].exact
        assert [(e.key, e.server_version) for e in reports[0].stale] == [(key, new_rv)]
        assert reports[0].missing == ()
        assert reports[0].extra == ()

        def repaired() -> bool:
            got = inf.get_indexer().get_by_key(key)
            return got is not None and got["data"] == {"k": "lost"}

        await eventually(repaired, within=20, what="the relist repaired the object")
        monitor = inf.drift_monitor
        assert monitor is not None
        checks = monitor.checks
        await eventually(lambda: monitor.checks >= checks + 2, within=20, what="later checks")
        assert monitor.last_report is not None
        assert not monitor.last_report.drifted
        assert monitor.repairs == 1
    assert len(proxy.stats.swallowed) == 1


async def test_watcher_periodic_check_repairs_a_lost_delete(
    real_client: KubeClient, namespace: str, proxied: tuple[FaultProxy, KubeClient]
) -> None:
    proxy, client = proxied
    for name in ("a", "b"):
        await real_client.create(CONFIGMAPS, configmap(name), namespace)
    reports: list[DriftReport] = []

    async def on_change(store: IndexedStore, stats: ChangeStats) -> None:
        pass

    config = WatcherConfig(gvr=CONFIGMAPS, namespace=namespace, index_by=["metadata.name"],
                           on_change=on_change, check_drift_every=0.1,
                           on_drift=reports.append, repair_drift=True)
    watcher = Watcher(config, client)
    async with watcher:
        await asyncio.wait_for(watcher.wait_for_sync(), 20)
        proxy.swallow.append(lambda line: b'"DELETED"' in line)
        await real_client.delete(CONFIGMAPS, "b", namespace)
        await real_client.create(CONFIGMAPS, configmap("c"), namespace)
        await eventually(lambda: bool(reports), within=20, what="a drift report")
        assert [e.key for e in reports[0].extra] == [f"{namespace}/b"]
        assert reports[0].exact
        await eventually(lambda: watcher.store.ref(namespace, "b") is None, within=20,
                         what="the lost delete repaired")
