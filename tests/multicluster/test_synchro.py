"""ClusterSynchro: member clusters (here: other storages) mirrored into one storage.

Until ``kubemirror.reflector`` lands on main, most tests drive the synchro with
``ListWatchLoop``, a deliberately small stand-in reflector (list, replace, watch,
relist on 410) so the synchro's wiring can be tested; the test marked
``real_reflector`` runs the project's Reflector once it is importable.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.listwatch import ListerWatcher
from kubemirror.multicluster.storage import ClusterResourceStore, MemoryStorage
from kubemirror.multicluster.synchro import ClusterSynchro, StorageListerWatcher
from kubemirror.testing import PODS, make_pod, new_storage, seed
from kubemirror.types import GroupVersionResource

from .conftest import wait_until


class ListWatchLoop:
    """Stand-in reflector (see module docstring): list + replace, then watch; relist on 410."""

    def __init__(self, lw: ListerWatcher, store: ClusterResourceStore, **_: Any) -> None:
        self.lw = lw
        self.store = store
        self.runs = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        self.runs += 1
        while not stop.is_set():
            listed = await self.lw.list(ListOptions())
            self.store.replace(listed.items, listed.resource_version)
            stream = await self.lw.watch(ListOptions(resource_version=listed.resource_version))
            waiter = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    nxt = asyncio.ensure_future(stream.__anext__())
                    done, _ = await asyncio.wait({nxt, waiter}, return_when="FIRST_COMPLETED")
                    if waiter in done:
                        nxt.cancel()
                        return
                    try:
                        event = nxt.result()
                    except StopAsyncIteration:
                        break
                    getattr(
                        self.store,
                        {"ADDED": "add", "MODIFIED": "update"}.get(event["type"], "delete"),
                    )(event["object"])
            except errors.GoneError:
                continue
            finally:
                waiter.cancel()
                await stream.aclose()


def member(name: str) -> MemoryStorage:
    storage = new_storage(prefix=name)
    storage.prepare_cluster("self")
    return storage


def names(storage: MemoryStorage, cluster: str) -> list[str]:
    return sorted(
        o["metadata"]["name"]
        for o in storage.resource_storage(PODS).list().items
        if o["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] == cluster
    )


async def test_clusters_are_mirrored_and_cleaned_when_removed() -> None:
    members = {"east": member("east"), "west": member("west")}
    seed(members["east"], [make_pod("e1"), make_pod("e2")], cluster="self")
    seed(members["west"], [make_pod("w1")], cluster="self")
    hub = new_storage(prefix="hub")
    synchro = ClusterSynchro(
        hub,
        lambda cluster, gvr: StorageListerWatcher(members[cluster].resource_storage(gvr)),
        reflector_factory=ListWatchLoop,
    )
    async with synchro:
        await synchro.set_clusters({"east": [PODS], "west": [PODS]})
        await wait_until(
            lambda: names(hub, "east") == ["e1", "e2"] and names(hub, "west") == ["w1"]
        )
        seed(members["east"], [make_pod("e3")], cluster="self")
        members["west"].resource_storage(PODS).delete("self", make_pod("w1"))
        await wait_until(
            lambda: names(hub, "east") == ["e1", "e2", "e3"] and not names(hub, "west")
        )
        hub_watch = hub.resource_storage(PODS).watch()
        await synchro.set_clusters({"west": [PODS]})
        assert synchro.clusters() == ["west"]
        assert not hub.has_cluster("east")
        assert names(hub, "east") == []
        seen = []
        async with asyncio.timeout(5):
            async for event in hub_watch:
                seen.append(event.type)
                if seen.count("DELETED") == 3:
                    break
        hub_watch.stop()
        assert seen == ["ADDED"] * 3 + ["DELETED"] * 3
    assert synchro.clusters() == []


async def test_resource_types_can_be_dropped() -> None:
    east = member("east")
    cms = GroupVersionResource("", "v1", "configmaps")
    seed(east, [make_pod("p")], cluster="self")
    seed(
        east,
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "default"},
            }
        ],
        cluster="self",
    )
    hub = new_storage(prefix="hub")
    synchro = ClusterSynchro(
        hub,
        lambda cluster, gvr: StorageListerWatcher(east.resource_storage(gvr)),
        reflector_factory=ListWatchLoop,
    )
    async with synchro:
        await synchro.add_cluster("east", [PODS, cms])
        await wait_until(
            lambda: (
                hub.resource_storage(cms).count("east") == 1
                and hub.resource_storage(PODS).count("east") == 1
            )
        )
        await synchro.set_clusters({"east": [PODS]})
        assert synchro.resources("east") == [PODS]
        assert hub.resource_storage(cms).count("east") == 0
        assert hub.resource_storage(PODS).count("east") == 1


async def test_crashing_reflector_is_restarted() -> None:
    attempts: list[int] = []

    class Crashing:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        async def run(self, stop: asyncio.Event | None = None) -> None:
            attempts.append(1)
            if len(attempts) < 3:
                raise RuntimeError("boom")
            assert stop is not None
            await stop.wait()

    hub = new_storage()
    synchro = ClusterSynchro(
        hub,
        lambda c, g: StorageListerWatcher(hub.resource_storage(g), c),
        reflector_factory=Crashing,
        restart_delay=0.01,
    )
    async with synchro:
        await synchro.add_cluster("c", [PODS])
        await wait_until(lambda: len(attempts) == 3)


@pytest.mark.skipif(
    importlib.util.find_spec("kubemirror.reflector") is None,
    reason="kubemirror.reflector has not landed on this branch yet",
)
async def test_real_reflector_mirrors_a_member() -> None:
    east = member("east")
    seed(east, [make_pod(f"p{i}") for i in range(30)], cluster="self")
    hub = new_storage(prefix="hub")
    synchro = ClusterSynchro(
        hub, lambda cluster, gvr: StorageListerWatcher(east.resource_storage(gvr)), page_size=7
    )
    async with synchro:
        await synchro.add_cluster("east", [PODS])
        await wait_until(lambda: hub.resource_storage(PODS).count("east") == 30)
        east.resource_storage(PODS).delete("self", make_pod("p0"))
        seed(east, [make_pod("late")], cluster="self")
        await wait_until(lambda: "late" in names(hub, "east") and "p0" not in names(hub, "east"))


async def test_check_drift_reports_a_member_object_removed_behind_the_synchros_back() -> None:
    east = member("east")
    seed(east, [make_pod(f"p{i}") for i in range(5)], cluster="self")
    hub = new_storage(prefix="hub")
    synchro = ClusterSynchro(
        hub, lambda cluster, gvr: StorageListerWatcher(east.resource_storage(gvr), "self"))
    async with synchro:
        await synchro.add_cluster("east", [PODS])
        await wait_until(lambda: hub.resource_storage(PODS).count("east") == 5)
        clean = await synchro.check_drift("east", PODS)
        assert not clean.drifted
        assert clean.checked == 5
        hub.resource_storage(PODS).delete("east", make_pod("p3"))  # behind its back
        report = await synchro.check_drift("east", PODS)
    assert report.keys() == ["default/p3"]
    assert report.exact
    member_obj = east.resource_storage(PODS).get("self", "default", "p3")
    assert member_obj is not None
    assert report.missing[0].server_version == member_obj["metadata"]["resourceVersion"]
    assert report.name == "east/pods.v1"


async def test_periodic_drift_checks_per_feed_repair_by_relisting() -> None:
    east = member("east")
    seed(east, [make_pod(f"p{i}") for i in range(3)], cluster="self")
    hub = new_storage(prefix="hub")
    synchro = ClusterSynchro(
        hub, lambda cluster, gvr: StorageListerWatcher(east.resource_storage(gvr), "self"),
        check_drift_every=0.05, repair_drift=True)
    async with synchro:
        await synchro.add_cluster("east", [PODS])
        await wait_until(lambda: hub.resource_storage(PODS).count("east") == 3)
        hub.resource_storage(PODS).delete("east", make_pod("p1"))
        monitor = synchro.drift_monitors()[("east", PODS)]
        await wait_until(lambda: monitor.repairs == 1)
        await wait_until(lambda: "p1" in names(hub, "east"))
        last = monitor.checks
        await wait_until(lambda: monitor.checks > last)
        assert monitor.last_report is not None
        assert not monitor.last_report.drifted
    assert synchro.drift_monitors() == {}


def test_a_negative_drift_period_is_refused() -> None:
    hub = new_storage()

    def lister_watcher_for(cluster: str, gvr: GroupVersionResource) -> StorageListerWatcher:
        return StorageListerWatcher(hub.resource_storage(gvr), cluster)

    with pytest.raises(errors.ConfigError, match="check_drift_every"):
        ClusterSynchro(hub, lister_watcher_for, check_drift_every=-1)
