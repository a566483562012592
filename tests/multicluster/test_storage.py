"""MemoryStorage: writes, LIST (pages, versions) and the cluster store; watches are in
test_watch_cache.py. Fixtures ``mem`` and ``pods`` come from conftest.py."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.keys import DeletedFinalStateUnknown
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.storage import (
    CLUSTER_ANNOTATION,
    ClusterResourceStore,
    ListOptions,
    MemoryStorage,
    ResourceStorage,
)
from kubemirror.testing import PODS, make_pod, new_storage
from kubemirror.types import GroupVersionResource, Obj


def names(objs: Sequence[Obj]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_create_stamps_version_cluster_and_type(pods: ResourceStorage) -> None:
    pod = make_pod("web-1", resource_version="123")
    del pod["kind"], pod["apiVersion"]
    stored = pods.create("a", pod)
    assert stored["metadata"]["resourceVersion"] == "p.1.123"
    assert stored["metadata"]["annotations"][CLUSTER_ANNOTATION] == "a"
    assert (stored["kind"], stored["apiVersion"]) == ("Pod", "v1")
    assert CLUSTER_ANNOTATION not in pod["metadata"]["annotations"], "caller's object mutated"
    assert pods.get("a", "default", "web-1") is stored
    assert pods.get("b", "default", "web-1") is None


def test_api_write_without_version_uses_the_index(pods: ResourceStorage) -> None:
    stored = pods.create("a", make_pod("x"))
    assert stored["metadata"]["resourceVersion"] == "p.1.1"


def test_write_errors_carry_statuses(pods: ResourceStorage, mem: MemoryStorage) -> None:
    pods.create("a", make_pod("x"))
    with pytest.raises(errors.ConflictError) as exists:
        pods.create("a", make_pod("x"))
    assert exists.value.reason == "AlreadyExists"
    with pytest.raises(errors.NotFoundError):
        pods.update("a", make_pod("y"))
    with pytest.raises(errors.ConflictError) as stale:
        pods.update("a", make_pod("x"), expected_resource_version="p.0.0")
    assert stale.value.reason == "Conflict"
    nameless = make_pod("z")
    del nameless["metadata"]["name"]
    with pytest.raises(errors.InvalidError) as invalid:
        pods.create("a", nameless)
    assert invalid.value.code == 422
    with pytest.raises(errors.NotFoundError, match="nowhere"):
        pods.create("nowhere", make_pod("x"))
    assert mem.index == 1, "failed writes must not consume an index"


def test_one_index_orders_all_resources_and_clusters(mem: MemoryStorage) -> None:
    pods = mem.resource_storage(PODS)
    cms = mem.resource_storage(GroupVersionResource("", "v1", "configmaps"))
    a = pods.create("a", make_pod("x"))
    b = cms.create("b", {"metadata": {"name": "c", "namespace": "default"}, "data": {}})
    c = (
        pods.update("b", make_pod("x"))
        if pods.get("b", "default", "x")
        else pods.create("b", make_pod("x"))
    )
    indexes = [
        rvs.parse_memory_resource_version(o["metadata"]["resourceVersion"])[1] for o in (a, b, c)
    ]
    assert indexes == [1, 2, 3]


def test_list_filters_and_orders(pods: ResourceStorage) -> None:
    pods.create("b", make_pod("z", "ns1", {"app": "web"}))
    pods.create("a", make_pod("y", "ns2", {"app": "db"}))
    pods.create("a", make_pod("x", "ns1", {"app": "web"}, phase="Pending"))
    assert names(pods.list().items) == ["x", "y", "z"]
    assert names(pods.list(ListOptions(clusters=("b",))).items) == ["z"]
    assert names(pods.list(ListOptions(namespace="ns1")).items) == ["x", "z"]
    assert names(pods.list(ListOptions(label_selector="app=web")).items) == ["x", "z"]
    assert names(pods.list(ListOptions(label_selector="app in (db)")).items) == ["y"]
    assert names(pods.list(ListOptions(field_selector="status.phase=Pending")).items) == ["x"]
    assert names(pods.list(ListOptions(field_selector="metadata.name!=x")).items) == ["y", "z"]
    assert pods.list().resource_version == "p.3"


def test_bad_selector_is_bad_request(pods: ResourceStorage) -> None:
    with pytest.raises(errors.BadRequestError, match="labelSelector"):
        pods.list(ListOptions(label_selector="a in b"))
    with pytest.raises(errors.BadRequestError, match="fieldSelector"):
        pods.list(ListOptions(field_selector="nonsense"))


def test_pages_are_a_consistent_snapshot(pods: ResourceStorage) -> None:
    for i in range(10):
        pods.create("a", make_pod(f"p{i:02d}"))
    first = pods.list(ListOptions(limit=4))
    assert names(first.items) == ["p00", "p01", "p02", "p03"]
    assert first.remaining_item_count == 6
    # Writes between pages do not show up in the remaining pages.
    pods.delete("a", make_pod("p05"))
    pods.create("a", make_pod("p99"))
    second = pods.list(ListOptions(limit=4, continue_token=first.continue_token))
    third = pods.list(ListOptions(limit=4, continue_token=second.continue_token))
    assert names(second.items) == ["p04", "p05", "p06", "p07"]
    assert names(third.items) == ["p08", "p09"]
    assert third.continue_token == ""
    assert {first.resource_version, second.resource_version, third.resource_version} == {"p.10"}


def test_pages_with_selector_skip_non_matching(pods: ResourceStorage) -> None:
    for i in range(10):
        pods.create("a", make_pod(f"p{i}", labels={"even": str(i % 2 == 0).lower()}))
    seen: list[str] = []
    token = ""
    while True:
        page = pods.list(ListOptions(limit=2, label_selector="even=true", continue_token=token))
        seen += names(page.items)
        assert page.remaining_item_count is None
        token = page.continue_token
        if not token:
            break
    assert seen == ["p0", "p2", "p4", "p6", "p8"]


def test_evicted_or_foreign_continue_is_gone(mem: MemoryStorage, pods: ResourceStorage) -> None:
    mem.max_snapshots = 1
    for i in range(5):
        pods.create("a", make_pod(f"p{i}"))
    old = pods.list(ListOptions(limit=1)).continue_token
    pods.list(ListOptions(limit=1))
    with pytest.raises(errors.GoneError):
        pods.list(ListOptions(limit=1, continue_token=old))
    other = new_storage(prefix="q")
    other.prepare_cluster("a")
    other_pods = other.resource_storage(PODS)
    for i in range(3):
        other_pods.create("a", make_pod(f"p{i}"))
    foreign = other_pods.list(ListOptions(limit=1)).continue_token
    with pytest.raises(errors.GoneError):
        pods.list(ListOptions(limit=1, continue_token=foreign))
    with pytest.raises(errors.BadRequestError):
        pods.list(ListOptions(limit=1, continue_token="!!notatoken"))
    with pytest.raises(errors.BadRequestError):
        pods.list(ListOptions(limit=1, continue_token=old, resource_version="p.1"))


@pytest.mark.parametrize(
    ("rv", "match", "error"),
    [
        ("", "Exact", errors.InvalidError),
        ("0", "Exact", errors.InvalidError),
        ("p.2", "Sometimes", errors.InvalidError),
        ("p.99", "", errors.ApiError),
        ("q.1", "", errors.GoneError),
        ("p.x", "", errors.BadRequestError),
    ],
    ids=["exact-unset", "exact-zero", "bad-match", "too-large", "foreign", "junk"],
)
def test_list_version_errors(
    pods: ResourceStorage, rv: str, match: str, error: type[errors.ApiError]
) -> None:
    pods.create("a", make_pod("x"))
    pods.create("a", make_pod("y"))
    with pytest.raises(error):
        pods.list(ListOptions(resource_version=rv, resource_version_match=match))


def test_list_versions_that_are_served(pods: ResourceStorage) -> None:
    pods.create("a", make_pod("x"))
    pods.create("a", make_pod("y"))
    assert pods.list(ListOptions(resource_version="0")).resource_version == "p.2"
    assert pods.list(ListOptions(resource_version="p.1")).resource_version == "p.2"
    exact = pods.list(ListOptions(resource_version="p.2", resource_version_match="Exact"))
    assert exact.resource_version == "p.2"
    assert len(exact.items) == 2


def test_get_resource_versions_and_clean(mem: MemoryStorage, pods: ResourceStorage) -> None:
    pods.create("a", make_pod("x", resource_version="10"))
    pods.create("b", make_pod("y", resource_version="20"))
    assert mem.get_resource_versions("a") == {PODS: {"default/x": "10"}}
    mem.clean_cluster("a")
    assert mem.get_resource_versions("a") == {}
    assert not mem.has_cluster("a")
    assert names(pods.list().items) == ["y"]
    mem.clean_cluster_resource("b", PODS)
    assert pods.list().items == []


def test_cluster_store_replace_emits_only_changes(pods: ResourceStorage) -> None:
    store = ClusterResourceStore(pods, "a")
    store.replace([make_pod("x", resource_version="1"), make_pod("y", resource_version="1")], "1")
    before = pods.list().resource_version
    store.replace([make_pod("x", resource_version="1"), make_pod("z", resource_version="2")], "2")
    assert sorted(store.list_keys()) == ["default/x", "default/z"]
    cache = pods._watch_cache
    events = cache.read(cache.first_seq_after(rvs.parse_list_resource_version(before)))[0]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "z"),
        ("DELETED", "y"),
    ]
    store.update(make_pod("x", resource_version="3"))
    assert store.get_by_key("default/x")["metadata"]["resourceVersion"].endswith(".3")  # type: ignore[index]
    store.delete(DeletedFinalStateUnknown("default/x", None))
    store.delete(make_pod("absent"))
    assert store.get(make_pod("x")) is None
    assert [o["metadata"]["name"] for o in store.list()] == ["z"]
    store.resync()


# -- Exact lists at past versions ---------------------------------------------------------------

_WRITES = st.lists(
    st.tuples(st.sampled_from(["create", "update", "delete"]), st.sampled_from("abcd"),
              st.sampled_from(["east", "west"])),
    min_size=1, max_size=25,
)


@settings(deadline=None, max_examples=60)
@given(writes=_WRITES)
def test_exact_list_gives_the_state_at_every_past_version(
    writes: list[tuple[str, str, str]],
) -> None:
    """Each write's list version, listed later with Exact, gives the state right after it."""
    storage = new_storage(prefix="p")
    for cluster in ("east", "west"):
        storage.prepare_cluster(cluster)
    rs = storage.resource_storage(PODS)
    states: list[tuple[str, dict[str, str]]] = []
    for op, name, cluster in writes:
        try:
            if op == "create":
                rs.create(cluster, make_pod(name))
            elif op == "update":
                rs.update(cluster, make_pod(name, labels={"v": str(len(states))}))
            else:
                rs.delete(cluster, make_pod(name))
        except (errors.ConflictError, errors.NotFoundError):
            continue  # exists already / not found: nothing written
        listed = rs.list()
        states.append((listed.resource_version, versions(listed.items)))
    assert writes[0][0] != "create" or states, "a first create is always written"
    for rv, state in states:
        exact = rs.list(ListOptions(resource_version=rv, resource_version_match="Exact"))
        assert exact.resource_version == rv
        assert versions(exact.items) == state
        east = rs.list(ListOptions(resource_version=rv, resource_version_match="Exact",
                                   clusters=("east",)))
        assert versions(east.items) == {k: v for k, v in state.items() if k.startswith("east")}


def versions(items: Sequence[Obj]) -> dict[str, str]:
    return {f"{o['metadata']['annotations']['shadow.clusterpedia.io/cluster-name']}/"
            f"{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in items}


def test_exact_list_past_the_event_window_is_gone() -> None:
    storage = new_storage(prefix="p", event_window=3)
    storage.prepare_cluster("a")
    rs = storage.resource_storage(PODS)
    rs.create("a", make_pod("x"))
    first = rs.list().resource_version
    for i in range(4):
        rs.update("a", make_pod("x", labels={"i": str(i)}))
    with pytest.raises(errors.GoneError, match="too old resource version"):
        rs.list(ListOptions(resource_version=first, resource_version_match="Exact"))
    latest = rs.list().resource_version
    assert len(rs.list(ListOptions(resource_version=latest,
                                   resource_version_match="Exact")).items) == 1
