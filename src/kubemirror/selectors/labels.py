"""Kubernetes label selectors with the API server's exact parsing and matching rules.

Bottom layer of kubemirror (beside ``keys`` and ``paths``); behaviour follows
apimachinery's ``labels.Parse`` and ``metav1.LabelSelectorAsSelector``. Also
home of ``Operator``, which field selectors share. Selectors are immutable,
hashable values, compiled once at construction so that ``matches`` is cheap
enough to run on every object of a large LIST; they are safe to share between
threads. Every malformed selector raises ``errors.SelectorError`` quoting the
text and the 0-based position.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubemirror import errors

__all__ = [
    "LabelSelector",
    "Operator",
    "Requirement",
    "label_selector_as_selector",
    "label_selector_from_dict",
    "parse_label_selector",
]


class Operator(enum.StrEnum):
    """A selector operator; the value is Kubernetes' ``selection.Operator`` string."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_SET_OPERATORS = frozenset({Operator.IN, Operator.NOT_IN})
_EXACT_OPERATORS = frozenset({Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS})
_UNARY_OPERATORS = frozenset({Operator.EXISTS, Operator.DOES_NOT_EXIST})
_NUMERIC_OPERATORS = frozenset({Operator.GREATER_THAN, Operator.LESS_THAN})

# --------------------------------------------------------------------------- validation

_LABEL_NAME_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1123_SUBDOMAIN_RE = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_GO_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def _label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (label key), or ``None`` if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if "/" in prefix:
            return f"label key {key!r}: must contain at most one '/'"
        if not prefix:
            return f"label key {key!r}: the prefix before '/' must not be empty"
        if len(prefix) > 253:
            return f"label key {key!r}: the prefix must be at most 253 characters"
        if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            return (
                f"label key {key!r}: the prefix must be a lowercase DNS subdomain "
                "(alphanumerics, '-' and '.', starting and ending with an alphanumeric)"
            )
    if not name:
        return f"label key {key!r}: the name part must not be empty"
    if len(name) > 63:
        return f"label key {key!r}: the name part must be at most 63 characters"
    if not _LABEL_NAME_RE.fullmatch(name):
        return f"label key {key!r}: the name part {_NAME_RULE}"
    return None


def _label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or ``None`` if it is."""
    if len(value) > 63:
        return f"label value {value!r}: must be at most 63 characters"
    if value and not _LABEL_NAME_RE.fullmatch(value):
        return f"label value {value!r}: must be empty or {_NAME_RULE.removeprefix('must ')}"
    return None


def _go_parse_int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``: the integer, or ``None`` when Go would fail."""
    if not _GO_INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _fail(
    message: str, expression: str | None, position: int | None = None
) -> errors.SelectorError:
    return errors.SelectorError(message, expression=expression, position=position)


