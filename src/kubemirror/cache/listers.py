"""Listers: read-only, selector-aware views of an ``Indexer`` holding one kind of object.

Part of the cache layer (client-go ``tools/cache`` listers: ``GenericLister``,
``StoreToPodLister``, ``StoreToServiceLister``, ``StoreToControllerLister``,
``StoreToNodeLister``). They answer the questions controllers ask their local cache
("pods matching this selector", "services selecting this pod") without a request
to the API server. Objects are the plain dicts the Indexer holds.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Protocol

from kubemirror import errors, keys, types
from kubemirror.cache import index

__all__ = [
    "ControllerLister",
    "GenericLister",
    "LabelMatcher",
    "NamespaceLister",
    "NodeConditionLister",
    "NodeLister",
    "PodLister",
    "ServiceLister",
]


class LabelMatcher(Protocol):
    """Anything that can tell whether a label set matches it (a label selector)."""

    def matches(self, labels: Mapping[str, str]) -> bool: ...


def labels_of(obj: types.Obj) -> Mapping[str, str]:
    """``metadata.labels`` of ``obj``, or an empty mapping."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return {}
    found = meta.get("labels")
    return found if isinstance(found, Mapping) else {}


def _meta(obj: types.Obj, field: str) -> Any:
    meta = obj.get("metadata")
    return meta.get(field) if isinstance(meta, Mapping) else None


def _select(objs: list[Any], selector: LabelMatcher | None) -> list[types.Obj]:
    if selector is None:
        return objs
    return [obj for obj in objs if selector.matches(labels_of(obj))]


def _selector_matches(selector: object, labels: Mapping[str, str]) -> bool:
    """A ``spec.selector`` map selects ``labels``; an empty or missing one selects nothing."""
    if not isinstance(selector, Mapping) or not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _not_found(kind: str, name: str, message: str) -> errors.NotFoundError:
    return errors.NotFoundError(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": "NotFound",
            "details": {"name": name, "kind": kind},
            "code": 404,
        }
    )


class GenericLister:
    """Lists and gets objects of one resource from an ``Indexer``.

    The Indexer must use ``keys.meta_namespace_key`` keys (``"ns/name"`` or
    ``"name"``). Namespace-scoped reads use the index named ``namespace_index`` when
    the Indexer has it (O(objects in the namespace)); without it they scan every
    object. ``selector`` is anything with ``matches(labels)`` (e.g. a
    ``selectors.LabelSelector``); ``None`` selects everything. Returned objects are
    shared with the Indexer: do not mutate them. Thread-safe, never blocks.
    """

    __slots__ = ("indexer", "namespace_index")

    def __init__(
        self, indexer: index.Indexer, namespace_index: str = index.NAMESPACE_INDEX
    ) -> None:
        self.indexer = indexer
        self.namespace_index = namespace_index

    def list(self, selector: LabelMatcher | None = None) -> builtins.list[types.Obj]:
        """Every object whose labels match ``selector``."""
        return _select(self.indexer.list(), selector)

    def get(self, name: str) -> types.Obj | None:
        """The cluster-scoped object ``name``, or ``None``."""
        return self.indexer.get_by_key(name)

    def namespaced(self, namespace: str) -> NamespaceLister:
        """A lister restricted to ``namespace``."""
        return NamespaceLister(self, namespace)

    def _in_namespace(self, namespace: str) -> builtins.list[Any]:
        try:
            return self.indexer.by_index(self.namespace_index, namespace)
        except errors.UnknownIndexError:
            return [o for o in self.indexer.list() if (_meta(o, "namespace") or "") == namespace]


class NamespaceLister:
    """The objects of a ``GenericLister`` in one namespace. Same contract as its parent."""

    __slots__ = ("_parent", "namespace")

    def __init__(self, parent: GenericLister, namespace: str) -> None:
        self._parent = parent
        self.namespace = namespace

    def list(self, selector: LabelMatcher | None = None) -> builtins.list[types.Obj]:
        """Every object of the namespace whose labels match ``selector``."""
        return _select(self._parent._in_namespace(self.namespace), selector)

    def get(self, name: str) -> types.Obj | None:
        """The object ``name`` of the namespace, or ``None``. O(1)."""
        key = keys.object_key(self.namespace, name)
        return self._parent.indexer.get_by_key(key)


