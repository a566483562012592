"""Object validation with kube-apiserver's own rules and wording (multicluster layer, sans-I/O).

``KubeApiServer`` checks every object it is asked to store the way the API
server does, in two steps:

* ``decode_errors`` — the checks Kubernetes' typed JSON decoding makes: a
  ``metadata`` that is not an object, a ``metadata.name`` or label value that is
  not a string... A failure is a 400 ``BadRequest`` worded as the Go decoder
  (``json: cannot unmarshal number into Go struct field ...``).
* ``object_meta_errors`` — ``ValidateObjectMeta``: the name (a DNS-1123
  subdomain, a DNS-1123 label for namespaces and services, or a path segment
  for types without a known rule), ``generateName``, ``metadata.namespace``,
  label keys and values, annotation keys and their total size. A failure is a
  list of ``status.FieldError`` for a 422 ``Invalid``.

The messages are the apimachinery validation messages, verbatim. Pure functions,
safe from any thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from kubemirror.multicluster.status import FieldError

__all__ = [
    "ANNOTATIONS_SIZE_LIMIT",
    "NameRule",
    "decode_error_message",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "generated_name_prefix",
    "go_json_type",
    "label_value_errors",
    "name_errors",
    "object_meta_errors",
    "path_segment_errors",
    "qualified_name_errors",
]

NameRule = Literal["subdomain", "label", "path"]
"""How a type's object names are validated: DNS-1123 subdomain, DNS-1123 label,
or only as a safe path segment."""

ANNOTATIONS_SIZE_LIMIT = 256 * 1024
"""Total size of all annotation keys and values, in bytes."""

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = rf"({_QUALIFIED_NAME_FMT})?"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_DNS1123_LABEL_FMT}')"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)
_QUALIFIED_NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    f"used for validation is '{_QUALIFIED_NAME_FMT}')"
)
_QUALIFIED_NAME_MSG = (
    "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
    f"'123-abc', regex used for validation is '{_QUALIFIED_NAME_FMT}') with an optional DNS "
    "subdomain prefix and '/' (e.g. 'example.com/MyName')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)

_MAX_GENERATED_PREFIX = 58  # 63 - the 5 random characters


# -- string rules (apimachinery/pkg/util/validation) -------------------------------------------


def dns1123_label_errors(value: str) -> list[str]:
    """``IsDNS1123Label``: at most 63 characters of ``[a-z0-9-]``, alphanumeric at both ends."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(_DNS1123_LABEL_MSG)
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``: at most 253 characters of dot-separated DNS-1123 labels."""
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_DNS1123_SUBDOMAIN_MSG)
    return errs


def path_segment_errors(value: str, *, prefix: bool = False) -> list[str]:
    """``IsValidPathSegmentName`` (``prefix``: ``IsValidPathSegmentPrefix``): not ``.``
    or ``..``, no ``/`` or ``%``."""
    errs = []
    if not prefix and value in (".", ".."):
        errs.append(f"may not be '{value}'")
    for illegal in ("/", "%"):
        if illegal in value:
            errs.append(f"may not contain '{illegal}'")
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """``IsQualifiedName``: ``[prefix/]name``, a DNS subdomain prefix and a 63-character name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in _prefix_errors(prefix))
    else:
        return [_QUALIFIED_NAME_MSG]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append(_QUALIFIED_NAME_PART_MSG)
    return errs


def _prefix_errors(prefix: str) -> list[str]:
    errs = []
    if len(prefix) > 253:
        errs.append("must be no more than 253 bytes")
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
        errs.append(_DNS1123_SUBDOMAIN_MSG)
    return errs


def label_value_errors(value: str) -> list[str]:
    """``IsValidLabelValue``: empty, or at most 63 characters of ``[A-Za-z0-9_.-]``."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def name_errors(value: str, rule: NameRule, *, prefix: bool = False) -> list[str]:
    """The errors of an object name (``prefix``: a ``generateName``) under ``rule``."""
    if prefix and rule != "path":
        value = value[:-1] + "a" if value.endswith("-") else value  # maskTrailingDash
    if rule == "label":
        return dns1123_label_errors(value)
    if rule == "subdomain":
        return dns1123_subdomain_errors(value)
    return path_segment_errors(value, prefix=prefix)


def generated_name_prefix(generate_name: str) -> str:
    """The part of ``generateName`` a generated name starts with (at most 58 characters)."""
    return generate_name[:_MAX_GENERATED_PREFIX]


# -- decoding (what the typed JSON decoder rejects with 400) -----------------------------------


def go_json_type(value: Any) -> str:
    """The JSON type name Go's decoder reports (``string``, ``number``, ``bool``...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _unmarshal(value: Any, struct_field: str, go_type: str) -> str:
    return (
        f"json: cannot unmarshal {go_json_type(value)} into Go struct field "
        f"{struct_field} of type {go_type}"
    )


