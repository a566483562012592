"""Which stored objects a LIST or WATCH request selects (multicluster layer).

An ``ObjectFilter`` combines the request's clusters, namespace, label selector
and field selector into one predicate over stored objects. Selector text is
parsed once, up front, so a bad selector is a ``BadRequestError`` (400) naming
the expression before any data is read. Immutable, safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemirror import errors
from kubemirror.multicluster import status
from kubemirror.types import Obj

__all__ = ["ObjectFilter"]

_Predicate = Callable[[Obj], bool]


def _field_value(obj: Obj, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
        if node is None:
            return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return node if isinstance(node, str) else str(node)


def _split_requirements(text: str) -> list[str]:
    out: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [part.strip() for part in out if part.strip()]


def _label_ok(labels: Mapping[str, str], op: str, key: str, values: frozenset[str]) -> bool:
    if op == "in":
        return labels.get(key) in values
    if op == "notin":
        return labels.get(key) not in values
    if op == "exists":
        return key in labels
    return key not in labels  # "!exists"


def _parse_label_selector(text: str) -> _Predicate | None:
    text = text.strip()
    if not text:
        return None
    checks: list[tuple[str, str, frozenset[str]]] = []
    for req in _split_requirements(text):
        words = req.split()
        if len(words) >= 2 and words[1] in {"in", "notin"}:
            key, op = words[0], words[1]
            rest = req.split(op, 1)[1].strip()
            if not (rest.startswith("(") and rest.endswith(")")):
                raise errors.SelectorError("expected a parenthesised value list", expression=text)
            checks.append((op, key, frozenset(v.strip() for v in rest[1:-1].split(","))))
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            checks.append(("notin", key, frozenset({value})))
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
            if not key:
                raise errors.SelectorError("empty label key", expression=text)
            checks.append(("in", key, frozenset({value})))
        elif req.startswith("!"):
            checks.append(("!exists", req[1:].strip(), frozenset()))
        elif " " in req or not req:
            raise errors.SelectorError(f"unexpected requirement {req!r}", expression=text)
        else:
            checks.append(("exists", req, frozenset()))

    def predicate(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(_label_ok(labels, op, key, values) for op, key, values in checks)

    return predicate


def _parse_field_selector(text: str) -> _Predicate | None:
    text = text.strip()
    if not text:
        return None
    checks: list[tuple[str, str, bool]] = []
    for req in _split_requirements(text):
        if "!=" in req:
            path, value = req.split("!=", 1)
            negate = True
        elif "=" in req:
            path, value = req.replace("==", "=").split("=", 1)
            negate = False
        else:
            raise errors.SelectorError(
                f"invalid field selector requirement {req!r}: expected key=value or key!=value",
                expression=text,
            )
        if not path.strip():
            raise errors.SelectorError("empty field path", expression=text)
        checks.append((path.strip(), value.strip(), negate))

    def predicate(obj: Obj) -> bool:
        return all((_field_value(obj, p) == v) != neg for p, v, neg in checks)

    return predicate


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """Selects stored objects by cluster, namespace, labels and fields.

    ``clusters`` empty means every cluster; ``namespace`` ``None`` or ``""`` means
    every namespace. Build with ``ObjectFilter.build`` to parse selector text.
    """

    clusters: frozenset[str] = frozenset()
    namespace: str = ""
    label_selector: str = ""
    field_selector: str = ""
    _label: _Predicate | None = field(default=None, repr=False, compare=False)
    _field: _Predicate | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        clusters: frozenset[str] | tuple[str, ...] = (),
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ObjectFilter:
        """Parse the selectors; raises ``BadRequestError`` quoting a bad selector."""
        try:
            label = _parse_label_selector(label_selector)
        except errors.SelectorError as exc:
            raise status.bad_request(f"unable to parse labelSelector: {exc}") from exc
        try:
            fields = _parse_field_selector(field_selector)
        except errors.SelectorError as exc:
            raise status.bad_request(f"unable to parse fieldSelector: {exc}") from exc
        return cls(
            frozenset(clusters), namespace or "", label_selector, field_selector, label, fields
        )

    @property
    def selects_everything_in_scope(self) -> bool:
        """True when only cluster and namespace restrict the selection."""
        return self._label is None and self._field is None

    def matches_object(self, obj: Obj) -> bool:
        """Whether ``obj`` passes the label and field selectors (scope not checked)."""
        if self._label is not None and not self._label(obj):
            return False
        return self._field is None or self._field(obj)

    def in_scope(self, cluster: str, namespace: str) -> bool:
        """Whether an object of ``cluster``/``namespace`` is inside the requested scope."""
        if self.clusters and cluster not in self.clusters:
            return False
        return not self.namespace or namespace == self.namespace
