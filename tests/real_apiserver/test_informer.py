"""SharedInformer, listers and Poller against the genuine kube-apiserver.

Every scenario ends with the informer's indexer equal to a fresh LIST from the
server (key, resourceVersion and, object by object, the content), and the handler
calls replayed onto a dict giving the same state. The real server differs from a
toy one in ways an informer must absorb: every object carries ``managedFields``,
``uid`` and ``creationTimestamp``; deployments and custom resources have a
``generation`` bumped by spec changes only and a ``status`` subresource; a no-op
update keeps the resourceVersion (and sends no event); a watch with a label
selector reports an object relabelled out of (into) the selection as DELETED
(ADDED); a pod delete marks the pod first (MODIFIED with ``deletionTimestamp``)
and, with no kubelet, removes a bound pod only when forced (grace period 0).

Informers watch all namespaces restricted to a label unique to the test
(``RUN_LABEL``): the server is shared with concurrent tests, and the namespace
index then has more than one namespace to answer for.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from kubemirror import cache, errors, keys, selectors
from kubemirror.cache import Indexer, listers
from kubemirror.cache.index import NAMESPACE_INDEX
from kubemirror.client import Discovery, KubeClient, ListOptions, resource_path
from kubemirror.envtest import EnvTest
from kubemirror.informer import STORE_COMPACT, STORE_DICT, SharedInformer
from kubemirror.listwatch import ListWatch
from kubemirror.reflector import Backoff, Poller
from kubemirror.types import GroupVersionResource
from tests.polling import eventually
from tests.real_apiserver.conftest import (
    CONFIGMAPS,
    CRDS,
    DEPLOYMENTS,
    PODS,
    REAL,
    ServerUnderTest,
    configmap,
    create_namespace,
    deployment,
    pod,
    unique,
)

RUN_LABEL = "kubemirror.test/run"
WIDGET_KIND = "Widget"
STORES = [STORE_DICT, STORE_COMPACT]
FORCE_DELETE = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}

# -- the CustomResourceDefinition ---------------------------------------------------------------

_widgets: dict[str, GroupVersionResource] = {}


async def until(check: Callable[[], Awaitable[bool]], within: float = 15.0,
                what: str = "") -> None:
    """Poll an async ``check`` until it holds; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s: {what}")
        await asyncio.sleep(0.01)


