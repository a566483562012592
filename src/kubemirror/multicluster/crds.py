"""CustomResourceDefinitions, and the rules the server applies per served type.

Part of the served API (multicluster layer). Writing a CRD registers the resource
types it defines (``crd_resource_infos``); ``TypeRules`` remembers, per type, whether
it has a ``status`` subresource and which rule its names follow (DNS-1123 label or
subdomain, as kube-apiserver; a path-safe name for types registered at run time).
CRD bodies are checked as the typed decoder (400) and the CRD validation (422) do.
Not thread-safe: used from the server's loop.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubemirror.multicluster import status, validation
from kubemirror.multicluster.bodies import unmarshal
from kubemirror.multicluster.resources import BUILTIN_RESOURCES, ResourceInfo
from kubemirror.types import GroupVersionResource, Obj

__all__ = [
    "CRD_RESOURCE",
    "TypeRules",
    "crd_decode_problem",
    "crd_errors",
    "crd_resource_infos",
    "crd_status_versions",
]

CRD_RESOURCE = ResourceInfo(
    GroupVersionResource("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    kind="CustomResourceDefinition",
    namespaced=False,
    short_names=("crd", "crds"),
)
"""CustomResourceDefinitions: creating one registers the resource type it defines."""

_STATUS_SUBRESOURCE: frozenset[GroupVersionResource] = frozenset(
    info.gvr
    for info in BUILTIN_RESOURCES
    if info.gvr.resource
    in {
        "pods",
        "services",
        "namespaces",
        "nodes",
        "replicationcontrollers",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "ingresses",
    }
)
"""Built-in types with a ``status`` subresource (and CRDs themselves)."""

_LABEL_NAMED = frozenset(
    info.gvr for info in BUILTIN_RESOURCES if info.gvr.resource in {"namespaces", "services"}
)
"""Built-in types whose names are DNS-1123 labels (the others: DNS-1123 subdomains)."""

_BUILTIN_GVRS = frozenset(info.gvr for info in BUILTIN_RESOURCES)


class TypeRules:
    """Per served type: a ``status`` subresource or not, and the rule names follow.

    Built-in types follow kube-apiserver; CRD-defined types are learned from the
    CRDs written through the server (``crd_written``). Not thread-safe.
    """

    __slots__ = ("_custom_types", "_status_subresource")

    def __init__(self) -> None:
        self._status_subresource: set[GroupVersionResource] = {CRD_RESOURCE.gvr}
        self._custom_types: set[GroupVersionResource] = set()

    def has_status(self, gvr: GroupVersionResource) -> bool:
        """Whether the type has a ``status`` subresource."""
        return gvr in _STATUS_SUBRESOURCE or gvr in self._status_subresource

    def name_rule(self, gvr: GroupVersionResource) -> validation.NameRule:
        """The rule ``metadata.name`` of the type must follow."""
        if gvr in _LABEL_NAMED:
            return "label"
        if gvr in _BUILTIN_GVRS or gvr == CRD_RESOURCE.gvr or gvr in self._custom_types:
            return "subdomain"
        return "path"  # registered at run time: only what keeps names safe in paths and keys

    def crd_written(self, crd: Obj) -> list[ResourceInfo]:
        """Learn the types a stored CRD defines; returns them, for the caller to serve."""
        with_status = crd_status_versions(crd)
        infos = crd_resource_infos(crd)
        for info in infos:
            self._custom_types.add(info.gvr)
            if info.gvr.version in with_status:
                self._status_subresource.add(info.gvr)
            else:
                self._status_subresource.discard(info.gvr)
        return infos


def crd_decode_problem(crd: Obj) -> str | None:
    """What the typed decoder says about a CustomResourceDefinition's spec, or None."""
    spec = crd.get("spec")
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        return unmarshal(spec, "CustomResourceDefinition.spec", "v1.CustomResourceDefinitionSpec")
    where = "CustomResourceDefinitionSpec.spec"
    for field, go_type in (("group", "string"), ("scope", "v1.ResourceScope")):
        value = spec.get(field)
        if value is not None and not isinstance(value, str):
            return unmarshal(value, f"{where}.{field}", go_type)
    names = spec.get("names")
    if names is not None:
        if not isinstance(names, Mapping):
            return unmarshal(names, f"{where}.names", "v1.CustomResourceDefinitionNames")
        for field in ("plural", "singular", "kind", "listKind"):
            value = names.get(field)
            if value is not None and not isinstance(value, str):
                return unmarshal(
                    value, f"CustomResourceDefinitionNames.spec.names.{field}", "string"
                )
        for field in ("shortNames", "categories"):
            value = names.get(field)
            if value is None:
                continue
            if not isinstance(value, list):
                return unmarshal(
                    value, f"CustomResourceDefinitionNames.spec.names.{field}", "[]string"
                )
            for item in value:
                if not isinstance(item, str):
                    return unmarshal(
                        item, f"CustomResourceDefinitionNames.spec.names.{field}", "string"
                    )
    versions = spec.get("versions")
    if versions is not None:
        if not isinstance(versions, list):
            return unmarshal(versions, f"{where}.versions", "[]v1.CustomResourceDefinitionVersion")
        for version in versions:
            if not isinstance(version, Mapping):
                return unmarshal(
                    version, f"{where}.versions", "v1.CustomResourceDefinitionVersion"
                )
            vwhere = "CustomResourceDefinitionVersion.spec.versions"
            name = version.get("name")
            if name is not None and not isinstance(name, str):
                return unmarshal(name, f"{vwhere}.name", "string")
            for field in ("served", "storage"):
                value = version.get(field)
                if value is not None and not isinstance(value, bool):
                    return unmarshal(value, f"{vwhere}.{field}", "bool")
            sub = version.get("subresources")
            if sub is not None and not isinstance(sub, Mapping):
                return unmarshal(sub, f"{vwhere}.subresources", "v1.CustomResourceSubresources")
    return None


