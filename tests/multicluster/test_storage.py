"""Storage conformance: writes, LIST (pages, versions) and the cluster store, run against
``MemoryStorage`` and ``PostgresStorage`` (a real PostgreSQL) through the async interface
both share; watches are in test_watch_cache.py. Fixtures ``storage``, ``any_pods``, ``mem``
and ``pods`` come from conftest.py."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.keys import DeletedFinalStateUnknown
from kubemirror.listing import ListOptions
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster import resources
from kubemirror.multicluster.filters import field_spec
from kubemirror.multicluster.list_request import ListScope, object_filter
from kubemirror.multicluster.storage import (
    CLUSTER_ANNOTATION,
    ClusterResourceStore,
    MemoryStorage,
    ResourceStorage,
    selectable_skeleton,
)
from kubemirror.testing import PODS, make_pod, new_storage
from kubemirror.types import GroupVersionResource, Obj

if TYPE_CHECKING:
    from tests.multicluster.conftest import AnyResourceStorage, AnyStorage


def names(objs: Sequence[Obj]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


async def test_create_stamps_version_cluster_and_type(any_pods: AnyResourceStorage) -> None:
    pod = make_pod("web-1", resource_version="123")
    del pod["kind"], pod["apiVersion"]
    stored = await any_pods.acreate("a", pod)
    assert stored["metadata"]["resourceVersion"] == "p.1.123"
    assert stored["metadata"]["annotations"][CLUSTER_ANNOTATION] == "a"
    assert (stored["kind"], stored["apiVersion"]) == ("Pod", "v1")
    assert CLUSTER_ANNOTATION not in pod["metadata"]["annotations"], "caller's object mutated"
    assert await any_pods.aget("a", "default", "web-1") == stored
    assert await any_pods.aget("b", "default", "web-1") is None


def test_dict_layout_reads_share_the_stored_object() -> None:
    mem = new_storage(prefix="p", compact=False)
    mem.prepare_cluster("a")
    pods = mem.resource_storage(PODS)
    stored = pods.create("a", make_pod("web-1"))
    assert pods.get("a", "default", "web-1") is stored


def test_compact_layout_is_the_default_and_reads_decode_fresh_copies(
    pods: ResourceStorage,
) -> None:
    stored = pods.create("a", make_pod("web-1"))
    again = pods.get("a", "default", "web-1")
    assert again == stored
    assert again is not stored


async def test_api_write_without_version_uses_the_index(any_pods: AnyResourceStorage) -> None:
    stored = await any_pods.acreate("a", make_pod("x"))
    assert stored["metadata"]["resourceVersion"] == "p.1.1"


async def test_write_errors_carry_statuses(
    any_pods: AnyResourceStorage, storage: AnyStorage
) -> None:
    await any_pods.acreate("a", make_pod("x"))
    with pytest.raises(errors.ConflictError) as exists:
        await any_pods.acreate("a", make_pod("x"))
    assert exists.value.reason == "AlreadyExists"
    with pytest.raises(errors.NotFoundError):
        await any_pods.aupdate("a", make_pod("y"))
    with pytest.raises(errors.ConflictError) as stale:
        await any_pods.aupdate("a", make_pod("x"), expected_resource_version="p.0.0")
    assert stale.value.reason == "Conflict"
    nameless = make_pod("z")
    del nameless["metadata"]["name"]
    with pytest.raises(errors.InvalidError) as invalid:
        await any_pods.acreate("a", nameless)
    assert invalid.value.code == 422
    with pytest.raises(errors.NotFoundError, match="nowhere"):
        await any_pods.acreate("nowhere", make_pod("x"))
    with pytest.raises(errors.NotFoundError):
        await any_pods.adelete_by_key("a", "default/absent")
    assert storage.index == 1, "failed writes must not consume an index"


async def test_one_index_orders_all_resources_and_clusters(storage: AnyStorage) -> None:
    pods = storage.resource_storage(PODS)
    cms = storage.resource_storage(GroupVersionResource("", "v1", "configmaps"))
    a = await pods.acreate("a", make_pod("x"))
    b = await cms.acreate("b", {"metadata": {"name": "c", "namespace": "default"}, "data": {}})
    c = await pods.aupsert("b", make_pod("x"))
    indexes = [
        rvs.parse_memory_resource_version(o["metadata"]["resourceVersion"])[1] for o in (a, b, c)
    ]
    assert indexes == [1, 2, 3]


async def test_list_filters_and_orders(any_pods: AnyResourceStorage) -> None:
    await any_pods.acreate("b", make_pod("z", "ns1", {"app": "web"}))
    await any_pods.acreate("a", make_pod("y", "ns2", {"app": "db"}))
    await any_pods.acreate("a", make_pod("x", "ns1", {"app": "web", "tier": "1"}, phase="Pending"))

    async def listed(scope: ListScope = ListScope(), **options: object) -> list[str]:
        opts = ListOptions(**options)  # type: ignore[arg-type]
        return names((await any_pods.alist(opts, scope=scope)).items)

    assert await listed() == ["x", "y", "z"]
    assert await listed(ListScope(clusters=("b",))) == ["z"]
    assert await listed(ListScope(namespace="ns1")) == ["x", "z"]
    assert await listed(label_selector="app=web") == ["x", "z"]
    assert await listed(label_selector="app in (db)") == ["y"]
    assert await listed(label_selector="app in (db,web),app!=web") == ["y"]
    assert await listed(label_selector="app notin (web)") == ["y"]
    assert await listed(label_selector="tier") == ["x"]
    assert await listed(label_selector="!tier") == ["y", "z"]
    assert await listed(label_selector="tier>0") == ["x"]
    assert await listed(label_selector="app=web,app=db") == []
    assert await listed(field_selector="status.phase=Pending") == ["x"]
    assert await listed(field_selector="metadata.name!=x") == ["y", "z"]
    assert await listed(field_selector="metadata.namespace=ns2") == ["y"]
    assert (await any_pods.alist()).resource_version == "p.3"


async def test_bad_selector_is_bad_request(any_pods: AnyResourceStorage) -> None:
    with pytest.raises(errors.BadRequestError, match="labelSelector"):
        await any_pods.alist(ListOptions(label_selector="a in b"))
    with pytest.raises(errors.BadRequestError, match="fieldSelector"):
        await any_pods.alist(ListOptions(field_selector="nonsense"))


async def test_pages_are_a_consistent_snapshot(any_pods: AnyResourceStorage) -> None:
    for i in range(10):
        await any_pods.acreate("a", make_pod(f"p{i:02d}"))
    first = await any_pods.alist(ListOptions(limit=4))
    assert names(first.items) == ["p00", "p01", "p02", "p03"]
    assert first.remaining_item_count == 6
    # Writes between pages do not show up in the remaining pages.
    await any_pods.adelete("a", make_pod("p05"))
    await any_pods.acreate("a", make_pod("p99"))
    await any_pods.aupdate("a", make_pod("p06", labels={"changed": "yes"}))
    second = await any_pods.alist(ListOptions(limit=4, continue_token=first.continue_token))
    third = await any_pods.alist(ListOptions(limit=4, continue_token=second.continue_token))
    assert names(second.items) == ["p04", "p05", "p06", "p07"]
    assert "changed" not in second.items[2]["metadata"]["labels"]
    assert second.remaining_item_count == 2
    assert names(third.items) == ["p08", "p09"]
    assert third.continue_token == ""
    assert {first.resource_version, second.resource_version, third.resource_version} == {"p.10"}


async def test_pages_with_selector_skip_non_matching(any_pods: AnyResourceStorage) -> None:
    for i in range(10):
        await any_pods.acreate("a", make_pod(f"p{i}", labels={"even": str(i % 2 == 0).lower()}))
    seen: list[str] = []
    token = ""
    while True:
        page = await any_pods.alist(
            ListOptions(limit=2, label_selector="even=true", continue_token=token)
        )
        seen += names(page.items)
        assert page.remaining_item_count is None
        token = page.continue_token
        if not token:
            break
    assert seen == ["p0", "p2", "p4", "p6", "p8"]


def _reissued(token: str, **changes: object) -> str:
    """``token`` with fields changed, as another instance or request would have minted it."""
    decoded = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    decoded.update(changes)
    return base64.urlsafe_b64encode(orjson.dumps(decoded)).decode().rstrip("=")


async def test_foreign_or_malformed_continue(any_pods: AnyResourceStorage) -> None:
    for i in range(5):
        await any_pods.acreate("a", make_pod(f"p{i}"))
    token = (await any_pods.alist(ListOptions(limit=1))).continue_token
    with pytest.raises(errors.GoneError):
        await any_pods.alist(ListOptions(limit=1, continue_token=_reissued(token, p="q")))
    with pytest.raises(errors.BadRequestError, match="another request"):
        await any_pods.alist(
            ListOptions(limit=1, continue_token=token), scope=ListScope(namespace="other")
        )
    with pytest.raises(errors.BadRequestError):
        await any_pods.alist(ListOptions(limit=1, continue_token="!!notatoken"))
    with pytest.raises(errors.BadRequestError):
        await any_pods.alist(ListOptions(limit=1, continue_token=token, resource_version="p.1"))
    for position in ({"i": -1}, {"i": 1.5}, {"i": True}, {"c": 5}, {"k": None}):
        with pytest.raises(errors.BadRequestError, match="start position"):
            await any_pods.alist(ListOptions(limit=1, continue_token=_reissued(token, **position)))
    # a version the storage never reached: only a forged token has one
    with pytest.raises(errors.BadRequestError, match="newer than the storage's"):
        await any_pods.alist(ListOptions(limit=1, continue_token=_reissued(token, i=10**9)))


def test_a_continue_token_past_the_event_window_is_gone_with_a_fresh_token() -> None:
    """Once the events after a token's version left the window, its page cannot be
    rebuilt: 410 Expired, and the status's fresh token reads the rest at the current
    version after the same key (kube-apiserver's inconsistent continuation)."""
    storage = new_storage(prefix="p", event_window=2)
    storage.prepare_cluster("a")
    pods = storage.resource_storage(PODS)
    for i in range(5):
        pods.create("a", make_pod(f"p{i}"))
    first = pods.list(ListOptions(limit=2))
    pods.delete("a", make_pod("p3"))
    pods.create("a", make_pod("p5"))
    pods.create("a", make_pod("p6"))  # the delete of p3 left the window of 2 events
    with pytest.raises(errors.GoneError, match="too old") as gone:
        pods.list(ListOptions(limit=2, continue_token=first.continue_token))
    fresh = gone.value.status["metadata"]["continue"]
    rest = pods.list(ListOptions(limit=10, continue_token=fresh))
    assert [o["metadata"]["name"] for o in rest.items] == ["p2", "p4", "p5", "p6"]
    assert rest.resource_version == pods.list().resource_version
    assert rest.continue_token == ""


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
async def test_list_version_errors(
    any_pods: AnyResourceStorage, rv: str, match: str, error: type[errors.ApiError]
) -> None:
    await any_pods.acreate("a", make_pod("x"))
    await any_pods.acreate("a", make_pod("y"))
    with pytest.raises(error):
        await any_pods.alist(ListOptions(resource_version=rv, resource_version_match=match))


async def test_list_versions_that_are_served(any_pods: AnyResourceStorage) -> None:
    await any_pods.acreate("a", make_pod("x"))
    await any_pods.acreate("a", make_pod("y"))
    assert (await any_pods.alist(ListOptions(resource_version="0"))).resource_version == "p.2"
    assert (await any_pods.alist(ListOptions(resource_version="p.1"))).resource_version == "p.2"
    exact = await any_pods.alist(
        ListOptions(resource_version="p.2", resource_version_match="Exact")
    )
    assert exact.resource_version == "p.2"
    assert len(exact.items) == 2


async def test_clean_cluster_and_resource(
    storage: AnyStorage, any_pods: AnyResourceStorage
) -> None:
    await any_pods.acreate("a", make_pod("x", resource_version="10"))
    await any_pods.acreate("b", make_pod("y", resource_version="20"))
    assert any_pods.count("a") == 1
    await storage.aclean_cluster("a")
    assert not storage.has_cluster("a")
    assert names((await any_pods.alist()).items) == ["y"]
    assert any_pods.count("a") == 0
    await storage.aclean_cluster_resource("b", PODS)
    assert (await any_pods.alist()).items == []


def test_memory_get_resource_versions(mem: MemoryStorage, pods: ResourceStorage) -> None:
    pods.create("a", make_pod("x", resource_version="10"))
    pods.create("b", make_pod("y", resource_version="20"))
    assert mem.get_resource_versions("a") == {PODS: {"default/x": "10"}}
    mem.clean_cluster("a")
    assert mem.get_resource_versions("a") == {}


async def test_cluster_store_replace_emits_only_changes(
    storage: AnyStorage, any_pods: AnyResourceStorage
) -> None:
    store = any_pods.cluster_store("a")
    store.replace([make_pod("x", resource_version="1"), make_pod("y", resource_version="1")], "1")
    await storage.flush()
    before = (await any_pods.alist()).resource_version
    store.replace([make_pod("x", resource_version="1"), make_pod("z", resource_version="2")], "2")
    store.update(make_pod("x", resource_version="3"))
    store.delete(DeletedFinalStateUnknown("default/z", None))
    store.delete(make_pod("absent"))
    store.resync()
    await storage.flush()
    watch = await any_pods.awatch(ListOptions(resource_version=before))
    events = await watch.next_batch()
    watch.stop()
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "z"),
        ("DELETED", "y"),
        ("MODIFIED", "x"),
        ("DELETED", "z"),
    ]
    assert names((await any_pods.alist()).items) == ["x"]
    x = await any_pods.aget("a", "default", "x")
    assert x is not None
    assert x["metadata"]["resourceVersion"].endswith(".3")