def widget_crd(group: str) -> dict[str, Any]:
    """A namespaced ``Widget`` kind with a status subresource."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": WIDGET_KIND,
                      "listKind": "WidgetList"},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": open_object, "status": open_object},
                }},
                "subresources": {"status": {}},
            }],
        },
    }


async def widget_resource(env: EnvTest, client: KubeClient) -> GroupVersionResource:
    """The session's Widget CRD on ``env``: created once (unique group), Established,
    served and discoverable."""
    found = _widgets.get(env.url)
    if found is not None:
        return found
    group = f"w{uuid.uuid4().hex[:10]}.mirror.kubemirror.test"
    crd = widget_crd(group)
    name = crd["metadata"]["name"]
    await client.create(CRDS, crd)

    async def established() -> bool:
        conditions = (await client.get(CRDS, name)).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions)

    await until(established, what=f"CRD {name} Established")
    gvr = GroupVersionResource(group, "v1", "widgets")

    async def discoverable() -> bool:
        try:
            await Discovery(client).resolve(f"widgets.{group}")
            await client.list(gvr, "default", ListOptions())
        except errors.KubemirrorError:
            return False
        return True

    await until(discoverable, what=f"widgets.{group} served and in discovery")
    _widgets[env.url] = gvr
    return gvr


@pytest_asyncio.fixture
async def widgets(real_env: EnvTest, real_client: KubeClient) -> GroupVersionResource:
    return await widget_resource(real_env, real_client)


# -- objects of any kind ------------------------------------------------------------------------


def resource_name(gvr: GroupVersionResource) -> str:
    """What a user types for ``ListWatch.for_resource``: ``pods``, ``deployments.apps``."""
    return f"{gvr.resource}.{gvr.group}" if gvr.group else gvr.resource


def new_object(gvr: GroupVersionResource, name: str, labels: dict[str, str],
               i: int = 0) -> dict[str, Any]:
    if gvr == PODS:
        return pod(name, dict(labels))
    if gvr == CONFIGMAPS:
        return configmap(name, {"i": str(i)}, dict(labels))
    if gvr == DEPLOYMENTS:
        obj = deployment(name)
        obj["metadata"]["labels"].update(labels)
        return obj
    return {
        "apiVersion": f"{gvr.group}/{gvr.version}",
        "kind": WIDGET_KIND,
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"size": i},
    }


def mutate(gvr: GroupVersionResource, obj: dict[str, Any], i: int) -> None:
    """A real change (to the spec where the kind allows one; a pod's spec is immutable)."""
    if gvr == PODS:
        obj["metadata"].setdefault("annotations", {})["touched"] = str(i)
    elif gvr == CONFIGMAPS:
        obj["data"] = {"i": f"changed-{i}"}
    elif gvr == DEPLOYMENTS:
        obj["spec"]["replicas"] += 1
    else:
        obj["spec"]["size"] = 1000 + i


def changing(gvr: GroupVersionResource, i: int) -> Callable[[dict[str, Any]], None]:
    return lambda obj: mutate(gvr, obj, i)


async def update(client: KubeClient, gvr: GroupVersionResource, namespace: str, name: str,
                 change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = await client.get(gvr, name, namespace)
    change(obj)
    return await client.replace(gvr, obj, namespace)


def rv(obj: Any) -> str:
    return str(obj["metadata"]["resourceVersion"])


def full(obj: Any) -> Any:
    """A handler's object in full (a compact store hands out partial views)."""
    return obj.decode() if isinstance(obj, cache.RawObject) else obj


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(obj)
    stripped["metadata"].pop("managedFields", None)
    return stripped


async def server_objects(client: KubeClient, gvr: GroupVersionResource, namespace: str | None,
                         selector: str = "") -> dict[str, dict[str, Any]]:
    page = await client.list(gvr, namespace, ListOptions(label_selector=selector))
    return {keys.meta_namespace_key(o): o for o in page.items}


def indexer_versions(indexer: Indexer) -> dict[str, str]:
    if isinstance(indexer, cache.CompactIndexer):  # partial views: no decode
        return {k: rv(v) for k in indexer.list_keys()
                if (v := indexer.get_view_by_key(k)) is not None}
    return {keys.meta_namespace_key(o): rv(o) for o in indexer.list()}


class Replay:
    """Applies handler calls to a dict, recording any call impossible for a consistent stream
    (an add of a known key, an update whose old object is not the last one or keeps the
    resourceVersion, a delete of an unknown key)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.problems: list[str] = []
        self.adds = 0
        self.updates: list[tuple[Any, Any]] = []
        self.deletes: list[Any] = []

    def on_add(self, obj: Any) -> None:
        self.adds += 1
        key = keys.meta_namespace_key(obj)
        if key in self.state:
            self.problems.append(f"add of existing {key}")
        self.state[key] = obj

    def on_update(self, old: Any, new: Any) -> None:
        self.updates.append((old, new))
        key = keys.meta_namespace_key(new)
        last = self.state.get(key)
        # A compact store hands out a fresh partial view of the old object: equal, not same.
        if last is not old and not (isinstance(old, cache.RawObject) and last == old):
            self.problems.append(f"update of {key} with an old object that is not the last one")
        if rv(old) == rv(new):
            self.problems.append(f"update of {key} keeping resourceVersion {rv(new)}")
        self.state[key] = new

    def on_delete(self, obj: Any) -> None:
        self.deletes.append(obj)
        key = keys.meta_namespace_key(obj)
        if key not in self.state:
            self.problems.append(f"delete of unknown {key}")
        self.state.pop(key, None)

    def versions(self) -> dict[str, str]:
        return {k: rv(v) for k, v in self.state.items()}


def new_informer(lw: ListWatch, store: str, **kwargs: Any) -> SharedInformer:
    kwargs.setdefault("backoff", Backoff(initial=0.01, cap=0.1))
    return SharedInformer(lw, indexers={NAMESPACE_INDEX: keys.meta_namespace_index_func},
                          store=store, **kwargs)


async def converge(client: KubeClient, gvr: GroupVersionResource, namespace: str | None,
                   selector: str, informer: SharedInformer,
                   replay: Replay) -> dict[str, dict[str, Any]]:
    """Wait until indexer and replay equal the server's LIST; returns that LIST by key."""
    expected = await server_objects(client, gvr, namespace, selector)
    versions = {k: rv(o) for k, o in expected.items()}
    await eventually(
        lambda: indexer_versions(informer.get_indexer()) == versions
        and replay.versions() == versions,
        within=15, what="indexer and handler replay equal the server's LIST",
    )
    assert replay.problems == []
    return expected


def assert_same_objects(informer: SharedInformer, expected: dict[str, dict[str, Any]]) -> None:
    """Object by object, what the indexer's read API returns is what the server listed
    (minus the managedFields a compact store cuts by default, which the server has)."""
    indexer = informer.get_indexer()
    assert sorted(indexer.list_keys()) == sorted(expected)
    stripped = "metadata.managedFields" in informer.ignore_fields
    for key, served in expected.items():
        assert served["metadata"]["managedFields"], key  # the real server fills them
        assert served["metadata"]["uid"]
        assert served["metadata"]["creationTimestamp"]
        want = without_managed_fields(served) if stripped else served
        assert indexer.get_by_key(key) == want, key
    assert sorted(o["metadata"]["uid"] for o in indexer.list()) == sorted(
        o["metadata"]["uid"] for o in expected.values())


# -- the informer mirrors every kind ------------------------------------------------------------

KINDS = ["pods", "configmaps", "deployments.apps", "widgets"]


async def gvr_for(kind: str, request: pytest.FixtureRequest) -> GroupVersionResource:
    if kind == "widgets":
        gvr: GroupVersionResource = await widget_resource(
            request.getfixturevalue("real_env"), request.getfixturevalue("real_client"))
        return gvr
    return {"pods": PODS, "configmaps": CONFIGMAPS, "deployments.apps": DEPLOYMENTS}[kind]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("store", STORES)
async def test_informer_mirrors_the_real_server(
    real_client: KubeClient, namespace: str, request: pytest.FixtureRequest, store: str,
    kind: str,
) -> None:
    gvr = await gvr_for(kind, request)
    client = real_client
    namespaces = [namespace, await create_namespace(client)]
    run = unique("run")
    selector = f"{RUN_LABEL}={run}"
    mine = {RUN_LABEL: run}

    def where(i: int) -> str:
        return namespaces[i % 2]

    for i in range(30):
        await client.create(gvr, new_object(gvr, f"o-{i:02}", mine, i), where(i))
    lw = await ListWatch.for_resource(client, resource_name(gvr), None, label_selector=selector)
    assert lw.gvr == gvr
    assert lw.namespace is None
    replay = Replay()
    informer = new_informer(lw, store, page_size=7)  # several pages, real continue tokens
    informer.add_event_handler(replay)
    async with informer:
        assert await informer.wait_for_sync(10)
        assert informer.reflector.stats.lists == 1
        await converge(client, gvr, None, selector, informer, replay)
        assert replay.adds == 30
        # while it runs: updates, deletes, creates, and objects moving across the selector
        for i in range(6):
            await update(client, gvr, where(i), f"o-{i:02}", changing(gvr, i))
        await update(client, gvr, where(0), "o-00", lambda o: mutate(gvr, o, 99))
        for i in range(6, 11):
            await client.delete(gvr, f"o-{i:02}", where(i))
        for i in range(5):
            await client.create(gvr, new_object(gvr, f"n-{i}", mine, i), where(i))
        outsider = new_object(gvr, "outsider", {RUN_LABEL: "someone-else"})
        await client.create(gvr, outsider, namespace)

        def relabel_out(obj: dict[str, Any]) -> None:
            obj["metadata"]["labels"][RUN_LABEL] = "gone"

        def relabel_in(obj: dict[str, Any]) -> None:
            obj["metadata"]["labels"][RUN_LABEL] = run

        await update(client, gvr, where(11), "o-11", relabel_out)
        await update(client, gvr, namespace, "outsider", relabel_in)
        expected = await converge(client, gvr, None, selector, informer, replay)
    assert f"{namespace}/outsider" in expected
    assert f"{where(11)}/o-11" not in expected
    assert len(expected) == 30 - 5 - 1 + 5 + 1
    # Exactly the calls a consistent stream gives: a pod's delete is MODIFIED (marked
    # with deletionTimestamp) then DELETED; relabelling out of (into) the selection is
    # a DELETED (ADDED) from the server's selector-filtered watch.
    assert replay.adds == 30 + 5 + 1
    marked = 5 if gvr == PODS else 0
    assert len(replay.updates) == 7 + marked
    assert len(replay.deletes) == 5 + 1
    assert_same_objects(informer, expected)
    for ns in namespaces:
        served = await server_objects(client, gvr, ns, selector)
        indexer = informer.get_indexer()
        assert sorted(indexer.index_keys(NAMESPACE_INDEX, ns)) == sorted(served)
        assert {keys.meta_namespace_key(o): rv(o) for o in indexer.by_index(NAMESPACE_INDEX, ns)
                } == {k: rv(o) for k, o in served.items()}
    assert informer.reflector.stats.errors == 0


# -- real-server specifics ----------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
async def test_pod_graceful_deletion_is_seen_as_modified_then_deleted(
    real_client: KubeClient, namespace: str, store: str
) -> None:
    """No kubelet: a bound pod's DELETE only marks it (deletionTimestamp, 30 s grace) and it
    stays; an unbound pod is marked with grace 0 and removed at once; DELETE with
    gracePeriodSeconds=0 removes the bound one."""
    client = real_client
    await client.create(PODS, pod("bound", node="node-a"), namespace)
    await client.create(PODS, pod("unbound"), namespace)
    await client.create(PODS, pod("bystander"), namespace)
    lw = await ListWatch.for_resource(client, "po", namespace)
    replay = Replay()
    informer = new_informer(lw, store)
    informer.add_event_handler(replay)
    indexer = informer.get_indexer()
    key = f"{namespace}/bound"
    async with informer:
        assert await informer.wait_for_sync(10)
        answer = await client.delete(PODS, "bound", namespace)
        assert answer["kind"] == "Pod"  # not a Status: the pod is still there
        assert answer["metadata"]["deletionTimestamp"]
        await eventually(lambda: len(replay.updates) == 1, what="the MODIFIED of the bound pod")
        old, new = replay.updates[0]
        assert keys.meta_namespace_key(new) == key
        assert "deletionTimestamp" not in old["metadata"]
        assert new["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]
        stored = indexer.get_by_key(key)
        assert stored is not None
        assert stored["metadata"]["deletionGracePeriodSeconds"] == 30
        assert stored["metadata"]["generation"] == 2  # the mark bumps a pod's generation
        assert rv(stored) == rv(answer)
        # it stays: the unbound pod's delete (later in the same stream) goes all the way
        await client.delete(PODS, "unbound", namespace)
        await eventually(lambda: len(replay.deletes) == 1, what="the unbound pod deleted")
        assert f"{namespace}/unbound" not in indexer
        assert key in indexer
        assert [keys.meta_namespace_key(o) for o in replay.deletes] == [f"{namespace}/unbound"]
        assert len(replay.updates) == 2  # the unbound pod was marked (grace 0) first
        unbound_marked = full(replay.updates[1][1])
        assert unbound_marked["metadata"]["deletionTimestamp"]
        assert unbound_marked["metadata"].get("deletionGracePeriodSeconds") == 0
        assert (await client.get(PODS, "bound", namespace))["metadata"]["deletionTimestamp"]
        # forced: grace period 0
        await client.request("DELETE", resource_path(PODS, namespace, "bound"), body=FORCE_DELETE)
        await eventually(lambda: key not in indexer, what="the bound pod deleted")
        expected = await converge(client, PODS, namespace, "", informer, replay)
    assert list(expected) == [f"{namespace}/bystander"]
    assert [keys.meta_namespace_key(o) for o in replay.deletes] == [
        f"{namespace}/unbound", key]
    assert replay.deletes[1]["metadata"]["deletionTimestamp"]
    with pytest.raises(errors.NotFoundError):
        await client.get(PODS, "bound", namespace)


@pytest.mark.parametrize("kind", ["deployments.apps", "widgets"])
@pytest.mark.parametrize("store", STORES)
async def test_generation_and_status_subresource(
    real_client: KubeClient, namespace: str, request: pytest.FixtureRequest, store: str,
    kind: str,
) -> None:
    """Spec changes bump metadata.generation, label and status changes do not; status is
    written through /status only (a main-resource PUT ignores it); a no-op PUT keeps the
    resourceVersion and sends no event. The informer follows each step exactly."""
    gvr = await gvr_for(kind, request)
    client = real_client
    lw = await ListWatch.for_resource(client, resource_name(gvr), namespace)
    replay = Replay()
    informer = new_informer(lw, store)
    informer.add_event_handler(replay)
    indexer = informer.get_indexer()
    key = f"{namespace}/thing"
    created = await client.create(gvr, new_object(gvr, "thing", {}), namespace)
    assert created["metadata"]["generation"] == 1

    async def seen(served: dict[str, Any], updates: int) -> dict[str, Any]:
        await eventually(lambda: len(replay.updates) == updates, what=f"{updates} updates")
        stored = indexer.get_by_key(key)
        assert stored is not None
        assert rv(stored) == rv(served)
        assert stored["metadata"]["generation"] == served["metadata"]["generation"]
        assert stored.get("status") == served.get("status")
        return served

    async with informer:
        assert await informer.wait_for_sync(10)
        spec = await seen(await update(client, gvr, namespace, "thing",
                                       lambda o: mutate(gvr, o, 1)), 1)
        assert spec["metadata"]["generation"] == 2

        def label(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("labels", {})["note"] = "metadata-only"

        meta = await seen(await update(client, gvr, namespace, "thing", label), 2)
        assert meta["metadata"]["generation"] == 2
        assert int(rv(meta)) > int(rv(spec))
        noop = await update(client, gvr, namespace, "thing", lambda o: None)
        assert rv(noop) == rv(meta)  # nothing written: no new version, no event
        status_path = resource_path(gvr, namespace, "thing") + "/status"
        with_status = dict(noop, status={"observedGeneration": 2, "note": "from status"})
        status = await seen(await client.request("PUT", status_path, body=with_status), 3)
        assert status["status"]["observedGeneration"] == 2
        assert status["metadata"]["generation"] == 2

        def rewrite_status_and_label(obj: dict[str, Any]) -> None:
            obj["status"] = {"observedGeneration": 7}
            obj["metadata"].setdefault("labels", {})["relabelled"] = "yes"

        main = await seen(await update(client, gvr, namespace, "thing",
                                       rewrite_status_and_label), 4)
        assert main["status"] == status["status"]  # the main resource ignores status
        assert main["metadata"]["generation"] == 2

        def annotate(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("annotations", {})["note"] = "metadata only"

        # apps/v1 Deployments also count annotation changes as a new generation
        annotated = await seen(await update(client, gvr, namespace, "thing", annotate), 5)
        bumped = 3 if gvr == DEPLOYMENTS else 2
        assert annotated["metadata"]["generation"] == bumped
        await converge(client, gvr, namespace, "", informer, replay)
    versions = [int(rv(new)) for _, new in replay.updates]
    assert versions == sorted(set(versions))
    assert [new["metadata"]["generation"] for _, new in replay.updates] == [2, 2, 2, 2, bumped]


# -- listers over the informer's indexer --------------------------------------------------------

LABELS: list[dict[str, str]] = [
    {"app": app, "tier": tier} if tier else {"app": app}
    for app in ("web", "db", "api") for tier in ("cache", "front", "")
] + [{"tier": "cache"}, {}]
SELECTORS = ["app=web", "app in (web,db)", "tier!=cache", "!tier"]


@pytest.mark.parametrize("selector", SELECTORS,
                         ids=["equals", "set-in", "not-equals", "does-not-exist"])
@pytest.mark.parametrize("store", STORES)
async def test_lister_selects_exactly_as_the_server(
    real_client: KubeClient, namespace: str, store: str, selector: str
) -> None:
    client = real_client
    namespaces = [namespace, await create_namespace(client)]
    run = unique("run")
    for n, ns in enumerate(namespaces):
        for i, labels in enumerate(LABELS):
            if (i + n) % 3 == 2:
                continue  # the namespaces hold different subsets
            await client.create(CONFIGMAPS, configmap(f"cm-{i}", labels={**labels,
                                                                         RUN_LABEL: run}), ns)
    lw = await ListWatch.for_resource(client, "cm", None, label_selector=f"{RUN_LABEL}={run}")
    informer = new_informer(lw, store)
    lister = listers.GenericLister(informer.get_indexer())
    parsed = selectors.LabelSelector.parse(selector)
    async with informer:
        assert await informer.wait_for_sync(10)
    served_all = await server_objects(client, CONFIGMAPS, None, f"{selector},{RUN_LABEL}={run}")
    assert served_all  # every selector selects something here
    assert sorted(keys.meta_namespace_key(o) for o in lister.list(parsed)) == sorted(served_all)
    for ns in namespaces:
        served = await server_objects(client, CONFIGMAPS, ns, selector)
        listed = lister.namespaced(ns).list(parsed)
        assert sorted(o["metadata"]["name"] for o in listed) == sorted(
            o["metadata"]["name"] for o in served.values())
        for o in listed:  # a compact store cuts managedFields by default
            want = served[keys.meta_namespace_key(o)]
            assert o == (without_managed_fields(want) if store == STORE_COMPACT else want)
        assert 0 < len(listed) < len(lister.namespaced(ns).list())
        for o in served.values():
            assert lister.namespaced(ns).get(o["metadata"]["name"]) is not None


# -- Poller over the real LIST ------------------------------------------------------------------


@pytest.mark.parametrize("gvr", [CONFIGMAPS, PODS, DEPLOYMENTS],
                         ids=["configmaps", "pods", "deployments"])
async def test_poller_keeps_a_store_equal_to_the_real_list(
    real_client: KubeClient, namespace: str, gvr: GroupVersionResource
) -> None:
    client = real_client
    for i in range(5):
        await client.create(gvr, new_object(gvr, f"p-{i}", {}, i), namespace)

    async def get() -> list[dict[str, Any]]:
        return list((await client.list(gvr, namespace, ListOptions())).items)

    store = Indexer()

    async def equal_to_server() -> None:
        served = await server_objects(client, gvr, namespace)
        versions = {k: rv(o) for k, o in served.items()}
        await eventually(lambda: indexer_versions(store) == versions, within=10,
                         what="the polled store equals the server")
        for k, o in served.items():
            assert store.get_by_key(k) == o

    async with Poller(get, 0.02, store) as poller:
        await equal_to_server()
        await update(client, gvr, namespace, "p-0", lambda o: mutate(gvr, o, 1))
        await client.request("DELETE", resource_path(gvr, namespace, "p-1"), body=FORCE_DELETE)
        await client.create(gvr, new_object(gvr, "p-new", {}), namespace)
        await equal_to_server()
        assert f"{namespace}/p-1" not in store
        assert f"{namespace}/p-new" in store
    assert poller.errors == 0
    assert poller.polls >= 2


# -- parity: the same scenarios against both servers --------------------------------------------


@pytest.mark.parametrize("store", STORES)
async def test_informer_replays_to_the_server_state_on_both_servers(
    api: ServerUnderTest, store: str
) -> None:
    client, ns = api.client, api.namespace
    run = unique("run")
    selector = f"{RUN_LABEL}={run}"
    for i in range(20):
        await client.create(CONFIGMAPS, configmap(f"c-{i}", labels={RUN_LABEL: run}), ns)
    await client.create(CONFIGMAPS, configmap("outside"), ns)
    lw = await ListWatch.for_resource(client, "configmaps", ns, label_selector=selector)
    replay = Replay()
    informer = new_informer(lw, store, page_size=6)
    informer.add_event_handler(replay)
    async with informer:
        assert await informer.wait_for_sync(10)
        for i in range(5):
            await update(client, CONFIGMAPS, ns, f"c-{i}", changing(CONFIGMAPS, i))
        for i in range(5, 9):
            await client.delete(CONFIGMAPS, f"c-{i}", ns)
        await client.create(CONFIGMAPS, configmap("c-new", labels={RUN_LABEL: run}), ns)

        def relabel(obj: dict[str, Any], value: str) -> None:
            obj["metadata"].setdefault("labels", {})[RUN_LABEL] = value

        await update(client, CONFIGMAPS, ns, "c-9", lambda o: relabel(o, "gone"))
        await update(client, CONFIGMAPS, ns, "outside", lambda o: relabel(o, run))
        expected = await converge(client, CONFIGMAPS, ns, selector, informer, replay)
    assert f"{ns}/outside" in expected
    assert f"{ns}/c-9" not in expected
    assert (replay.adds, len(replay.updates), len(replay.deletes)) == (20 + 1 + 1, 5, 4 + 1)
    assert sorted(informer.get_indexer().list_keys()) == sorted(expected)
    for key, served in expected.items():
        stored = informer.get_indexer().get_by_key(key)
        assert stored is not None
        assert stored["data"] == served["data"]
        assert stored["metadata"]["uid"] == served["metadata"]["uid"]
        assert ("managedFields" in served["metadata"]) is (api.kind == REAL)


async def test_noop_update_keeps_the_resource_version_on_both_servers(
    api: ServerUnderTest,
) -> None:
    """An informer never sees an update with an unchanged resourceVersion, whatever the server
    does with a PUT that changes nothing (the real one writes nothing)."""
    client, ns = api.client, api.namespace
    await client.create(CONFIGMAPS, configmap("same"), ns)
    lw = await ListWatch.for_resource(client, "configmaps", ns)
    replay = Replay()
    informer = new_informer(lw, STORE_DICT)
    informer.add_event_handler(replay)
    async with informer:
        assert await informer.wait_for_sync(10)
        before = await client.get(CONFIGMAPS, "same", ns)
        after = await client.replace(CONFIGMAPS, before, ns)
        if api.kind == REAL:
            assert rv(after) == rv(before)
        await update(client, CONFIGMAPS, ns, "same", lambda o: mutate(CONFIGMAPS, o, 1))
        await converge(client, CONFIGMAPS, ns, "", informer, replay)
    noop_events = 0 if rv(after) == rv(before) else 1
    assert len(replay.updates) == 1 + noop_events
    assert replay.problems == []


async def test_late_handler_first_receives_the_current_contents_on_both_servers(
    api: ServerUnderTest,
) -> None:
    """tests/test_informer.py's scenario of the same name, against both servers."""
    client, ns = api.client, api.namespace
    for name in ("a", "b", "c"):
        await client.create(PODS, pod(name), ns)
    informer = new_informer(await ListWatch.for_resource(client, "pods", ns), STORE_DICT)
    async with informer:
        assert await informer.wait_for_sync(10)
        late = Replay()
        reg = informer.add_event_handler(late)
        await eventually(lambda: reg.has_synced())
        assert sorted(late.state) == [f"{ns}/a", f"{ns}/b", f"{ns}/c"]
        await client.create(PODS, pod("d"), ns)
        await eventually(lambda: f"{ns}/d" in late.state)
    assert late.problems == []


async def test_removed_handler_receives_nothing_more_on_both_servers(
    api: ServerUnderTest,
) -> None:
    """tests/test_informer.py's scenario of the same name, against both servers."""
    client, ns = api.client, api.namespace
    kept, removed = Replay(), Replay()
    informer = new_informer(await ListWatch.for_resource(client, "pods", ns), STORE_DICT)
    informer.add_event_handler(kept)
    reg = informer.add_event_handler(removed)
    async with informer:
        await client.create(PODS, pod("a"), ns)
        await eventually(lambda: len(removed.state) == 1)
        await informer.remove_event_handler(reg)
        await client.create(PODS, pod("b"), ns)
        await eventually(lambda: len(kept.state) == 2)
    assert list(removed.state) == [f"{ns}/a"]

