"""OpenAPI v3 and v2 documents for ``KubeApiServer``, built at run time (multicluster layer).

kubectl reads the server's OpenAPI to ``explain`` a type (v3 since kubectl 1.27:
``/openapi/v3`` lists one document per group-version, ``/openapi/v3/api/v1`` is
one of them; ``/openapi/v2`` is the older single document) and to see that PATCH
takes ``fieldValidation`` (then it validates on the server). Nothing here is a
hand-written copy of Kubernetes' schemas. They come from two places:

* **Built-in kinds** — the model classes of the installed ``kubernetes_asyncio``
  package (a dependency of kubemirror), which its OpenAPI generator produced from
  Kubernetes' own ``swagger.json``. Each class (``V1PodSpec``, ``CoreV1Event``,
  ...) has ``openapi_types`` (attribute → ``'list[V1Container]'``,
  ``'dict(str, str)'``, ``'datetime'``, ``'V1ObjectMeta'``, ...) and
  ``attribute_map`` (attribute → JSON name); the getter's docstring holds the
  field's description and the setter refuses ``None`` for required fields. A
  class becomes the component schema Kubernetes would name
  ``io.k8s.api.<group>.<version>.<Kind>`` (``io.k8s.apimachinery.pkg.apis.meta.v1``
  for the meta types): the version and kind come from the class name
  (``V1beta1Foo``, ``CoreV1Event``), the group of a top-level kind from the served
  resource (``resources.py``), and a nested type takes the group of the first
  type that reaches it among those ``kubernetes_asyncio``'s API classes return
  (``:rtype:`` of ``CoreV1Api`` first, then ``AppsV1Api``, ...). Top-level kinds
  carry ``x-kubernetes-group-version-kind``.
* **Custom resources** — the ``openAPIV3Schema`` of each served version of a
  registered CustomResourceDefinition, as stored.

Known losses against kube-apiserver's documents, all from what the generated
models keep: no description of a type itself (only of fields), no ``enum``, no
``int32``/``int64`` formats, ``MicroTime``/``Time``/``Quantity`` are inlined as
strings, ``IntOrString`` and free-form fields are ``object``, no
``x-kubernetes-list-type``/patch-merge keys or defaults, and the fields are those
of the installed ``kubernetes_asyncio`` version (not necessarily the server's).

Schemas are built lazily: ``kubernetes_asyncio`` is imported on the first request
for a document (about a second), and each model's schema is cached. The builders
are pure and safe to call from a worker thread. ``field_description`` serves
table column descriptions without importing the package.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import Obj

__all__ = [
    "GroupVersionKind",
    "crd_schemas",
    "discovery_document",
    "field_description",
    "model_class_name",
    "schema_name",
    "v2_document",
    "v3_document",
]

GroupVersionKind = tuple[str, str, str]
"""(group, version, kind); the group of the core API is ``""``."""

_MODELS = "kubernetes_asyncio.client.models"
_CLASS = re.compile(
    r"^(?P<group>[A-Z][a-z]+)?V(?P<major>\d+)(?P<stage>(?:alpha|beta)\d+)?(?P<kind>[A-Z]\w*)$"
)
_META_KINDS = frozenset({
    "APIGroup", "APIGroupList", "APIResource", "APIResourceList", "APIVersions", "Condition",
    "DeleteOptions", "FieldSelectorRequirement", "GroupVersionForDiscovery", "LabelSelector",
    "LabelSelectorRequirement", "ListMeta", "ManagedFieldsEntry", "ObjectMeta", "OwnerReference",
    "Preconditions", "ServerAddressByClientCIDR", "Status", "StatusCause", "StatusDetails",
    "WatchEvent",
})
"""Types of ``k8s.io/apimachinery/pkg/apis/meta/v1``: named as Kubernetes names them."""
_GROUP_PREFIXES = {
    "apiextensions": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "apiregistration": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
}
_PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "object": {"type": "object"},
}
_REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")
_lock = threading.Lock()


# -- kubernetes_asyncio models ------------------------------------------------------------


def _models() -> Any:
    """The ``kubernetes_asyncio.client.models`` module (imported on first use)."""
    with _lock:
        return importlib.import_module(_MODELS)


def _model(name: str) -> Any | None:
    cls = getattr(_models(), name, None)
    return cls if isinstance(cls, type) and hasattr(cls, "openapi_types") else None


def _clean_doc(doc: str | None) -> str:
    """A field description out of a generated getter's docstring."""
    if not doc:
        return ""
    paragraphs = doc.split("\n\n")
    if len(paragraphs) < 3:  # only "Gets the x of this Y." and ":return: ..."
        return ""
    text = "\n\n".join(p.strip() for p in paragraphs[1:-1])
    return re.sub(r"\s*# noqa: E501\s*$", "", text, flags=re.MULTILINE).strip()


