"""Property tests: LIST always equals a model, and every watch sees exactly the later events."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from kubemirror import errors
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.storage import (
    ClusterResourceStore,
    ListOptions,
    MemoryStorage,
    ResourceStorage,
)
from kubemirror.testing import PODS, new_storage

CLUSTERS = ("a", "b", "c")
NAMES = ("x", "y", "z", "w")
NAMESPACES = ("n1", "n2")


def pod(name: str, namespace: str, version: int, label: str = "v") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": str(version),
            "labels": {"tier": label},
        },
        "spec": {"v": version},
    }


class StorageMachine(RuleBasedStateMachine):
    """API writes, synchro writes (Store protocol) and cluster cleanups against a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.mem: MemoryStorage = new_storage(prefix="m", event_window=10_000)
        self.pods: ResourceStorage = self.mem.resource_storage(PODS)
        self.model: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 0

    @initialize()
    def prepare(self) -> None:
        for cluster in CLUSTERS:
            self.mem.prepare_cluster(cluster)

    def _next(self) -> int:
        self.version += 1
        return self.version

    @rule(
        cluster=st.sampled_from(CLUSTERS),
        name=st.sampled_from(NAMES),
        ns=st.sampled_from(NAMESPACES),
        label=st.sampled_from("pq"),
    )
    def api_create(self, cluster: str, name: str, ns: str, label: str) -> None:
        obj = pod(name, ns, self._next(), label)
        if not self.mem.has_cluster(cluster):
            self.mem.prepare_cluster(cluster)
        try:
            self.pods.create(cluster, obj)
        except errors.ConflictError:
            assert (cluster, ns, name) in self.model
        else:
            assert (cluster, ns, name) not in self.model
            self.model[(cluster, ns, name)] = obj

    @rule(
        cluster=st.sampled_from(CLUSTERS),
        name=st.sampled_from(NAMES),
        ns=st.sampled_from(NAMESPACES),
        label=st.sampled_from("pq"),
    )
    def api_update(self, cluster: str, name: str, ns: str, label: str) -> None:
        obj = pod(name, ns, self._next(), label)
        try:
            self.pods.update(cluster, obj)
        except errors.NotFoundError:
            assert (cluster, ns, name) not in self.model
        else:
            self.model[(cluster, ns, name)] = obj

    @rule(
        cluster=st.sampled_from(CLUSTERS),
        name=st.sampled_from(NAMES),
        ns=st.sampled_from(NAMESPACES),
    )
    def synchro_delete(self, cluster: str, name: str, ns: str) -> None:
        if not self.mem.has_cluster(cluster):
            return
        ClusterResourceStore(self.pods, cluster).delete(pod(name, ns, 0))
        self.model.pop((cluster, ns, name), None)

    @rule(
        cluster=st.sampled_from(CLUSTERS),
        name=st.sampled_from(NAMES),
        ns=st.sampled_from(NAMESPACES),
    )
    def synchro_add(self, cluster: str, name: str, ns: str) -> None:
        self.mem.prepare_cluster(cluster)
        obj = pod(name, ns, self._next())
        ClusterResourceStore(self.pods, cluster).add(obj)
        self.model[(cluster, ns, name)] = obj

    @rule(
        cluster=st.sampled_from(CLUSTERS),
        picks=st.lists(
            st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.booleans()),
            max_size=5,
            unique_by=lambda t: t[:2],
        ),
    )
    def synchro_replace(self, cluster: str, picks: list[tuple[str, str, bool]]) -> None:
        self.mem.prepare_cluster(cluster)
        objs = []
        for name, ns, bump in picks:
            current = self.model.get((cluster, ns, name))
            objs.append(
                current if current is not None and not bump else pod(name, ns, self._next())
            )
        listed = {(obj["metadata"]["namespace"], obj["metadata"]["name"]) for obj in objs}
        changes = sum(
            1
            for obj in objs
            if (
                current := self.model.get(
                    (cluster, obj["metadata"]["namespace"], obj["metadata"]["name"])
                )
            )
            is None
            or current["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]
        )
        deletions = sum(1 for k in self.model if k[0] == cluster and k[1:] not in listed)
        before = self.mem.index
        ClusterResourceStore(self.pods, cluster).replace(objs, str(self.version))
        assert self.mem.index - before == changes + deletions, "replace emits only real changes"
        for key in [k for k in self.model if k[0] == cluster]:
            del self.model[key]
        for obj in objs:
            self.model[(cluster, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    @rule(cluster=st.sampled_from(CLUSTERS))
    def clean(self, cluster: str) -> None:
        self.mem.clean_cluster(cluster)
        for key in [k for k in self.model if k[0] == cluster]:
            del self.model[key]

    @invariant()
    def list_equals_model(self) -> None:
        listed = {
            (
                o["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
                o["metadata"]["namespace"],
                o["metadata"]["name"],
            ): rvs.parse_memory_resource_version(o["metadata"]["resourceVersion"])[2]
            for o in self.pods.list().items
        }
        assert listed == {k: v["metadata"]["resourceVersion"] for k, v in self.model.items()}

    @invariant()
    def pages_and_filters_agree(self) -> None:
        full = self.pods.list(ListOptions(label_selector="tier=p", namespace="n1")).items
        paged: list[Any] = []
        token = ""
        while True:
            page = self.pods.list(
                ListOptions(label_selector="tier=p", namespace="n1", limit=2, continue_token=token)
            )
            paged += page.items
            token = page.continue_token
            if not token:
                break
        assert paged == full
        expected = sorted(
            k
            for k, v in self.model.items()
            if k[1] == "n1" and v["metadata"]["labels"]["tier"] == "p"
        )
        got = [
            (
                o["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"],
                o["metadata"]["namespace"],
                o["metadata"]["name"],
            )
            for o in full
        ]
        assert got == expected


TestStorageMachine = StorageMachine.TestCase
TestStorageMachine.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


_writes = st.lists(
    st.tuples(
        st.sampled_from(("create", "update", "delete")),
        st.sampled_from(CLUSTERS[:2]),
        st.sampled_from(NAMES[:3]),
        st.integers(min_value=0, max_value=2),  # writer task that performs it
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(_writes, st.data())
def test_every_watch_sees_exactly_the_events_after_its_version(
    writes: list[tuple[str, str, str, int]], data: st.DataObject
) -> None:
    asyncio.run(_watch_scenario(writes, data))


async def _watch_scenario(writes: list[tuple[str, str, str, int]], data: st.DataObject) -> None:
    mem = new_storage(prefix="w", event_window=1000)
    for cluster in CLUSTERS:
        mem.prepare_cluster(cluster)
    pods = mem.resource_storage(PODS)
    log: list[tuple[int, str, str, str]] = []  # (index, type, cluster, name)
    starts: list[int] = [0]

    async def writer(number: int) -> None:
        for i, (op, cluster, name, who) in enumerate(writes):
            if who != number:
                continue
            await asyncio.sleep(0)  # interleave the writer tasks
            obj = pod(name, "n", i)
            try:
                if op == "create":
                    stored = pods.create(cluster, obj)
                elif op == "update":
                    stored = pods.update(cluster, obj)
                else:
                    stored = pods.delete(cluster, obj)
            except (errors.ConflictError, errors.NotFoundError):
                continue
            index = rvs.parse_memory_resource_version(stored["metadata"]["resourceVersion"])[1]
            kind = {"create": "ADDED", "update": "MODIFIED", "delete": "DELETED"}[op]
            log.append((index, kind, cluster, name))
            starts.append(mem.index)

    await asyncio.gather(*(writer(n) for n in range(3)))
    log.sort()
    assert [entry[0] for entry in log] == list(range(1, len(log) + 1)), "indexes are dense"
    for start in data.draw(st.lists(st.sampled_from(starts), min_size=1, max_size=3)):
        expected = [e for e in log if e[0] > start]
        watch = pods.watch(ListOptions(resource_version=rvs.to_list_resource_version("w", start)))
        got: list[tuple[int, str, str, str]] = []
        while len(got) < len(expected):
            async with asyncio.timeout(5):
                event = await watch.__anext__()
            got.append((event.index, event.type, event.cluster, event.object["metadata"]["name"]))
        watch.stop()
        assert got == expected