def crd_errors(crd: Obj) -> list[status.FieldError]:
    """The 422 causes of a CustomResourceDefinition kubemirror checks (names and group)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group") or "", names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name") or ""
    out: list[status.FieldError] = []
    if name and name != f"{plural}.{group}":
        out.append(
            status.FieldError(
                "Invalid", "metadata.name", 'must be spec.names.plural+"."+spec.group', name
            )
        )
    if not group:
        out.append(status.FieldError("Required", "spec.group"))
    if not plural:
        out.append(status.FieldError("Required", "spec.names.plural"))
    if not names.get("kind"):
        out.append(status.FieldError("Required", "spec.names.kind"))
    if group:
        out += [
            status.FieldError("Invalid", "spec.group", m, group)
            for m in validation.dns1123_subdomain_errors(group)
        ]
    if plural:
        out += [
            status.FieldError("Invalid", "spec.names.plural", m, plural)
            for m in validation.dns1123_label_errors(plural)
        ]
    for i, version in enumerate(spec.get("versions") or ()):
        vname = version.get("name") or ""
        field = f"spec.versions[{i}].name"
        if not vname:
            out.append(status.FieldError("Required", field))
        else:
            out += [
                status.FieldError("Invalid", field, m, vname)
                for m in validation.dns1123_label_errors(vname)
            ]
    return out


def crd_status_versions(crd: Obj) -> set[str]:
    """The versions of a CustomResourceDefinition that declare a ``status`` subresource."""
    spec = crd.get("spec") or {}
    out = set()
    for version in spec.get("versions") or ():
        if isinstance(version, Mapping) and isinstance(version.get("name"), str):
            sub = version.get("subresources") or {}
            if isinstance(sub, Mapping) and "status" in sub:
                out.add(version["name"])
    return out


def crd_resource_infos(crd: Obj) -> list[ResourceInfo]:
    """The served resource types a CustomResourceDefinition object defines."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    if not group or not plural:
        raise status.invalid(
            "CustomResourceDefinition",
            str((crd.get("metadata") or {}).get("name", "")),
            "spec.group" if not group else "spec.names.plural",
            "Required value",
        )
    if (
        not isinstance(group, str)
        or not isinstance(plural, str)
        or not isinstance(names, Mapping)
        or crd_decode_problem(crd) is not None
        or crd_errors(crd)
    ):
        raise status.invalid(
            "CustomResourceDefinition",
            str((crd.get("metadata") or {}).get("name", "")),
            "spec",
            "Invalid value: not a valid CustomResourceDefinition",
        )
    out = []
    for version in spec.get("versions") or [{"name": spec.get("version", "v1"), "served": True}]:
        if not version.get("served", True):
            continue
        out.append(
            ResourceInfo(
                GroupVersionResource(group, version["name"], plural),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                list_kind=names.get("listKind", ""),
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
            )
        )
    return out
