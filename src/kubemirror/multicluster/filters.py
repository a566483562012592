"""Which stored objects a LIST or WATCH request selects (multicluster layer).

An ``ObjectFilter`` combines the request's clusters, namespace, label selector
and field selector (parsed by ``kubemirror.selectors``) into one predicate over
stored objects. Selector text is parsed once, up front, so a bad selector is a
``BadRequestError`` (400) quoting the expression before any data is read.

Field selectors are checked against the fields the resource type supports, as
kube-apiserver does (``FieldSpec``, ``field_spec``): ``metadata.name`` and
``metadata.namespace`` for every type, plus the built-in core types' own fields
(``spec.nodeName`` and ``status.phase`` for pods, ``type`` for secrets...), with
the API server's defaults for absent fields (``spec.hostNetwork`` reads
``"false"``) and its error message for any other field. Immutable, safe from
any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubemirror import errors, selectors
from kubemirror.multicluster import status
from kubemirror.types import Obj

__all__ = ["FieldSpec", "ObjectFilter", "field_spec"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """The field selectors a resource type supports.

    ``fields`` maps each selectable field to the object path it reads and the
    value it has when absent. ``generic`` picks the API server's wording for an
    unsupported field: the generic one listing the supported fields, or the
    core types' ``field label not supported: <field>``.
    """

    fields: Mapping[str, tuple[tuple[str, ...], str]]
    generic: bool = True

    def unsupported(self, name: str) -> errors.BadRequestError:
        """The 400 for a field selector on ``name``, which this type does not support."""
        if self.generic:
            known = ", ".join(f'"{f}"' for f in self.fields)
            return status.bad_request(f'"{name}" is not a known field selector: only {known}')
        return status.bad_request(f"field label not supported: {name}")


def _spec(*names: str, generic: bool = False, **special: tuple[str, str]) -> FieldSpec:
    fields: dict[str, tuple[tuple[str, ...], str]] = {n: (tuple(n.split(".")), "") for n in names}
    for key, (path, default) in special.items():
        fields[key.replace("__", ".")] = (tuple(path.split(".")), default)
    return FieldSpec(fields, generic)


_GENERIC = _spec("metadata.name", "metadata.namespace", generic=True)

_CORE_FIELD_SPECS: dict[str, FieldSpec] = {
    "Pod": _spec(
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
        spec__hostNetwork=("spec.hostNetwork", "false"),
        spec__host=("spec.nodeName", ""),
    ),
    "Service": _spec("metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"),
    "Secret": _spec("metadata.name", "metadata.namespace", "type"),
    "Namespace": _spec("metadata.name", "status.phase"),
    "Node": _spec("metadata.name", spec__unschedulable=("spec.unschedulable", "false")),
    "Event": _spec(
        "metadata.name",
        "metadata.namespace",
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "type",
        source=("source.component", ""),
    ),
    "ReplicationController": _spec(
        "metadata.name", "metadata.namespace", status__replicas=("status.replicas", "0")
    ),
}


def field_spec(group: str, kind: str) -> FieldSpec:
    """The field selectors kube-apiserver supports for ``kind`` of API ``group``."""
    if not group:
        return _CORE_FIELD_SPECS.get(kind, _GENERIC)
    return _GENERIC


def _field_text(value: object, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return ""


_LABEL_MEMO_SIZE = 4096
_EQUALITY_OPERATORS = frozenset(
    {selectors.Operator.EQUALS, selectors.Operator.DOUBLE_EQUALS, selectors.Operator.IN}
)


@dataclass(frozen=True, slots=True)
class _FieldTerm:
    path: tuple[str, ...]
    default: str
    equal: bool
    value: str


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """Selects stored objects by cluster, namespace, labels and fields.

    ``clusters`` empty means every cluster; ``namespace`` ``""`` means every
    namespace. Build with ``ObjectFilter.build`` to parse selector text.
    Remembers the label verdict per label-set object (compact entries share
    theirs), up to ``_LABEL_MEMO_SIZE`` of them; safe to share between threads.
    """

    clusters: frozenset[str] = frozenset()
    namespace: str = ""
    label_selector: selectors.LabelSelector | None = None
    field_selector: selectors.FieldSelector | None = None
    field_terms: tuple[_FieldTerm, ...] | None = field(default=None, compare=False)
    _label_memo: dict[int, tuple[object, bool]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(
        cls,
        *,
        clusters: frozenset[str] | tuple[str, ...] = (),
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        fields: FieldSpec | None = None,
    ) -> ObjectFilter:
        """Parse the selectors; raises ``BadRequestError`` quoting a bad selector, or
        naming a field ``fields`` (the type's ``FieldSpec``, when given) does not support."""
        try:
            label = selectors.LabelSelector.parse(label_selector)
        except errors.SelectorError as exc:
            raise status.bad_request(f"unable to parse labelSelector: {exc}") from exc
        try:
            parsed = selectors.FieldSelector.parse(field_selector)
        except errors.SelectorError as exc:
            raise status.bad_request(f"unable to parse fieldSelector: {exc}") from exc
        terms: tuple[_FieldTerm, ...] | None = None
        if fields is not None and not parsed.is_empty():
            built = []
            for req in parsed.requirements:
                known = fields.fields.get(req.field)
                if known is None:
                    raise fields.unsupported(req.field)
                path, default = known
                equal = req.operator is selectors.Operator.EQUALS
                built.append(_FieldTerm(path, default, equal, req.value))
            terms = tuple(built)
        return cls(
            frozenset(clusters),
            namespace or "",
            None if label.is_empty() else label,
            None if parsed.is_empty() else parsed,
            terms,
        )

    @property
    def selects_everything_in_scope(self) -> bool:
        """True when only cluster and namespace restrict the selection."""
        return self.label_selector is None and self.field_selector is None

    @property
    def label_equality(self) -> tuple[str, str] | None:
        """A ``(key, value)`` every selected object carries (from the label selector's
        first ``=``, ``==`` or one-value ``in`` requirement), or ``None``."""
        if self.label_selector is None:
            return None
        for req in self.label_selector.requirements:
            if req.operator in _EQUALITY_OPERATORS and len(req.values) == 1:
                return req.key, req.values[0]
        return None

    def matches_object(self, obj: Obj) -> bool:
        """Whether ``obj`` passes the label and field selectors (scope not checked)."""
        if self.label_selector is not None:
            meta = obj.get("metadata")
            labels = meta.get("labels") if isinstance(meta, Mapping) else None
            memo = self._label_memo
            known = memo.get(id(labels))
            if known is not None and known[0] is labels:  # held in the memo: id not reused
                matched = known[1]
            else:
                matched = self.label_selector.matches(labels)
                if len(memo) >= _LABEL_MEMO_SIZE:
                    memo.clear()
                memo[id(labels)] = (labels, matched)
            if not matched:
                return False
        if self.field_selector is None:
            return True
        if self.field_terms is None:
            return self.field_selector.matches(obj)
        for term in self.field_terms:
            current: object = obj
            for segment in term.path:
                current = current.get(segment) if isinstance(current, Mapping) else None
            if (_field_text(current, term.default) == term.value) is not term.equal:
                return False
        return True

    def in_scope(self, cluster: str, namespace: str) -> bool:
        """Whether an object of ``cluster``/``namespace`` is inside the requested scope."""
        if self.clusters and cluster not in self.clusters:
            return False
        return not self.namespace or namespace == self.namespace