# --------------------------------------------------------------------------- label requirements


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement: ``key``, ``operator`` and ``values``.

    Validated on construction like Kubernetes' ``NewRequirement`` (raises
    ``SelectorError``): ``in``/``notin`` need at least one value, ``=``/``==``/``!=``
    and ``gt``/``lt`` exactly one (an int64 for the latter), ``exists`` and ``!``
    none. ``values`` is normalised to a sorted tuple without duplicates (the
    values form a set, as in Kubernetes), so equal requirements compare equal.
    Immutable and hashable.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            operator = Operator(self.operator)
        except ValueError:
            raise _fail(f"unknown label selector operator {self.operator!r}", None) from None
        object.__setattr__(self, "operator", operator)
        if isinstance(self.values, str) or not all(isinstance(v, str) for v in self.values):
            raise _fail(f"requirement values must be strings, got {self.values!r}", None)
        values = tuple(sorted(set(self.values)))
        object.__setattr__(self, "values", values)
        if not isinstance(self.key, str):
            raise _fail(f"a label key must be a string, got {self.key!r}", None)
        expression = _requirement_text(self.key, operator, values)
        if problem := _label_key_problem(self.key):
            raise _fail(f"invalid {problem}", expression)
        if operator in _SET_OPERATORS and not values:
            raise _fail(f"operator {operator.value!r} needs at least one value", expression)
        if operator in _EXACT_OPERATORS and len(values) != 1:
            raise _fail(f"operator {operator.value!r} needs exactly one value", expression)
        if operator in _UNARY_OPERATORS and values:
            raise _fail(f"operator {operator.value!r} takes no values", expression)
        if operator in _NUMERIC_OPERATORS:
            if len(values) != 1:
                raise _fail(f"operator {operator.value!r} needs exactly one value", expression)
            if _go_parse_int64(values[0]) is None:
                raise _fail(f"operator {operator.value!r} needs an integer value", expression)
        for value in values:
            if problem := _label_value_problem(value):
                raise _fail(f"invalid {problem}", expression)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether ``labels`` satisfy this requirement (a missing key never equals a value)."""
        if not isinstance(labels, Mapping):
            labels = {}
        operator = self.operator
        if operator in _UNARY_OPERATORS:
            return (self.key in labels) is (operator is Operator.EXISTS)
        if self.key not in labels:
            return operator is Operator.NOT_IN or operator is Operator.NOT_EQUALS
        actual = labels[self.key]
        if operator in _NUMERIC_OPERATORS:
            number = _go_parse_int64(actual) if isinstance(actual, str) else None
            if number is None:
                return False
            limit = int(self.values[0])
            return number > limit if operator is Operator.GREATER_THAN else number < limit
        found = isinstance(actual, str) and actual in self.values
        return found is (operator not in (Operator.NOT_IN, Operator.NOT_EQUALS))

    def __str__(self) -> str:
        return _requirement_text(self.key, self.operator, self.values)


_OPERATOR_SYMBOLS = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}
_OPERATOR_SYMBOLS.update({Operator.IN: " in ", Operator.NOT_IN: " notin "})


def _requirement_text(key: str, operator: Operator, values: tuple[str, ...]) -> str:
    if operator is Operator.EXISTS:
        return str(key)
    if operator is Operator.DOES_NOT_EXIST:
        return f"!{key}"
    joined = ",".join(str(v) for v in values)
    if operator in _SET_OPERATORS:
        joined = f"({joined})"
    return f"{key}{_OPERATOR_SYMBOLS.get(operator, operator.value)}{joined}"


# --------------------------------------------------------------------------- lexer / parser

_EOS, _IDENT, _IN, _NOTIN, _COMMA, _LPAR, _RPAR, _BANG, _EQ, _DEQ, _NEQ, _GT, _LT = range(13)
_SYMBOL_TOKENS = {"==": _DEQ, "!=": _NEQ, "=": _EQ, "!": _BANG, ",": _COMMA, "(": _LPAR}
_SYMBOL_TOKENS.update({")": _RPAR, ">": _GT, "<": _LT})
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_BINARY_TOKENS = {_IN: Operator.IN, _NOTIN: Operator.NOT_IN, _EQ: Operator.EQUALS}
_BINARY_TOKENS.update({_DEQ: Operator.DOUBLE_EQUALS, _NEQ: Operator.NOT_EQUALS})
_BINARY_TOKENS.update({_GT: Operator.GREATER_THAN, _LT: Operator.LESS_THAN})

_Token = tuple[int, str, int]  # (kind, literal, position)


def _lex(text: str) -> list[_Token]:
    """Split a label selector into tokens the way apimachinery's lexer does."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append((_EOS, "", n))
            return tokens
        if text[i] in _SPECIAL:
            pair = text[i : i + 2]
            literal = pair if pair in ("==", "!=") else text[i]
            tokens.append((_SYMBOL_TOKENS[literal], literal, i))
            i += len(literal)
            continue
        start = i
        while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
            i += 1
        literal = text[start:i]
        kind = _IN if literal == "in" else _NOTIN if literal == "notin" else _IDENT
        tokens.append((kind, literal, start))


def _describe(token: _Token) -> str:
    return "end of string" if token[0] == _EOS else repr(token[1])