def _snake(name: str) -> str:
    """openapi-generator's module name of a model class (``V1ObjectMeta`` -> ``v1_object_meta``)."""
    text = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()


@functools.cache
def _model_source(name: str) -> str:
    """The source of one model module, read without importing ``kubernetes_asyncio``."""
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        return ""
    root = next(iter(spec.submodule_search_locations))
    path = os.path.join(root, "client", "models", f"{_snake(name)}.py")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


@functools.cache
def field_description(model: str, json_field: str) -> str:
    """The description of ``json_field`` of a ``kubernetes_asyncio`` model (``""`` if unknown).

    ``field_description("V1PodSpec", "nodeName")``. Reads the class when the models
    are already imported, else only that model's source file.
    """
    module = sys.modules.get(_MODELS)
    if module is not None:
        cls = getattr(module, model, None)
        if cls is not None:
            for attr, name in cls.attribute_map.items():
                if name == json_field:
                    return _clean_doc(getattr(cls, attr).__doc__)
        return ""
    source = _model_source(model)
    found = re.search(rf"'(\w+)': '{re.escape(json_field)}'", source)
    if found is None:
        return ""
    doc = re.search(rf'def {found.group(1)}\(self\):\s*"""(.*?)"""', source, re.DOTALL)
    return _clean_doc(doc.group(1)) if doc else ""


def model_class_name(group: str, version: str, kind: str) -> str | None:
    """The ``kubernetes_asyncio`` model class of a kind (``CoreV1Event``, ``V1Pod``), if any."""
    ver = version[:1].upper() + version[1:]
    short = (group.split(".")[0] if group else "core").capitalize()
    for name in (f"{short}{ver}{kind}", f"{ver}{kind}"):
        if _model(name) is not None:
            return name
    return None


def _short_group(group: str) -> str:
    return group.split(".")[0] if group else "core"


def schema_name(class_name: str, short_group: str = "core") -> str:
    """Kubernetes' component name for a model class: ``io.k8s.api.core.v1.PodSpec``.

    ``short_group`` (first label of the API group, ``core`` for ``""``) is used when
    the class name does not carry a group itself.
    """
    match = _CLASS.match(class_name)
    if match is None:
        return class_name
    version = f"v{match['major']}{match['stage'] or ''}"
    kind = match["kind"]
    if kind in _META_KINDS and match["group"] is None:
        return f"io.k8s.apimachinery.pkg.apis.meta.{version}.{kind}"
    group = (match["group"] or short_group).lower()
    prefix = _GROUP_PREFIXES.get(group, f"io.k8s.api.{group}")
    return f"{prefix}.{version}.{kind}"


def _referenced(type_string: str) -> list[str]:
    """The model class names a type string mentions."""
    return [
        t for t in re.findall(r"[A-Za-z_]\w*", type_string)
        if t not in _PRIMITIVES and t not in ("list", "dict")
    ]


def _type_schema(type_string: str, ref: Callable[[str], str]) -> dict[str, Any]:
    type_string = type_string.strip()
    if type_string in _PRIMITIVES:
        return dict(_PRIMITIVES[type_string])
    if type_string.startswith("list[") and type_string.endswith("]"):
        return {"type": "array", "items": _type_schema(type_string[5:-1], ref)}
    if type_string.startswith("dict(") and type_string.endswith(")"):
        _, _, value = type_string[5:-1].partition(",")
        return {"type": "object", "additionalProperties": _type_schema(value, ref)}
    if _model(type_string) is None:
        return {"type": "object"}
    return {"$ref": ref(type_string)}


@functools.cache
def _model_info(class_name: str) -> tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]:
    """((JSON name, type string, description) per field, required JSON names) of a model."""
    cls = _model(class_name)
    if cls is None:
        return (), ()
    fields = tuple(
        (cls.attribute_map[attr], type_string, _clean_doc(getattr(cls, attr).__doc__))
        for attr, type_string in cls.openapi_types.items()
    )
    module = sys.modules.get(cls.__module__)
    source = ""
    if module is not None and getattr(module, "__file__", None):
        with open(str(module.__file__), encoding="utf-8") as fh:
            source = fh.read()
    required = tuple(
        cls.attribute_map[attr]
        for attr in dict.fromkeys(_REQUIRED.findall(source))
        if attr in cls.attribute_map
    )
    return fields, required


