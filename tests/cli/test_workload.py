"""The demo workload: shape, churn rates and counts, and that it never mutates what it stored."""

from __future__ import annotations

import asyncio
import collections

import orjson
import pytest

from kubemirror.cli.workload import (
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    WRITTEN_AT_ANNOTATION,
    Workload,
    WorkloadSpec,
)
from kubemirror.listing import ListOptions
from kubemirror.testing import PODS, new_storage


def _pods(workload: Workload) -> list[dict[str, object]]:
    return [dict(o) for o in workload.storage.resource_storage(PODS).list().items]


def test_populate_lays_out_namespaces_nodes_deployments_and_pods() -> None:
    storage = new_storage()
    spec = WorkloadSpec(pods=1000, seed=3)
    workload = Workload(storage, spec)
    assert workload.populate() == 1000
    pods = storage.resource_storage(PODS)
    assert pods.count() == 1000
    assert storage.resource_storage(NAMESPACES).count() == spec.namespaces
    assert storage.resource_storage(NODES).count() == spec.nodes
    deployments = storage.resource_storage(DEPLOYMENTS).list().items
    assert sum(d["spec"]["replicas"] for d in deployments) == 1000
    namespaces = {p["metadata"]["namespace"] for p in pods.list().items}
    assert namespaces <= set(workload.namespaces)
    assert len(namespaces) > 1
    pod = pods.list().items[0]
    owner = pod["metadata"]["ownerReferences"][0]
    assert pod["metadata"]["name"].startswith(owner["name"] + "-")
    assert pod["metadata"]["labels"]["app"] in {d["metadata"]["name"] for d in deployments}
    assert pod["metadata"]["managedFields"]
    assert WRITTEN_AT_ANNOTATION in pod["metadata"]["annotations"]
    assert workload.stats.total == 0, "populate resets the churn counters"


def test_same_seed_same_workload() -> None:
    def names(seed: int) -> list[str]:
        workload = Workload(new_storage(), WorkloadSpec(pods=200, seed=seed))
        workload.populate()
        workload.step(100)
        return sorted(str(p["metadata"]["name"]) for p in _pods(workload))  # type: ignore[index]

    assert names(7) == names(7)
    assert names(7) != names(8)


def test_churn_counts_every_write_and_keeps_the_pod_count_near_the_target() -> None:
    """Every storage event is counted once in ``stats`` by type, and scaling stays near target."""
    storage = new_storage()
    workload = Workload(storage, WorkloadSpec(pods=500, seed=1))
    workload.populate()
    index_before = storage.index
    done = workload.step(2000)
    assert done >= 2000
    assert storage.index - index_before == workload.stats.total == done
    assert workload.stats.created
    assert workload.stats.modified
    assert workload.stats.deleted
    assert 450 <= storage.resource_storage(PODS).count() <= 550
    assert workload.pod_count == storage.resource_storage(PODS).count()


async def test_churn_events_match_the_counters() -> None:
    """A storage watch sees exactly the ADDED/MODIFIED/DELETED the workload reports."""
    storage = new_storage()
    workload = Workload(storage, WorkloadSpec(pods=200, seed=2))
    workload.populate()
    watches = [
        storage.resource_storage(gvr).watch(
            ListOptions(resource_version=storage.resource_version)
        )
        for gvr in (PODS, DEPLOYMENTS)
    ]
    workload.step(300)
    seen: collections.Counter[str] = collections.Counter()
    for watch in watches:
        while True:
            try:
                async with asyncio.timeout(0.2):
                    batch = await watch.next_batch(1000)
            except TimeoutError:
                break
            seen.update(e.type for e in batch)
        watch.stop()
    assert seen["ADDED"] == workload.stats.created
    assert seen["MODIFIED"] == workload.stats.modified
    assert seen["DELETED"] == workload.stats.deleted


def test_churn_never_mutates_a_stored_object() -> None:
    """Readers hold stored objects; the workload must replace them, never patch them."""
    storage = new_storage()
    workload = Workload(storage, WorkloadSpec(pods=300, seed=4))
    workload.populate()
    held = storage.resource_storage(PODS).list().items
    frozen = [orjson.dumps(obj) for obj in held]
    workload.step(3000)
    assert [orjson.dumps(obj) for obj in held] == frozen


async def test_run_writes_at_the_requested_rate() -> None:
    """``run`` paces writes by elapsed time: about ``churn`` per second, never a burst."""
    storage = new_storage()
    workload = Workload(storage, WorkloadSpec(pods=100, churn=400.0))
    workload.populate()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(workload.run(stop))
    while workload.stats.total < 200:
        assert loop.time() - started < 10, "the workload wrote too slowly"
        await asyncio.sleep(0.01)
    elapsed = loop.time() - started
    stop.set()
    await task
    rate = workload.stats.total / elapsed
    assert 100 < rate < 1200, rate


@pytest.mark.parametrize("pods", [0, 1, 3], ids=["empty", "one", "three"])
def test_tiny_workloads_work(pods: int) -> None:
    workload = Workload(new_storage(), WorkloadSpec(pods=pods))
    assert workload.populate() == pods
    workload.step(50)
    assert workload.pod_count >= 0