class _LabelParser:
    """Recursive descent over the token list, following ``labels.Parse``'s grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.index = 0

    def peek(self, *, values: bool = True) -> _Token:
        token = self.tokens[self.index]
        # In value context the keywords 'in' and 'notin' are plain identifiers.
        if values and token[0] in (_IN, _NOTIN):
            return (_IDENT, token[1], token[2])
        return token

    def take(self, *, values: bool = True) -> _Token:
        token = self.peek(values=values)
        if token[0] != _EOS:
            self.index += 1
        return token

    def error(self, token: _Token, expected: str) -> errors.SelectorError:
        return _fail(f"found {_describe(token)}, expected {expected}", self.text, token[2])

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token = self.peek()
            if token[0] == _EOS:
                return requirements
            if token[0] not in (_IDENT, _BANG):
                raise self.error(token, "'!', a label key, or end of string")
            requirements.append(self.parse_requirement())
            after = self.take()
            if after[0] == _EOS:
                return requirements
            if after[0] != _COMMA:
                raise self.error(after, "',' or end of string")
            following = self.peek()
            if following[0] not in (_IDENT, _BANG):
                raise self.error(following, "a label key or '!' after ','")

    def parse_requirement(self) -> Requirement:
        token = self.take()
        negated = token[0] == _BANG
        if negated:
            token = self.take()
        if token[0] != _IDENT:
            raise self.error(token, "a label key")
        key = token[1]
        if problem := _label_key_problem(key):
            raise _fail(f"invalid {problem}", self.text, token[2])
        if negated:
            return Requirement(key, Operator.DOES_NOT_EXIST)
        if self.peek()[0] in (_EOS, _COMMA):
            return Requirement(key, Operator.EXISTS)
        op_token = self.take(values=False)
        operator = _BINARY_TOKENS.get(op_token[0])
        if operator is None:
            raise self.error(op_token, "an operator (in, notin, =, ==, !=, >, <)")
        if operator in _SET_OPERATORS:
            values = self.parse_value_set()
        else:
            values = [self.parse_exact_value()]
        for value, position in values:
            if problem := _label_value_problem(value):
                raise _fail(f"invalid {problem}", self.text, position)
        if operator in _NUMERIC_OPERATORS and _go_parse_int64(values[0][0]) is None:
            raise _fail(
                f"found {values[0][0]!r}, expected an integer after {op_token[1]!r}",
                self.text,
                values[0][1],
            )
        return Requirement(key, operator, tuple(value for value, _ in values))

    def parse_exact_value(self) -> tuple[str, int]:
        token = self.peek()
        if token[0] in (_EOS, _COMMA):
            return "", token[2]
        token = self.take()
        if token[0] != _IDENT:
            raise self.error(token, "a label value")
        return token[1], token[2]

    def parse_value_set(self) -> list[tuple[str, int]]:
        opening = self.take()
        if opening[0] != _LPAR:
            raise self.error(opening, "'(' to open the value set")
        values: list[tuple[str, int]] = []
        token = self.peek()
        if token[0] == _RPAR:  # "()" is the set holding the empty value
            self.take()
            return [("", token[2])]
        if token[0] not in (_IDENT, _COMMA):
            raise self.error(token, "a label value, ',' or ')'")
        while True:
            token = self.take()
            if token[0] == _IDENT:
                values.append((token[1], token[2]))
                following = self.peek()
                if following[0] == _RPAR:
                    self.take()
                    return values
                if following[0] != _COMMA:
                    raise self.error(following, "',' or ')'")
            elif token[0] == _COMMA:
                if not values:  # "(,": an empty value before the comma
                    values.append(("", token[2]))
                following = self.peek()
                if following[0] == _RPAR:  # ",)": an empty value after the comma
                    values.append(("", following[2]))
                    self.take()
                    return values
                if following[0] == _COMMA:  # ",,": an empty value between commas (the
                    values.append(("", following[2]))  # second comma is read next turn)
            else:
                raise self.error(token, "a label value or ','")


# --------------------------------------------------------------------------- LabelSelector

_Check = Callable[[Mapping[str, Any]], bool]
_EMPTY: Mapping[str, str] = {}


def _compile_check(req: Requirement) -> _Check:
    key, op, values = req.key, req.operator, req.values
    if op is Operator.EXISTS:
        return lambda labels: key in labels
    if op is Operator.DOES_NOT_EXIST:
        return lambda labels: key not in labels
    if op in _NUMERIC_OPERATORS:
        return req.matches
    if len(values) == 1:
        value = values[0]
        if op is Operator.NOT_IN or op is Operator.NOT_EQUALS:
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    allowed = frozenset(values)
    if op is Operator.NOT_IN:
        return lambda labels: labels.get(key) not in allowed
    return lambda labels: labels.get(key) in allowed


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes label selector: the AND of its ``requirements``.

    Build it with ``parse`` (string form), ``from_dict`` (``metav1.LabelSelector``),
    ``everything()`` or ``nothing()``. Requirements are kept sorted by key
    (stable for equal keys), as Kubernetes does, so ``str()`` is canonical and
    ``parse(str(s)) == s`` for every selector but ``nothing()``. Immutable,
    hashable and thread-safe. ``matches`` is precompiled: a selector made only of
    equalities is a loop of dict lookups. It never raises on decoded JSON: labels
    that are ``None`` or not a mapping count as no labels.
    """

    requirements: tuple[Requirement, ...] = ()
    selects_nothing: bool = False
    _equalities: tuple[tuple[str, str], ...] | None = field(
        init=False, repr=False, compare=False, hash=False
    )
    _checks: tuple[_Check, ...] = field(init=False, repr=False, compare=False, hash=False)

    _EVERYTHING: ClassVar[LabelSelector]
    _NOTHING: ClassVar[LabelSelector]

    def __post_init__(self) -> None:
        requirements = tuple(sorted(self.requirements, key=lambda r: r.key))
        object.__setattr__(self, "requirements", requirements)
        equalities: list[tuple[str, str]] = []
        checks: list[_Check] = []
        for req in requirements:
            if req.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS) or (
                req.operator is Operator.IN and len(req.values) == 1
            ):
                equalities.append((req.key, req.values[0]))
            else:
                checks.append(_compile_check(req))
        object.__setattr__(self, "_equalities", tuple(equalities) or None)
        object.__setattr__(self, "_checks", tuple(checks))

    # -- construction

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the string form (``a=b,c!=d,e in (x,y),f notin (z),g,!h,n>1``).

        ``""`` (or only whitespace) selects everything. Raises ``SelectorError``
        with the position of the first offending token. Results are cached (the
        selector is immutable), so re-parsing a request's selector is cheap.
        """
        if not isinstance(text, str):
            raise _fail(f"a label selector must be a string, got {type(text).__name__}", None)
        return _parse_label(text)

    @classmethod
    def from_dict(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a ``metav1.LabelSelector`` (``matchLabels``, ``matchExpressions``).

        As apimachinery's ``LabelSelectorAsSelector``: ``None`` (a nil selector, e.g.
        a Service or PodDisruptionBudget without one) selects nothing, ``{}`` selects
        everything. The snake_case keys produced by the
        official client's ``to_dict()`` are accepted too. Unknown keys, unknown
        operators and bad keys/values raise ``SelectorError`` naming the field.
        """
        if selector is None:
            return cls._NOTHING
        if not isinstance(selector, Mapping):
            raise errors.SelectorError(
                f"a label selector must be a mapping, got {type(selector).__name__}"
            )
        requirements = _requirements_from_dict(selector)
        return cls(tuple(requirements)) if requirements else cls._EVERYTHING

    @classmethod
    def from_set(cls, labels: Mapping[str, str]) -> LabelSelector:
        """A selector requiring every ``key=value`` of ``labels`` (validated)."""
        return cls.from_dict({"matchLabels": labels})

    @classmethod
    def everything(cls) -> LabelSelector:
        """The selector that matches every label set (also ``parse("")``)."""
        return cls._EVERYTHING

    @classmethod
    def nothing(cls) -> LabelSelector:
        """The selector that matches no label set (its ``str()`` is ``""``)."""
        return cls._NOTHING

    def add(self, *requirements: Requirement) -> LabelSelector:
        """A new selector with ``requirements`` ANDed to these ones."""
        if self.selects_nothing:
            return self
        return LabelSelector(self.requirements + requirements)

    # -- queries

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether ``labels`` (an object's ``metadata.labels``; ``None`` = no labels) match."""
        if labels.__class__ is not dict and not isinstance(labels, Mapping):
            labels = _EMPTY  # None, or not a mapping at all: no labels
        try:
            equalities = self._equalities
            if equalities is not None:
                get = labels.get
                for key, value in equalities:
                    if get(key) != value:
                        return False
            for check in self._checks:
                if not check(labels):
                    return False
        except TypeError:  # an unhashable label value met a set-based requirement
            return self._matches_slowly(labels)
        return not self.selects_nothing

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj["metadata"]["labels"]`` match (absent metadata = no labels)."""
        try:
            labels = obj["metadata"].get("labels")
        except (KeyError, TypeError, AttributeError):
            labels = None
        return self.matches(labels)

    def _matches_slowly(self, labels: Mapping[str, Any]) -> bool:
        if self.selects_nothing:
            return False
        return all(req.matches(labels) for req in self.requirements)

    def is_empty(self) -> bool:
        """True when the selector does not restrict anything (``everything()``)."""
        return not self.requirements and not self.selects_nothing

    def requires_exact_match(self, key: str) -> str | None:
        """The single value ``key`` must have (``=``, ``==`` or one-value ``in``), else ``None``.

        Like Kubernetes, only the first requirement on ``key`` is considered.
        """
        for req in self.requirements:
            if req.key == key:
                exact = req.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                return req.values[0] if exact and len(req.values) == 1 else None
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``metav1.LabelSelector`` form; ``{}`` for ``everything()``.

        ``=``/``==`` become ``matchLabels`` (an ``In`` expression when a key repeats),
        ``!=`` becomes ``NotIn``. Raises ``SelectorError`` for ``gt``/``lt`` and for
        ``nothing()``, which that form cannot express.
        """
        if self.selects_nothing:
            raise _fail("the 'nothing' selector has no metav1.LabelSelector form", None)
        match_labels: dict[str, str] = {}
        expressions: list[dict[str, Any]] = []
        keys = [r.key for r in self.requirements]
        for req in self.requirements:
            op = req.operator
            if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS) and keys.count(req.key) == 1:
                match_labels[req.key] = req.values[0]
            elif op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN):
                expressions.append({"key": req.key, "operator": "In", "values": list(req.values)})
            elif op in (Operator.NOT_EQUALS, Operator.NOT_IN):
                expressions.append(
                    {"key": req.key, "operator": "NotIn", "values": list(req.values)}
                )
            elif op is Operator.EXISTS:
                expressions.append({"key": req.key, "operator": "Exists"})
            elif op is Operator.DOES_NOT_EXIST:
                expressions.append({"key": req.key, "operator": "DoesNotExist"})
            else:
                raise _fail(f"{str(req)!r} has no metav1.LabelSelector form", str(self))
        result: dict[str, Any] = {}
        if match_labels:
            result["matchLabels"] = match_labels
        if expressions:
            result["matchExpressions"] = expressions
        return result

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)

    def __repr__(self) -> str:
        if self.selects_nothing:
            return "LabelSelector.nothing()"
        return f"LabelSelector.parse({str(self)!r})"

    def __reduce__(self) -> tuple[type[LabelSelector], tuple[Any, ...]]:
        # Pickle the requirements, not the compiled matchers (closures).
        return LabelSelector, (self.requirements, self.selects_nothing)


