"""Property tests: LIST always equals a model (the watch property is in test_watch_cache.py)."""

from __future__ import annotations

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
from kubemirror.listing import ListOptions
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.storage import (
    ClusterResourceStore,
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
        in_n1 = ListScope(namespace="n1")
        full = self.pods.list(ListOptions(label_selector="tier=p"), scope=in_n1).items
        paged: list[Any] = []
        token = ""
        while True:
            page = self.pods.list(
                ListOptions(label_selector="tier=p", limit=2, continue_token=token), scope=in_n1
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


_PAGED_WRITES = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete", "page"]),
        st.sampled_from(CLUSTERS),
        st.sampled_from(NAMES),
        st.sampled_from(NAMESPACES),
        st.sampled_from(["p", "q"]),
    ),
    max_size=40,
)


@settings(deadline=None, max_examples=150)
@given(
    initial=st.lists(
        st.tuples(st.sampled_from(CLUSTERS), st.sampled_from(NAMES), st.sampled_from(NAMESPACES)),
        unique=True,
    ),
    steps=_PAGED_WRITES,
    limit=st.integers(min_value=1, max_value=3),
    selector=st.sampled_from(["", "tier=p"]),
    namespace=st.sampled_from([None, "n1"]),
)
def test_a_list_paged_while_writes_happen_is_the_state_at_its_first_page(
    initial: list[tuple[str, str, str]],
    steps: list[tuple[str, str, str, str, str]],
    limit: int,
    selector: str,
    namespace: str | None,
) -> None:
    """Writes interleaved with page reads: the concatenated pages equal the unpaged
    LIST, taken right when the first page was, and the Exact LIST at its version."""
    mem = new_storage(prefix="m", event_window=10_000)
    pods = mem.resource_storage(PODS)
    for cluster in CLUSTERS:
        mem.prepare_cluster(cluster)
    version = 0
    for cluster, name, ns in initial:
        version += 1
        pods.upsert(cluster, pod(name, ns, version, "p" if version % 2 else "q"))
    scope = ListScope(namespace=namespace)
    opts = ListOptions(label_selector=selector, limit=limit)
    unpaged = pods.list(ListOptions(label_selector=selector), scope=scope)
    first = pods.list(opts, scope=scope)
    assert first.resource_version == unpaged.resource_version
    paged = list(first.items)
    token = first.continue_token
    for op, cluster, name, ns, label in steps:
        version += 1
        if op == "upsert":
            pods.upsert(cluster, pod(name, ns, version, label))
        elif op == "delete":
            if pods.get(cluster, ns, name) is not None:
                pods.delete(cluster, pod(name, ns, version))
        elif token:
            page = pods.list(
                ListOptions(label_selector=selector, limit=limit, continue_token=token),
                scope=scope,
            )
            assert page.resource_version == first.resource_version
            paged += page.items
            token = page.continue_token
    while token:
        page = pods.list(
            ListOptions(label_selector=selector, limit=limit, continue_token=token), scope=scope
        )
        paged += page.items
        token = page.continue_token
    assert paged == unpaged.items
    exact = pods.list(
        ListOptions(
            label_selector=selector,
            resource_version=first.resource_version,
            resource_version_match="Exact",
        ),
        scope=scope,
    )
    assert exact.items == unpaged.items