def _references(class_name: str) -> list[str]:
    """The model classes the fields of ``class_name`` refer to, in field order."""
    found: list[str] = []
    for _, type_string, _ in _model_info(class_name)[0]:
        found.extend(t for t in _referenced(type_string) if _model(t) is not None)
    return list(dict.fromkeys(found))


_API_FILE = re.compile(r"^(?P<group>[a-z]+)_(?:[a-z]+_)*v\d+(?:(?:alpha|beta)\d+)?_api\.py$")


def _api_roots() -> list[tuple[str, str]]:
    """(class, short group) of every type ``kubernetes_asyncio``'s API classes return:
    ``CoreV1Api`` returns ``V1PersistentVolumeClaim`` (core), ``AppsV1Api``
    ``V1Deployment`` (apps), ... Core first, then the groups in name order."""
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = os.path.join(next(iter(spec.submodule_search_locations)), "client", "api")
    try:
        files = sorted(os.listdir(folder), key=lambda f: (not f.startswith("core_"), f))
    except OSError:
        return []
    roots: list[tuple[str, str]] = []
    for filename in files:
        match = _API_FILE.match(filename)
        if match is None:
            continue
        with open(os.path.join(folder, filename), encoding="utf-8") as fh:
            returned = dict.fromkeys(re.findall(r":rtype: ([A-Z]\w+)", fh.read()))
        roots.extend((name, match["group"]) for name in returned if _model(name) is not None)
    return roots


@functools.cache
def _group_assignment() -> dict[str, str]:
    """Class → short group of the first API type (core first) whose closure reaches it:
    ``V1PodTemplateSpec`` and ``V1PersistentVolumeClaim`` are ``core``, as in Kubernetes."""
    out: dict[str, str] = {}
    for root in _api_roots():  # one root's whole closure before the next root
        queue = [root]
        while queue:
            class_name, short = queue.pop(0)
            if class_name in out:
                continue
            out[class_name] = short
            queue.extend((ref, short) for ref in _references(class_name))
    return out


def _class_group(class_name: str, default: str) -> str:
    match = _CLASS.match(class_name)
    if match is not None and match["group"]:
        return match["group"].lower()
    return _group_assignment().get(class_name, default)


@functools.cache
def _model_schema(class_name: str, short_group: str) -> dict[str, Any]:
    """The component schema of a model; ``$ref``s are ``#/components/schemas/<name>``."""

    def ref(name: str) -> str:
        return f"#/components/schemas/{schema_name(name, _class_group(name, short_group))}"

    fields, required = _model_info(class_name)
    properties: dict[str, Any] = {}
    for json_name, type_string, description in fields:
        prop = _type_schema(type_string, ref)
        if "$ref" in prop:
            prop = {"allOf": [prop]}
        properties[json_name] = {"description": description, **prop} if description else prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _schemas_from(
    roots: Iterable[tuple[str, str]], kinds: Mapping[str, GroupVersionKind]
) -> dict[str, dict[str, Any]]:
    """Component schemas of ``roots`` ((class, short group)) and everything they reference;
    the classes in ``kinds`` get ``x-kubernetes-group-version-kind``."""
    out: dict[str, dict[str, Any]] = {}
    queue = list(roots)
    while queue:
        class_name, default = queue.pop(0)
        short = _class_group(class_name, default)
        name = schema_name(class_name, short)
        if name in out:
            continue
        schema = dict(_model_schema(class_name, short))
        if class_name in kinds:
            group, version, kind = kinds[class_name]
            schema["x-kubernetes-group-version-kind"] = [
                {"group": group, "version": version, "kind": kind}
            ]
        out[name] = schema
        queue.extend((ref, short) for ref in _references(class_name))
    return out


@functools.cache
def _builtin_schemas(gvks: tuple[GroupVersionKind, ...]) -> dict[str, dict[str, Any]]:
    """Component schemas of built-in kinds ``gvks`` and all they reference."""
    roots = []
    kinds: dict[str, GroupVersionKind] = {}
    for group, version, kind in gvks:
        name = model_class_name(group, version, kind)
        if name is not None:
            roots.append((name, _short_group(group)))
            kinds[name] = (group, version, kind)
    return _schemas_from(roots, kinds)


# -- custom resources -----------------------------------------------------------------------


def _reverse_domain(group: str) -> str:
    return ".".join(reversed(group.split("."))) if group else "core"


