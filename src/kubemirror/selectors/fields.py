"""Kubernetes field selectors with the API server's exact parsing and matching rules.

Bottom layer of kubemirror (beside ``keys`` and ``paths``); behaviour follows
apimachinery's ``fields.ParseSelector`` and ``fields.EscapeValue``, with the
operators of ``labels.Operator``. Selectors are immutable, hashable values,
compiled once at construction; they are safe to share between threads. Every
malformed selector raises ``errors.SelectorError`` quoting the text and the
0-based position.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubemirror import errors, jsontext
from kubemirror.selectors import labels

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "escape_field_value",
    "parse_field_selector",
]


def _fail(
    message: str, expression: str | None, position: int | None = None
) -> errors.SelectorError:
    return errors.SelectorError(message, expression=expression, position=position)


def _field_string(value: object) -> str:
    """The string a field selector compares against; ``""`` for missing or null."""
    return "" if value is None else jsontext.value_text(value)


def escape_field_value(value: str) -> str:
    """Escape ``\\``, ``,`` and ``=`` for use as a field selector value (``fields.EscapeValue``)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One field requirement: ``field`` (a dotted path) ``=`` or ``!=`` ``value``.

    ``operator`` is ``labels.Operator.EQUALS`` or ``labels.Operator.NOT_EQUALS`` (``==`` parses to
    ``EQUALS``, as in Kubernetes). Immutable and hashable.
    """

    field: str
    operator: labels.Operator
    value: str

    def __post_init__(self) -> None:
        operator = labels.Operator(self.operator)
        if operator is labels.Operator.DOUBLE_EQUALS:
            operator = labels.Operator.EQUALS
        object.__setattr__(self, "operator", operator)
        if operator not in (labels.Operator.EQUALS, labels.Operator.NOT_EQUALS):
            raise _fail(
                f"field selectors support only '=', '==' and '!=', not {operator.value!r}", None
            )
        problem = _field_name_problem(self.field)
        if problem:
            raise _fail(problem, self.field)
        if not isinstance(self.value, str):
            raise _fail(f"field selector values must be strings, got {self.value!r}", None)

    def __str__(self) -> str:
        symbol = "=" if self.operator is labels.Operator.EQUALS else "!="
        return f"{self.field}{symbol}{escape_field_value(self.value)}"


def _field_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "expected a field name (such as 'metadata.name') before the operator"
    for index, char in enumerate(name):
        if char.isspace():
            return f"field name {name!r} must not contain whitespace (at offset {index})"
    if "" in name.split("."):
        return f"field name {name!r} has an empty segment between dots"
    return None


def _split_terms(text: str) -> list[tuple[str, int]]:
    """Split at unescaped commas; each term keeps its escapes and its start offset."""
    terms: list[tuple[str, int]] = []
    start = 0
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append((text[start:index], start))
            start = index + 1
    terms.append((text[start:], start))
    return terms


def _unescape_field_value(raw: str, text: str, offset: int) -> str:
    if "\\" not in raw and "," not in raw and "=" not in raw:
        return raw
    out: list[str] = []
    escaped = False
    for index, char in enumerate(raw):
        if escaped:
            if char not in "\\,=":
                raise _fail(
                    f"invalid escape sequence '\\{char}' (only '\\\\', '\\,' and '\\=' work)",
                    text,
                    offset + index - 1,
                )
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise _fail(
                f"unescaped {char!r} in a field selector value (write '\\{char}')",
                text,
                offset + index,
            )
        else:
            out.append(char)
    if escaped:
        raise _fail(
            "a field selector value must not end with a lone '\\'", text, offset + len(raw) - 1
        )
    return "".join(out)


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A Kubernetes field selector: the AND of ``field=value`` / ``field!=value`` terms.

    ``matches(obj)`` resolves each dotted field in the object (a missing field or
    ``null`` reads as ``""``; numbers and booleans as their JSON text);
    ``matches_fields`` takes the flat ``{"metadata.name": ...}`` map Kubernetes
    uses. Requirements are sorted by their canonical text, so ``str()`` is
    canonical and ``parse(str(s)) == s``. Immutable, hashable, thread-safe.
    """

    requirements: tuple[FieldRequirement, ...] = ()
    selects_nothing: bool = False
    _compiled: tuple[tuple[tuple[str, ...], bool, str], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )

    _EVERYTHING: ClassVar[FieldSelector]
    _NOTHING: ClassVar[FieldSelector]

    def __post_init__(self) -> None:
        requirements = tuple(sorted(self.requirements, key=str))
        object.__setattr__(self, "requirements", requirements)
        compiled = tuple(
            (tuple(r.field.split(".")), r.operator is labels.Operator.EQUALS, r.value)
            for r in requirements
        )
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Parse ``metadata.name=x,status.phase!=Running,spec.nodeName==n1``.

        Values may escape ``\\``, ``,`` and ``=`` with a backslash (any other escape
        is an error, as in Kubernetes); empty terms are skipped; ``""`` selects
        everything. Raises ``SelectorError`` with the offending position.
        """
        if not isinstance(text, str):
            raise _fail(f"a field selector must be a string, got {type(text).__name__}", None)
        return _parse_field(text)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> FieldSelector:
        """A selector requiring ``field=value`` for every item of ``fields``."""
        return cls(tuple(FieldRequirement(k, labels.Operator.EQUALS, v) for k, v in fields.items()))

    @classmethod
    def everything(cls) -> FieldSelector:
        """The selector that matches every object (also ``parse("")``)."""
        return cls._EVERYTHING

    @classmethod
    def nothing(cls) -> FieldSelector:
        """The selector that matches no object (its ``str()`` is ``""``)."""
        return cls._NOTHING

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object's fields satisfy every requirement. Never raises."""
        if self.selects_nothing:
            return False
        for path, equal, value in self._compiled:
            current: Any = obj
            try:  # in decoded JSON only mappings have .get: anything else means "absent"
                for segment in path:
                    current = current.get(segment)
            except AttributeError:
                current = None
            actual = current if current.__class__ is str else _field_string(current)
            if (actual == value) is not equal:
                return False
        return True

    def matches_fields(self, fields: Mapping[str, str]) -> bool:
        """Whether a flat field set (``{"metadata.name": "x"}``) satisfies every requirement."""
        if self.selects_nothing:
            return False
        for req in self.requirements:
            actual = fields.get(req.field, "")
            if (actual == req.value) is not (req.operator is labels.Operator.EQUALS):
                return False
        return True

    def is_empty(self) -> bool:
        """True when the selector does not restrict anything (``everything()``)."""
        return not self.requirements and not self.selects_nothing

    def requires_exact_match(self, field_name: str) -> str | None:
        """The value ``field_name`` must equal, if some requirement pins it, else ``None``."""
        for req in self.requirements:
            if req.field == field_name and req.operator is labels.Operator.EQUALS:
                return req.value
        return None

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)

    def __repr__(self) -> str:
        if self.selects_nothing:
            return "FieldSelector.nothing()"
        return f"FieldSelector.parse({str(self)!r})"