_META_STRINGS = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "selfLink",
    "creationTimestamp",
    "deletionTimestamp",
)


def decode_error_message(kind: str, obj: Mapping[str, Any]) -> str | None:
    """What Go's typed decoder says about ``obj``'s ``metadata``, or ``None`` if it decodes.

    The text after ``<Kind> in version "<v>" cannot be handled as a <Kind>: ``.
    """
    if "metadata" not in obj or obj["metadata"] is None:
        return None
    meta = obj["metadata"]
    if not isinstance(meta, Mapping):
        return _unmarshal(meta, f"{kind}.metadata", "v1.ObjectMeta")
    for key in _META_STRINGS:
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            return _unmarshal(value, f"ObjectMeta.metadata.{key}", "string")
    generation = meta.get("generation")
    if generation is not None and (
        isinstance(generation, bool) or not isinstance(generation, int)
    ):
        return _unmarshal(generation, "ObjectMeta.metadata.generation", "int64")
    for key in ("labels", "annotations"):
        mapping = meta.get(key)
        if mapping is None:
            continue
        if not isinstance(mapping, Mapping):
            return _unmarshal(mapping, f"ObjectMeta.metadata.{key}", "map[string]string")
        for item in mapping.values():
            if item is not None and not isinstance(item, str):
                return _unmarshal(item, f"ObjectMeta.metadata.{key}", "string")
    finalizers = meta.get("finalizers")
    if finalizers is not None:
        if not isinstance(finalizers, list):
            return _unmarshal(finalizers, "ObjectMeta.metadata.finalizers", "[]string")
        for item in finalizers:
            if item is not None and not isinstance(item, str):
                return _unmarshal(item, "ObjectMeta.metadata.finalizers", "string")
    owners = meta.get("ownerReferences")
    if owners is not None and not isinstance(owners, list):
        return _unmarshal(owners, "ObjectMeta.metadata.ownerReferences", "[]v1.OwnerReference")
    return None


# -- ValidateObjectMeta -------------------------------------------------------------------------


def object_meta_errors(
    meta: Mapping[str, Any],
    *,
    rule: NameRule,
    namespaced: bool,
    check_name: bool = True,
) -> list[FieldError]:
    """``ValidateObjectMeta`` of a decoded ``metadata`` (see ``decode_error_message``).

    ``check_name=False`` (updates: the name and namespace cannot change) checks only
    the labels and annotations."""
    out: list[FieldError] = []
    if check_name:
        out += _name_errors(meta, rule, namespaced)
    out += _labels_errors(meta)
    return out


def _name_errors(meta: Mapping[str, Any], rule: NameRule, namespaced: bool) -> list[FieldError]:
    out: list[FieldError] = []
    generate = meta.get("generateName") or ""
    if generate:
        out += [
            FieldError("Invalid", "metadata.generateName", m, generate)
            for m in name_errors(generate, rule, prefix=True)
        ]
    name = meta.get("name") or ""
    if not name:
        out.append(FieldError("Required", "metadata.name", "name or generateName is required"))
    else:
        out += [FieldError("Invalid", "metadata.name", m, name) for m in name_errors(name, rule)]
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            out.append(FieldError("Required", "metadata.namespace"))
        else:
            out += [
                FieldError("Invalid", "metadata.namespace", m, namespace)
                for m in dns1123_label_errors(namespace)
            ]
    return out


def _labels_errors(meta: Mapping[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    labels = meta.get("labels") or {}
    for key in sorted(labels):
        out += [
            FieldError("Invalid", "metadata.labels", m, key) for m in qualified_name_errors(key)
        ]
        value = labels[key] or ""
        out += [
            FieldError("Invalid", "metadata.labels", m, value) for m in label_value_errors(value)
        ]
    annotations = meta.get("annotations") or {}
    total = 0
    for key in sorted(annotations):
        out += [
            FieldError("Invalid", "metadata.annotations", m, key.lower())
            for m in qualified_name_errors(key.lower())
        ]
        total += len(key.encode()) + len((annotations[key] or "").encode())
    if total > ANNOTATIONS_SIZE_LIMIT:
        out.append(
            FieldError(
                "TooLong",
                "metadata.annotations",
                f"may not be more than {ANNOTATIONS_SIZE_LIMIT} bytes",
            )
        )
    return out
