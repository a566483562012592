"""Resource type descriptions served by the multi-cluster API (multicluster layer).

A ``ResourceInfo`` says everything discovery and the HTTP routes need about one
resource type: group/version/resource, kind, scope, singular and short names,
verbs. ``BUILTIN_RESOURCES`` lists the core and common grouped resources every
``KubeApiServer`` serves out of the box; CRD-style types are added at run time.
Immutable values, safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubemirror.types import GroupVersionResource

__all__ = [
    "ALL_VERBS",
    "BUILTIN_RESOURCES",
    "READ_VERBS",
    "ResourceInfo",
    "guess_kind",
]

READ_VERBS: tuple[str, ...] = ("get", "list", "watch")
ALL_VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")


def guess_kind(resource: str) -> str:
    """A best-effort Kind for a plural resource name (``"ingresses"`` -> ``"Ingress"``)."""
    if resource.endswith("ies"):
        singular = resource[:-3] + "y"
    elif resource.endswith(("sses", "ches", "shes", "xes")):
        singular = resource[:-2]
    elif resource.endswith("s"):
        singular = resource[:-1]
    else:
        singular = resource
    return singular[:1].upper() + singular[1:]


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One resource type: its GVR, ``kind``, scope and the names kubectl resolves.

    ``kind``/``list_kind``/``singular`` default from the plural when left empty.
    """

    gvr: GroupVersionResource
    kind: str = ""
    namespaced: bool = True
    list_kind: str = ""
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS

    def __post_init__(self) -> None:
        kind = self.kind or guess_kind(self.gvr.resource)
        object.__setattr__(self, "kind", kind)
        if not self.list_kind:
            object.__setattr__(self, "list_kind", f"{kind}List")
        if not self.singular:
            object.__setattr__(self, "singular", kind.lower())

    @property
    def api_version(self) -> str:
        """``v1`` for core, ``group/version`` otherwise."""
        return self.gvr.api_version


def _core(
    resource: str, kind: str, *, namespaced: bool = True, short: tuple[str, ...] = ()
) -> ResourceInfo:
    return ResourceInfo(
        GroupVersionResource("", "v1", resource),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=("all",) if resource in {"pods", "services", "replicationcontrollers"} else (),
    )


def _grouped(group: str, resource: str, kind: str, short: tuple[str, ...] = ()) -> ResourceInfo:
    return ResourceInfo(
        GroupVersionResource(group, "v1", resource),
        kind=kind,
        short_names=short,
        categories=("all",) if group == "apps" else (),
    )


BUILTIN_RESOURCES: tuple[ResourceInfo, ...] = (
    _core("pods", "Pod", short=("po",)),
    _core("services", "Service", short=("svc",)),
    _core("endpoints", "Endpoints", short=("ep",)),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("secrets", "Secret"),
    _core("namespaces", "Namespace", namespaced=False, short=("ns",)),
    _core("nodes", "Node", namespaced=False, short=("no",)),
    _core("events", "Event", short=("ev",)),
    _core("replicationcontrollers", "ReplicationController", short=("rc",)),
    _grouped("apps", "deployments", "Deployment", ("deploy",)),
    _grouped("apps", "replicasets", "ReplicaSet", ("rs",)),
    _grouped("apps", "statefulsets", "StatefulSet", ("sts",)),
    _grouped("apps", "daemonsets", "DaemonSet", ("ds",)),
    _grouped("networking.k8s.io", "ingresses", "Ingress", ("ing",)),
    _grouped("coordination.k8s.io", "leases", "Lease"),
)
"""Served by default: core v1, apps/v1, networking.k8s.io/v1 and coordination.k8s.io/v1."""