FieldSelector._EVERYTHING = FieldSelector()
FieldSelector._NOTHING = FieldSelector(selects_nothing=True)


@functools.lru_cache(maxsize=512)
def _parse_field(text: str) -> FieldSelector:
    requirements: list[FieldRequirement] = []
    for term, offset in _split_terms(text):
        if not term:
            continue
        found = _find_field_operator(term)
        if found is None:
            raise _fail(
                f"cannot understand {term!r}: expected 'field=value', 'field==value' "
                "or 'field!=value'",
                text,
                offset,
            )
        index, symbol = found
        name = term[:index]
        problem = _field_name_problem(name)
        if problem:
            raise _fail(problem, text, offset)
        value = _unescape_field_value(
            term[index + len(symbol) :], text, offset + index + len(symbol)
        )
        operator = labels.Operator.NOT_EQUALS if symbol == "!=" else labels.Operator.EQUALS
        requirements.append(FieldRequirement(name, operator, value))
    return FieldSelector(tuple(requirements)) if requirements else FieldSelector._EVERYTHING


def _find_field_operator(term: str) -> tuple[int, str] | None:
    """The first ``!=``, ``==`` or ``=`` in ``term`` (leftmost; ``!=`` and ``==`` win ties)."""
    for index, char in enumerate(term):
        if char == "!" and term.startswith("!=", index):
            return index, "!="
        if char == "=":
            return (index, "==") if term.startswith("==", index) else (index, "=")
    return None


def parse_field_selector(text: str) -> FieldSelector:
    """``FieldSelector.parse(text)``."""
    return FieldSelector.parse(text)
