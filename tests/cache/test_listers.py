"""Tests for kubemirror.cache.listers over a real Indexer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kubemirror import cache, errors, keys
from tests.objects import obj


class Equals:
    """A minimal ``LabelMatcher``: every given label must be present with that value."""

    def __init__(self, **want: str) -> None:
        self.want = want

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.want.items())


def indexed() -> cache.Indexer:
    return cache.Indexer(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})


def pods() -> list[dict[str, Any]]:
    return [
        obj("web-1", "prod", labels={"app": "web"}),
        obj("web-2", "prod", labels={"app": "web", "canary": "yes"}),
        obj("db-1", "prod", labels={"app": "db"}),
        obj("web-1", "dev", labels={"app": "web"}),
        obj("bare", "dev"),
    ]


def named(objs: list[Any]) -> list[str]:
    return sorted(f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in objs)


@pytest.mark.parametrize("make", [indexed, cache.new_store], ids=["namespace-index", "no-index"])
def test_generic_lister(make: Any) -> None:
    ix = make()
    for p in pods():
        ix.add(p)
    lister = cache.GenericLister(ix)
    assert len(lister.list()) == 5
    assert named(lister.list(Equals(app="web"))) == ["dev/web-1", "prod/web-1", "prod/web-2"]
    prod = lister.namespaced("prod")
    assert named(prod.list()) == ["prod/db-1", "prod/web-1", "prod/web-2"]
    assert named(prod.list(Equals(canary="yes"))) == ["prod/web-2"]
    got = prod.get("db-1")
    assert got is not None
    assert got["metadata"]["labels"] == {"app": "db"}
    assert prod.get("nope") is None
    assert lister.namespaced("empty").list() == []


def test_namespaced_lister_uses_the_index() -> None:
    """With the namespace index, a namespace read never scans the whole store."""

    class NoScans(cache.Indexer):
        def list(self, *, copy: bool = False) -> list[Any]:
            raise AssertionError("full scan")

    ix = NoScans(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})
    for p in pods():
        ix.add(p)
    assert named(cache.GenericLister(ix).namespaced("dev").list()) == ["dev/bare", "dev/web-1"]


def test_cluster_scoped_get() -> None:
    ix = cache.new_store()
    ix.add(obj("node-1", None))
    lister = cache.GenericLister(ix)
    assert lister.get("node-1") is not None
    assert lister.namespaced("").get("node-1") is not None


def test_pod_lister() -> None:
    ix = indexed()
    for p in pods():
        ix.add(p)
    lister = cache.PodLister(ix)
    assert named(lister.namespaced("dev").list(Equals(app="web"))) == ["dev/web-1"]
    assert lister.exists(obj("db-1", "prod"))
    assert not lister.exists(obj("db-1", "dev"))


def service(name: str, namespace: str, selector: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80}]}
    if selector is not None:
        spec["selector"] = selector
    return obj(name, namespace, spec=spec)


def test_get_pod_services() -> None:
    ix = indexed()
    for svc in (
        service("web", "prod", {"app": "web"}),
        service("canary", "prod", {"app": "web", "canary": "yes"}),
        service("other-ns", "dev", {"app": "web"}),
        service("headless", "prod", None),
        service("empty", "prod", {}),
    ):
        ix.add(svc)
    lister = cache.ServiceLister(ix)
    web2 = obj("web-2", "prod", labels={"app": "web", "canary": "yes"})
    assert named(lister.get_pod_services(web2)) == ["prod/canary", "prod/web"]
    assert named(lister.get_pod_services(obj("web-1", "prod", labels={"app": "web"}))) == [
        "prod/web"
    ]
    with pytest.raises(errors.NotFoundError, match="no service selects pod prod/db-1") as info:
        lister.get_pod_services(obj("db-1", "prod", labels={"app": "db"}))
    assert info.value.code == 404


def rc(name: str, namespace: str, selector: dict[str, str], uid: str = "") -> dict[str, Any]:
    o = obj(name, namespace, spec={"selector": selector})
    o["kind"] = "ReplicationController"
    if uid:
        o["metadata"]["uid"] = uid
    return o


def test_get_pod_controllers() -> None:
    ix = indexed()
    for c in (
        rc("web", "prod", {"app": "web"}),
        rc("any", "prod", {}),
        rc("x", "dev", {"app": "web"}),
    ):
        ix.add(c)
    lister = cache.ControllerLister(ix)
    assert named(lister.get_pod_controllers(obj("p", "prod", labels={"app": "web"}))) == [
        "prod/web"
    ]
    with pytest.raises(errors.NotFoundError):
        lister.get_pod_controllers(obj("p", "prod", labels={"app": "db"}))


def test_controllers_owning() -> None:
    ix = indexed()
    ix.add(rc("web", "prod", {"app": "web"}, uid="u-web"))
    ix.add(rc("stale", "prod", {"app": "web"}, uid="u-new"))
    lister = cache.ControllerLister(ix)

    def ref(
        name: str, uid: str, controller: bool = True, kind: str = "ReplicationController"
    ) -> Any:
        return {"kind": kind, "name": name, "uid": uid, "controller": controller}

    pod = obj("p", "prod")
    pod["metadata"]["ownerReferences"] = [
        ref("web", "u-web"),
        ref("stale", "u-old"),  # same name, different uid: a recreated controller
        ref("missing", "u-x"),
        ref("web", "u-web", controller=False),
        ref("web", "u-web", kind="ReplicaSet"),
        "garbage",
    ]
    assert named(lister.controllers_owning(pod)) == ["prod/web"]
    assert lister.controllers_owning(obj("orphan", "prod")) == []


def node(name: str, **conditions: str) -> dict[str, Any]:
    return obj(
        name,
        None,
        status={"conditions": [{"type": t, "status": s} for t, s in conditions.items()]},
    )


def test_node_lister() -> None:
    ix = cache.new_store()
    for n in (
        node("n1", Ready="True"),
        node("n2", Ready="False", DiskPressure="True"),
        node("n3"),
    ):
        ix.add(n)
    lister = cache.NodeLister(ix)
    assert named(lister.node_condition("Ready", "True").list()) == ["/n1"]
    assert named(lister.node_condition("Ready", "False").list()) == ["/n2"]
    assert lister.node_condition("MemoryPressure", "True").list() == []
    assert lister.get_node_info("n2")["metadata"]["name"] == "n2"
    with pytest.raises(errors.NotFoundError, match="'n9'"):
        lister.get_node_info("n9")