LabelSelector._EVERYTHING = LabelSelector()
LabelSelector._NOTHING = LabelSelector(selects_nothing=True)


@functools.lru_cache(maxsize=512)
def _parse_label(text: str) -> LabelSelector:
    requirements = _LabelParser(text).parse()
    return LabelSelector(tuple(requirements)) if requirements else LabelSelector._EVERYTHING


_DICT_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def _requirements_from_dict(selector: Mapping[str, Any]) -> list[Requirement]:
    requirements: list[Requirement] = []
    for name, value in selector.items():
        if value is None:
            continue
        if name in ("matchLabels", "match_labels"):
            if not isinstance(value, Mapping):
                raise errors.SelectorError(
                    f"must map label keys to values, got {type(value).__name__}", field=name
                )
            for key, label_value in value.items():
                where = f"{name}[{key!r}]"
                requirements.append(_dict_requirement(where, key, Operator.EQUALS, [label_value]))
        elif name in ("matchExpressions", "match_expressions"):
            if not isinstance(value, list | tuple):
                raise errors.SelectorError(
                    f"must be a list of requirements, got {type(value).__name__}", field=name
                )
            for index, item in enumerate(value):
                where = f"{name}[{index}]"
                if not isinstance(item, Mapping) or set(item) - {"key", "operator", "values"}:
                    raise errors.SelectorError(
                        f"expected a mapping of 'key', 'operator' and 'values', got {item!r}",
                        field=where,
                    )
                operator_name = item.get("operator")
                operator = _DICT_OPERATORS.get(str(operator_name))
                if operator is None:
                    raise errors.SelectorError(
                        f"{operator_name!r} is not a valid label selector operator "
                        "(expected In, NotIn, Exists or DoesNotExist)",
                        field=f"{where}.operator",
                    )
                values = item.get("values") or []
                if not isinstance(values, list | tuple):
                    raise errors.SelectorError(
                        f"expected a list of strings, got {values!r}", field=f"{where}.values"
                    )
                requirements.append(_dict_requirement(where, item.get("key"), operator, values))
        else:
            raise errors.SelectorError(
                f"unknown label selector field {name!r} "
                "(expected 'matchLabels' and/or 'matchExpressions')",
                field=str(name),
            )
    return requirements


def _dict_requirement(where: str, key: Any, operator: Operator, values: Any) -> Requirement:
    try:
        return Requirement(key, operator, tuple(values))
    except errors.SelectorError as exc:
        raise errors.SelectorError(exc.message, field=where) from None


def parse_label_selector(text: str) -> LabelSelector:
    """``LabelSelector.parse(text)``."""
    return LabelSelector.parse(text)


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """``LabelSelector.from_dict(selector)``."""
    return LabelSelector.from_dict(selector)


def label_selector_as_selector(selector: Mapping[str, Any] | None) -> LabelSelector:
    """apimachinery's ``LabelSelectorAsSelector`` under its Go name: ``None`` selects
    nothing, ``{}`` everything (``LabelSelector.from_dict``)."""
    return LabelSelector.from_dict(selector)