def test_memory_cluster_store_reads(pods: ResourceStorage) -> None:
    store = ClusterResourceStore(pods, "a")
    store.replace([make_pod("x", resource_version="1"), make_pod("z", resource_version="2")], "2")
    assert sorted(store.list_keys()) == ["default/x", "default/z"]
    store.update(make_pod("x", resource_version="3"))
    assert store.get_by_key("default/x")["metadata"]["resourceVersion"].endswith(".3")  # type: ignore[index]
    store.delete(DeletedFinalStateUnknown("default/x", None))
    assert store.get(make_pod("x")) is None
    assert [o["metadata"]["name"] for o in store.list()] == ["z"]


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
        east = rs.list(ListOptions(resource_version=rv, resource_version_match="Exact"),
                       scope=ListScope(clusters=("east",)))
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
@given(
    phase=st.sampled_from(["Running", "Pending", None]),
    node=st.sampled_from(["n1", "n2", None]),
    labels=st.dictionaries(st.sampled_from(["app", "tier", "v"]), st.sampled_from(["a", "b"])),
    selector=st.sampled_from(
        ["", "app=a", "app!=a,tier", "!v", "app in (a,b),tier notin (b)", "v>0"]
    ),
    fields=st.sampled_from(
        [
            "",
            "status.phase=Running",
            "spec.nodeName!=n1",
            "metadata.name=x,metadata.namespace=default",
            "spec.nodeName=",
            "spec.restartPolicy=Always",
        ]
    ),
)
def test_selectors_decide_the_same_on_the_compact_skeleton(
    phase: str | None, node: str | None, labels: dict[str, str], selector: str, fields: str
) -> None:
    pod = make_pod("x", labels=labels)
    if phase is None:
        del pod["status"]["phase"]
    else:
        pod["status"]["phase"] = phase
    if node is None:
        pod["spec"].pop("nodeName", None)
    else:
        pod["spec"]["nodeName"] = node
    info = resources.BUILTIN_RESOURCES[[i.gvr for i in resources.BUILTIN_RESOURCES].index(PODS)]
    flt = object_filter(ListScope(), ListOptions(label_selector=selector, field_selector=fields),
                        info)
    paths = [path for path, _ in field_spec("", "Pod").fields.values()]
    assert flt.matches_object(selectable_skeleton(pod, paths)) == flt.matches_object(pod)