class PodLister(GenericLister):
    """A ``GenericLister`` over Pods (client-go ``StoreToPodLister``)."""

    __slots__ = ()

    def exists(self, pod: types.Obj) -> bool:
        """Whether a pod with ``pod``'s namespace and name is stored."""
        return self.indexer.get(pod) is not None


class ServiceLister(GenericLister):
    """A ``GenericLister`` over Services (client-go ``StoreToServiceLister``)."""

    __slots__ = ()

    def get_pod_services(self, pod: types.Obj) -> builtins.list[types.Obj]:
        """The services of ``pod``'s namespace whose ``spec.selector`` selects its labels.

        A service without a selector selects nothing. Raises ``NotFoundError`` if no
        service selects the pod.
        """
        namespace = _meta(pod, "namespace") or ""
        labels = labels_of(pod)
        found = [
            svc
            for svc in self._in_namespace(namespace)
            if _selector_matches((svc.get("spec") or {}).get("selector"), labels)
        ]
        if not found:
            raise _not_found(
                "services",
                str(_meta(pod, "name")),
                f"no service selects pod {namespace}/{_meta(pod, 'name')} "
                f"with labels {dict(labels)!r}",
            )
        return found


class ControllerLister(GenericLister):
    """A ``GenericLister`` over ReplicationControllers (client-go ``StoreToControllerLister``)."""

    __slots__ = ()

    def get_pod_controllers(self, pod: types.Obj) -> builtins.list[types.Obj]:
        """The controllers of ``pod``'s namespace whose ``spec.selector`` selects its labels.

        An empty selector selects nothing. Raises ``NotFoundError`` if none does.
        """
        namespace = _meta(pod, "namespace") or ""
        labels = labels_of(pod)
        found = [
            rc
            for rc in self._in_namespace(namespace)
            if _selector_matches((rc.get("spec") or {}).get("selector"), labels)
        ]
        if not found:
            raise _not_found(
                "replicationcontrollers",
                str(_meta(pod, "name")),
                f"no controller selects pod {namespace}/{_meta(pod, 'name')} "
                f"with labels {dict(labels)!r}",
            )
        return found

    def controllers_owning(self, pod: types.Obj) -> builtins.list[types.Obj]:
        """The stored controllers named by ``pod``'s controller ``ownerReferences``.

        A reference matches a stored object of the pod's namespace with that name
        whose ``uid`` and ``kind`` agree (when the stored object has them). Returns an
        empty list when nothing matches. O(owner references).
        """
        namespace = _meta(pod, "namespace") or ""
        refs = _meta(pod, "ownerReferences") or ()
        found = []
        for ref in refs:
            if not isinstance(ref, Mapping) or not ref.get("controller"):
                continue
            name = ref.get("name")
            if not isinstance(name, str) or not name:
                continue
            owner = self.namespaced(namespace).get(name)
            if owner is None:
                continue
            uid = _meta(owner, "uid")
            if uid and ref.get("uid") and uid != ref.get("uid"):
                continue
            kind = owner.get("kind")
            if kind and ref.get("kind") and kind != ref.get("kind"):
                continue
            found.append(owner)
        return found


class NodeLister(GenericLister):
    """A ``GenericLister`` over Nodes (client-go ``StoreToNodeLister``)."""

    __slots__ = ()

    def node_condition(self, condition_type: str, status: str) -> NodeConditionLister:
        """A lister of the nodes having condition ``condition_type`` with ``status``."""
        return NodeConditionLister(self, condition_type, status)

    def get_node_info(self, name: str) -> types.Obj:
        """The node ``name``; raises ``NotFoundError`` if it is not stored."""
        node = self.get(name)
        if node is None:
            raise _not_found("nodes", name, f"node {name!r} not found in the cache")
        return node


class NodeConditionLister:
    """Nodes having one condition type with one status (e.g. ``Ready`` = ``"True"``)."""

    __slots__ = ("_parent", "condition_type", "status")

    def __init__(self, parent: NodeLister, condition_type: str, status: str) -> None:
        self._parent = parent
        self.condition_type = condition_type
        self.status = status

    def list(self, selector: LabelMatcher | None = None) -> builtins.list[types.Obj]:
        """The matching nodes whose labels also match ``selector``."""
        return [node for node in self._parent.list(selector) if self._has_condition(node)]

    def _has_condition(self, node: types.Obj) -> bool:
        conditions = (node.get("status") or {}).get("conditions") or ()
        return any(
            isinstance(c, Mapping)
            and c.get("type") == self.condition_type
            and c.get("status") == self.status
            for c in conditions
        )