def crd_schemas(crds: Iterable[Obj]) -> dict[GroupVersionKind, dict[str, Any]]:
    """The ``openAPIV3Schema`` of each served version of these CRD objects, by GVK."""
    out: dict[GroupVersionKind, dict[str, Any]] = {}
    for crd in crds:
        spec = crd.get("spec") or {}
        group = str(spec.get("group") or "")
        kind = str((spec.get("names") or {}).get("kind") or "")
        if not group or not kind:
            continue
        common = (spec.get("validation") or {}).get("openAPIV3Schema")
        for version in spec.get("versions") or []:
            if not isinstance(version, Mapping) or not version.get("served", True):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema") or common
            if isinstance(schema, Mapping):
                out[(group, str(version.get("name")), kind)] = copy.deepcopy(dict(schema))
    return out


def _crd_component(gvk: GroupVersionKind, schema: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    group, version, kind = gvk
    out = dict(schema)
    properties = dict(out.get("properties") or {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    meta = properties.get("metadata")
    if not isinstance(meta, Mapping) or set(meta) <= {"type"}:
        properties["metadata"] = {
            "description": "Standard object's metadata.",
            "allOf": [{"$ref": f"#/components/schemas/{schema_name('V1ObjectMeta')}"}],
        }
    out["properties"] = properties
    out.setdefault("type", "object")
    out["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": kind}]
    return f"{_reverse_domain(group)}.{version}.{kind}", out


# -- documents ------------------------------------------------------------------------------


def _api_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def discovery_document(resources: Iterable[ResourceInfo]) -> dict[str, Any]:
    """``/openapi/v3``: one ``serverRelativeURL`` per served group-version."""
    gvs = sorted({_api_path(r.gvr.group, r.gvr.version) for r in resources})
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}"} for gv in gvs}}


def _paths(resources: Iterable[ResourceInfo]) -> dict[str, Any]:
    """PATCH of each resource, naming its GVK and declaring ``fieldValidation``.

    ``kubectl explain`` finds a resource's kind from these paths; kubectl validates
    on the server because PATCH takes ``fieldValidation``.
    """
    paths: dict[str, Any] = {}
    for info in resources:
        gvk = {"group": info.gvr.group, "version": info.gvr.version, "kind": info.kind}
        prefix = "/" + _api_path(info.gvr.group, info.gvr.version)
        scope = "/namespaces/{namespace}" if info.namespaced else ""
        paths[f"{prefix}{scope}/{info.gvr.resource}/{{name}}"] = {
            "patch": {
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return paths


def v3_document(
    group_version: str,
    resources: Iterable[ResourceInfo],
    crds: Mapping[GroupVersionKind, Mapping[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The OpenAPI v3 document of ``group_version`` (``api/v1``, ``apis/apps/v1``).

    ``resources`` are the served types (those of other group-versions are skipped),
    ``crds`` the schemas of custom resources (``crd_schemas``). ``None`` when no
    served resource is in that group-version.
    """
    served = [
        r for r in resources if _api_path(r.gvr.group, r.gvr.version) == group_version.strip("/")
    ]
    if not served:
        return None
    crds = crds or {}
    gvks = [(r.gvr.group, r.gvr.version, r.kind) for r in served]
    custom = {gvk: crds[gvk] for gvk in gvks if gvk in crds}
    builtin = tuple(sorted(g for g in gvks if g not in custom))
    schemas = dict(_builtin_schemas(builtin))
    if custom:
        for name, meta_schema in _schemas_from([("V1ObjectMeta", "core")], {}).items():
            schemas.setdefault(name, meta_schema)
        for gvk, crd_schema in custom.items():
            name, component = _crd_component(gvk, crd_schema)
            schemas[name] = component
    return {
        "openapi": "3.0.0",
        "info": {"title": "kubemirror", "version": "v1.32.0"},
        "paths": _paths(served),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def _to_v2(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                v.replace("#/components/schemas/", "#/definitions/")
                if k == "$ref" and isinstance(v, str)
                else _to_v2(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_to_v2(v) for v in value]
    return value


def v2_document(
    resources: Iterable[ResourceInfo],
    crds: Mapping[GroupVersionKind, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``/openapi/v2`` (Swagger 2.0, JSON): every served group-version in one document."""
    infos = list(resources)
    definitions: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for gv in sorted({_api_path(r.gvr.group, r.gvr.version) for r in infos}):
        doc = v3_document(gv, infos, crds)
        if doc is None:
            continue
        definitions.update(doc["components"]["schemas"])
        for path, item in doc["paths"].items():
            patch = dict(item["patch"])
            patch["parameters"] = [
                {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True}
            ]
            paths[path] = {"patch": patch}
    return {
        "swagger": "2.0",
        "info": {"title": "kubemirror", "version": "v1.32.0"},
        "paths": paths,
        "definitions": _to_v2(dict(sorted(definitions.items()))),
    }
