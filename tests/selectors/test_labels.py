"""Tests for kubemirror.selectors.labels: Kubernetes label selector semantics.

Valid/invalid tables follow the cases of apimachinery's ``labels/selector_test.go``;
hypothesis checks ``matches`` against a naive reference evaluator and the
canonical-string round trip.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import errors, selectors
from kubemirror.selectors.labels import LabelSelector, Operator, Requirement

# --------------------------------------------------------------------------- label: parsing

VALID_LABEL_SELECTORS = [
    # (text, canonical string)
    ("x=a,y=b,z=c", "x=a,y=b,z=c"),
    ("", ""),
    ("   ", ""),
    ("x!=a,y=b", "x!=a,y=b"),
    ("x=", "x="),
    ("x= ", "x="),
    ("x=,z= ", "x=,z="),
    ("x= ,z= ", "x=,z="),
    ("!x", "!x"),
    ("! x", "!x"),
    ("x>1", "x>1"),
    ("x>1,z<5", "x>1,z<5"),
    ("x<7", "x<7"),
    ("x>0123", "x>0123"),
    ("\rx", "x"),
    ("this-is-a-dns.domain.com/key-with-dash", "this-is-a-dns.domain.com/key-with-dash"),
    (
        "this-is-another-dns.domain.com/key-with-dash in (so,what)",
        "this-is-another-dns.domain.com/key-with-dash in (so,what)",
    ),
    (
        "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
        "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
    ),
    ("foo  in\t (abc)", "foo in (abc)"),
    ("x notin\n (abc)", "x notin (abc)"),
    ("x  notin\t\t\t(abc,def)", "x notin (abc,def)"),
    ("x in (abc,def)", "x in (abc,def)"),
    ("x in (def,abc,def)", "x in (abc,def)"),
    ("x in (abc,)", "x in (,abc)"),
    ("x in ()", "x in ()"),
    ("x notin ( )", "x notin ()"),
    ("x notin (, a)", "x notin (,a)"),
    ("x in (a,,)", "x in (,a)"),  # apimachinery v0.37: empty values anywhere in the set
    ("x in (,a)", "x in (,a)"),
    ("x in (,,)", "x in ()"),
    ("x in (a,,,b)", "x in (,a,b)"),
    ("x notin (abc,,def),bar,z in (),w", "bar,w,x notin (,abc,def),z in ()"),
    ("x,y in (a)", "x,y in (a)"),
    ("y in (a),x", "x,y in (a)"),
    ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
    ("a ", "a"),
    ("x=abc,y==jkl,z!=a,z", "x=abc,y==jkl,z!=a,z"),
    ("x=a,a=x", "a=x,x=a"),
    ("notin=in", "notin=in"),
    ("in in (in)", "in in (in)"),
    ("z,x in (a),z!=b", "x in (a),z,z!=b"),
    ("A" * 63, "A" * 63),
    ("a" * 253 + "/" + "b" * 63, "a" * 253 + "/" + "b" * 63),
    ("k=" + "v" * 63, "k=" + "v" * 63),
]


@pytest.mark.parametrize(("text", "canonical"), VALID_LABEL_SELECTORS, ids=repr)
def test_label_selector_parses_and_prints_canonically(text: str, canonical: str) -> None:
    selector = LabelSelector.parse(text)
    assert str(selector) == canonical
    assert LabelSelector.parse(canonical) == selector
    assert hash(LabelSelector.parse(canonical)) == hash(selector)


def test_parse_normalizes_requirements_like_kubernetes() -> None:
    selector = LabelSelector.parse("x notin (abc,,def),bar,z in (),w")
    assert selector.requirements == (
        Requirement("bar", Operator.EXISTS),
        Requirement("w", Operator.EXISTS),
        Requirement("x", Operator.NOT_IN, ("", "abc", "def")),
        Requirement("z", Operator.IN, ("",)),
    )
    assert LabelSelector.parse("x=a,a=x") == LabelSelector.parse("a=x,x=a")
    assert LabelSelector.parse("x==a") != LabelSelector.parse("x=a")  # kept apart, as in Go


INVALID_LABEL_SELECTORS = [
    # (text, position, words expected in the message)
    ("x=a||y=b", 2, "label value 'a||y'"),
    ("x==a==b", 4, "found '=='"),
    ("!x=a", 2, "found '='"),
    ("x<a", 2, "expected an integer"),
    ("x>", 2, "expected an integer"),
    ("x>1.5", 2, "expected an integer"),
    ("x>99999999999999999999", 2, "expected an integer"),
    ("x>-1", 2, "label value '-1'"),
    ("x,,y", 2, "after ','"),
    (",x,y", 0, "found ','"),
    ("x nott in (y)", 2, "found 'nott', expected an operator"),
    ("a in (xyz),", 11, "found end of string"),
    ("a,", 2, "found end of string"),
    ("a in (xyz)b notin ()", 10, "found 'b'"),
    ("a in (xyz abc)", 10, "found 'abc', expected ',' or ')'"),
    ("a notin(", 8, "found end of string"),
    ("a (", 2, "found '('"),
    ("(", 0, "found '('"),
    ("x in a", 5, "expected '('"),
    ("x in (a", 7, "expected ',' or ')'"),
    ("x in (a,(", 8, "found '('"),
    ("x=a)", 3, "found ')'"),
    ("x=(a)", 2, "found '('"),
    ("!", 1, "expected a label key"),
    ("!!x", 1, "found '!'"),
    ("x=a,!y=b", 6, "found '='"),
    ("a/b/c", 0, "at most one '/'"),
    ("/a", 0, "prefix"),
    ("a/", 0, "name part must not be empty"),
    ("Example.com/a", 0, "DNS subdomain"),
    ("-a", 0, "must start and end with an alphanumeric"),
    ("a_", 0, "must start and end with an alphanumeric"),
    ("a" * 64, 0, "at most 63"),
    ("a" * 254 + "/b", 0, "at most 253"),
    ("k=" + "v" * 64, 2, "at most 63"),
    ("k in (ok,-bad)", 9, "label value '-bad'"),
    ("k=\x0bv", 2, "label value"),
    ("ké", 0, "label key"),
]


@pytest.mark.parametrize(("text", "position", "words"), INVALID_LABEL_SELECTORS, ids=repr)
def test_label_selector_errors_quote_expression_and_position(
    text: str, position: int, words: str
) -> None:
    with pytest.raises(errors.SelectorError) as info:
        LabelSelector.parse(text)
    err = info.value
    assert isinstance(err, errors.ConfigError)
    assert err.expression == text
    assert err.position == position
    assert words in err.message
    assert repr(text) in str(err)
    assert f"position {position}" in str(err)


def test_label_selector_rejects_non_strings() -> None:
    with pytest.raises(errors.SelectorError):
        LabelSelector.parse(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- label: matching

LABEL_MATCHES = [
    # (selector, labels, expected)
    ("", {"x": "y"}, True),
    ("", None, True),
    ("x=y", {"x": "y"}, True),
    ("x=y,z=w", {"x": "y", "z": "w"}, True),
    ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
    ("notin=in", {"notin": "in"}, True),
    ("x", {"x": "z"}, True),
    ("!x", {"y": "z"}, True),
    ("x>1", {"x": "2"}, True),
    ("x<1", {"x": "0"}, True),
    ("x=z", {}, False),
    ("x=y", {"x": "z"}, False),
    ("x=y,z=w", {"x": "w", "z": "w"}, False),
    ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
    ("x", {"y": "z"}, False),
    ("!x", {"x": "z"}, False),
    ("x>1", {"x": "0"}, False),
    ("x<1", {"x": "2"}, False),
    ("foo=bar,foobar=bar,baz=blah", {"foo": "bar", "baz": "blah"}, False),
    ("x in (foo),y notin (alpha)", {"x": "foo", "y": "baz"}, True),
    ("x in (foo),y in (alpha)", {"x": "foo", "y": "baz"}, False),
    ("x notin (),y", {"y": ""}, True),
    ("!x,y", {"y": ""}, True),
    ("x notin (),!y", {"y": ""}, False),
    ("x in ()", {"y": "baz"}, False),
    ("x in ()", {"x": ""}, True),
    ("x=", {"x": ""}, True),
    ("x=", {}, False),
    ("x!=", {}, True),
    ("z>1", {"z": "2"}, True),
    ("z>1", {"z": "v2"}, False),
    ("z>1", {}, False),
    ("z<1", {}, False),
    ("z>1", {"z": "+4"}, True),  # Go's ParseInt accepts a sign
    ("z<1", {"z": "-3"}, True),
    ("z>1", {"z": "1_0"}, False),  # ... but no underscores
    ("z>1", {"z": " 5"}, False),  # ... nor spaces
    ("z>1", {"z": "99999999999999999999"}, False),  # ... nor overflow
    ("a in (x,y),b notin (x,y)", {"a": "y", "b": "z"}, True),
    ("a in (x,y),b notin (x,y)", {"a": "y", "b": "x"}, False),
    ("a in (x,y),b notin (x,y)", {"a": "y"}, True),
    ("a=x,a=y", {"a": "x"}, False),
    ("a notin (x)", {"a": "y"}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), LABEL_MATCHES, ids=repr)
def test_label_selector_matches(text: str, labels: dict[str, str] | None, expected: bool) -> None:
    selector = LabelSelector.parse(text)
    assert selector.matches(labels) is expected
    assert all(r.matches(labels) for r in selector.requirements) is expected
    assert selector.matches_object({"metadata": {"labels": labels}}) is expected


@pytest.mark.parametrize(
    "labels",
    ["app", ["app"], 3, {"app": ["web"]}, {"app": {"x": 1}}, {"app": None}],
    ids=["str", "list", "int", "list-value", "dict-value", "null-value"],
)
def test_matches_never_raises_on_odd_labels(labels: Any) -> None:
    """Odd label containers count as no labels; odd values equal no selector value."""
    for text in ("app", "app=web", "app in (a,b)", "app notin (a,b)", "app>1", "!app"):
        selector = LabelSelector.parse(text)
        result = selector.matches(labels)
        mapping = labels if isinstance(labels, Mapping) else {}
        assert result is _reference_matches(_requirements_of(selector), mapping)


def test_matches_object_reads_metadata_labels() -> None:
    selector = LabelSelector.parse("app=web")
    assert selector.matches_object({"metadata": {"labels": {"app": "web"}}})
    assert not selector.matches_object({"metadata": {}})
    assert not selector.matches_object({})
    assert LabelSelector.parse("!app").matches_object({"metadata": None})


def test_everything_and_nothing() -> None:
    assert LabelSelector.everything().matches({"x": "y"})
    assert LabelSelector.everything().is_empty()
    assert LabelSelector.parse("") is LabelSelector.everything()
    assert not LabelSelector.nothing().matches({"x": "y"})
    assert not LabelSelector.nothing().matches(None)
    assert not LabelSelector.nothing().is_empty()
    assert str(LabelSelector.nothing()) == ""
    assert LabelSelector.nothing() != LabelSelector.everything()
    assert repr(LabelSelector.nothing()) == "LabelSelector.nothing()"
    assert repr(LabelSelector.parse("b,a")) == "LabelSelector.parse('a,b')"
    assert not LabelSelector.parse("a").is_empty()


def test_selectors_pickle_and_copy() -> None:
    for selector in (LabelSelector.parse("a in (x,y),!b,c>1"), LabelSelector.nothing()):
        for clone in (pickle.loads(pickle.dumps(selector)), copy.deepcopy(selector)):
            assert clone == selector
            assert clone.matches({"a": "x", "c": "2"}) is selector.matches({"a": "x", "c": "2"})


def test_requires_exact_match() -> None:
    selector = LabelSelector.parse("a=1,b in (2),c in (3,4),d!=5,e==6")
    assert selector.requires_exact_match("a") == "1"
    assert selector.requires_exact_match("b") == "2"
    assert selector.requires_exact_match("c") is None
    assert selector.requires_exact_match("d") is None
    assert selector.requires_exact_match("e") == "6"
    assert selector.requires_exact_match("zzz") is None


def test_add_ands_requirements() -> None:
    selector = LabelSelector.parse("b=1").add(Requirement("a", Operator.EXISTS))
    assert str(selector) == "a,b=1"
    assert LabelSelector.nothing().add(Requirement("a", Operator.EXISTS)).selects_nothing


# --------------------------------------------------------------------------- label: requirements

REQUIREMENT_CONSTRUCTOR = [
    # (key, operator, values, valid)
    ("x", Operator.IN, (), False),
    ("x", Operator.NOT_IN, (), False),
    ("x", Operator.IN, ("foo",), True),
    ("x", Operator.NOT_IN, ("foo",), True),
    ("x", Operator.EXISTS, (), True),
    ("x", Operator.DOES_NOT_EXIST, (), True),
    ("x", Operator.EXISTS, ("a",), False),
    ("x", Operator.EQUALS, (), False),
    ("x", Operator.EQUALS, ("a", "b"), False),
    ("1foo", Operator.IN, ("bar",), True),
    ("1234", Operator.IN, ("bar",), True),
    ("y", Operator.GREATER_THAN, ("1",), True),
    ("z", Operator.LESS_THAN, ("6",), True),
    ("foo", Operator.GREATER_THAN, ("bar",), False),
    ("barz", Operator.LESS_THAN, ("blah",), False),
    ("barz", Operator.LESS_THAN, ("1", "2"), False),
    ("a" * 254, Operator.EXISTS, (), False),
    ("x", "bogus", (), False),
    ("x", Operator.IN, "abc", False),
]


@pytest.mark.parametrize(("key", "op", "values", "valid"), REQUIREMENT_CONSTRUCTOR, ids=repr)
def test_requirement_constructor_validates(
    key: str, op: Operator, values: tuple[str, ...], valid: bool
) -> None:
    if valid:
        assert Requirement(key, op, values).key == key
    else:
        with pytest.raises(errors.SelectorError):
            Requirement(key, op, values)


@pytest.mark.parametrize(
    ("requirements", "text"),
    [
        (
            [("x", Operator.IN, ("abc", "def")), ("y", Operator.NOT_IN, ("jkl",)), ("z", "exists")],
            "x in (abc,def),y notin (jkl),z",
        ),
        (
            [("x", "notin", ("def", "abc")), ("y", "!=", ("jkl",)), ("z", "!", ())],
            "x notin (abc,def),y!=jkl,!z",
        ),
        (
            [("x", "notin", ("abc",)), ("y", "in", ("mno", "jkl")), ("z", "notin", ("",))],
            "x notin (abc),y in (jkl,mno),z notin ()",
        ),
        (
            [("x", "=", ("abc",)), ("y", "==", ("jkl",)), ("z", "!=", ("a",)), ("z", "exists")],
            "x=abc,y==jkl,z!=a,z",
        ),
        ([("x", "gt", ("2",)), ("y", "lt", ("8",)), ("z", "exists")], "x>2,y<8,z"),
    ],
    ids=["in-notin-exists", "notin-ne-dne", "empty-value", "equalities", "gt-lt"],
)
def test_selector_string_form(requirements: list[tuple[Any, ...]], text: str) -> None:
    selector = LabelSelector(tuple(Requirement(*r) for r in requirements))
    assert str(selector) == text
    assert LabelSelector.parse(text) == selector


# --------------------------------------------------------------------------- label: dict form


@pytest.mark.parametrize(
    ("selector", "canonical"),
    [
        (None, ""),
        ({}, ""),
        ({"matchLabels": {}}, ""),
        ({"matchLabels": None, "matchExpressions": None}, ""),
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["db", "cache"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "team", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist", "values": []},
                ],
            },
            "app=web,env notin (dev),!legacy,team,tier in (cache,db)",
        ),
        (
            {"match_labels": {"a": "1"}, "match_expressions": [{"key": "b", "operator": "Exists"}]},
            "a=1,b",
        ),
    ],
    ids=["none", "empty", "empty-labels", "nulls", "labels", "full", "snake-case"],
)
def test_from_dict(selector: dict[str, Any] | None, canonical: str) -> None:
    parsed = LabelSelector.from_dict(selector)
    assert str(parsed) == canonical
    assert selectors.label_selector_from_dict(selector) == parsed
    assert selectors.label_selector_as_selector(selector) == parsed


def test_nil_selector_selects_nothing_and_empty_selects_everything() -> None:
    """apimachinery's LabelSelectorAsSelector: a Service without a selector selects no
    pods, ``selector: {}`` selects all of them."""
    nil = LabelSelector.from_dict(None)
    assert nil.selects_nothing
    assert not nil.matches({})
    assert not nil.matches({"app": "web"})
    empty = LabelSelector.from_dict({})
    assert empty.matches({})
    assert empty.matches({"app": "web"})
    assert nil != empty


@pytest.mark.parametrize(
    ("selector", "field", "words"),
    [
        ({"matchLabel": {"a": "b"}}, "matchLabel", "unknown label selector field"),
        ({"matchLabels": ["a"]}, "matchLabels", "must map label keys"),
        ({"matchLabels": {"a": 1}}, "matchLabels['a']", "strings"),
        ({"matchLabels": {"a/b/c": "x"}}, "matchLabels['a/b/c']", "at most one '/'"),
        ({"matchLabels": {"a": "-x"}}, "matchLabels['a']", "label value '-x'"),
        ({"matchExpressions": {"key": "a"}}, "matchExpressions", "list"),
        ({"matchExpressions": ["a"]}, "matchExpressions[0]", "mapping"),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "value": ["x"]}]},
            "matchExpressions[0]",
            "'values'",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
            "matchExpressions[0].operator",
            "'Equals' is not a valid label selector operator",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "matchExpressions[0]",
            "at least one value",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "matchExpressions[0]",
            "takes no values",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]},
            "matchExpressions[0].values",
            "list of strings",
        ),
        (
            {"matchExpressions": [{"key": 3, "operator": "Exists"}]},
            "matchExpressions[0]",
            "must be a string",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_from_dict_errors_name_the_field(selector: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(errors.SelectorError) as info:
        LabelSelector.from_dict(selector)
    assert info.value.field == field
    assert words in str(info.value)


def test_from_dict_rejects_non_mappings() -> None:
    with pytest.raises(errors.SelectorError):
        LabelSelector.from_dict(["a"])  # type: ignore[arg-type]


def test_to_dict_round_trips_semantics() -> None:
    selector = LabelSelector.parse("a=1,b!=2,c in (x,y),d notin (z),e,!f,g=1,g=2")
    assert selector.to_dict() == {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "b", "operator": "NotIn", "values": ["2"]},
            {"key": "c", "operator": "In", "values": ["x", "y"]},
            {"key": "d", "operator": "NotIn", "values": ["z"]},
            {"key": "e", "operator": "Exists"},
            {"key": "f", "operator": "DoesNotExist"},
            {"key": "g", "operator": "In", "values": ["1"]},
            {"key": "g", "operator": "In", "values": ["2"]},
        ],
    }
    assert LabelSelector.everything().to_dict() == {}
    assert LabelSelector.from_dict(LabelSelector.parse("a=1,b").to_dict()) == LabelSelector.parse(
        "a=1,b"
    )
    with pytest.raises(errors.SelectorError):
        LabelSelector.parse("a>1").to_dict()
    with pytest.raises(errors.SelectorError):
        LabelSelector.nothing().to_dict()


def test_from_set_validates() -> None:
    assert str(LabelSelector.from_set({"b": "2", "a": "1"})) == "a=1,b=2"
    with pytest.raises(errors.SelectorError):
        LabelSelector.from_set({"Key": "v" * 64})


# --------------------------------------------------------------------------- label: hypothesis

KEYS = ["app", "tier", "example.com/role", "x", "in", "notin", "a.b-c_d"]
VALUES = ["", "web", "db", "1", "2", "10", "007", "v1"]
INTS = ["0", "1", "5", "10"]
# Label values an object may carry (not all valid in a selector) and what Go's
# strconv.ParseInt(v, 10, 64) makes of them.
LABEL_VALUES: dict[str, int | None] = {
    "": None,
    "web": None,
    "db": None,
    "1": 1,
    "2": 2,
    "10": 10,
    "007": 7,
    "v1": None,
    "-3": -3,
    "+4": 4,
    " 5": None,
    "1_0": None,
    "99999999999999999999": None,
}

_Req = tuple[str, str, tuple[str, ...]]


def _reference_matches(reqs: list[_Req], labels: Mapping[str, Any]) -> bool:
    """A deliberately naive evaluator of Kubernetes' documented semantics."""
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op in ("=", "==", "in"):
            ok = present and value in values
        elif op in ("!=", "notin"):
            ok = not present or value not in values
        elif op == "exists":
            ok = present
        elif op == "!":
            ok = not present
        else:
            number = LABEL_VALUES.get(value) if isinstance(value, str) else None
            bound = int(values[0])
            ok = (
                present
                and number is not None
                and (number > bound if op == "gt" else number < bound)
            )
        if not ok:
            return False
    return True


def _requirements_of(selector: LabelSelector) -> list[_Req]:
    return [(r.key, r.operator.value, r.values) for r in selector.requirements]


_space = st.sampled_from(["", " ", "  ", "\t", "\n", "\r"])


@st.composite
def requirement_texts(draw: st.DrawFn) -> tuple[str, _Req]:
    key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    sp = draw(_space)
    if op == "exists":
        return key, (key, op, ())
    if op == "!":
        return f"!{sp}{key}", (key, op, ())
    if op in ("gt", "lt"):
        value = draw(st.sampled_from(INTS))
        return f"{key}{sp}{'>' if op == 'gt' else '<'}{sp}{value}", (key, op, (value,))
    if op in ("in", "notin"):
        # Sorted and unique: Kubernetes itself rejects "(a,,)" and "(,,)".
        values = sorted(set(draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=4))))
        inner = ("," + draw(_space)).join(values)
        return f"{key} {op}{sp}({inner})", (key, op, tuple(values))
    value = draw(st.sampled_from(VALUES))
    return f"{key}{sp}{op}{sp}{value}", (key, op, (value,))


@st.composite
def selector_texts(draw: st.DrawFn) -> tuple[str, list[_Req]]:
    parts = draw(st.lists(requirement_texts(), max_size=5))
    separator = draw(_space) + "," + draw(_space)
    text = draw(_space) + separator.join(t for t, _ in parts) + draw(_space)
    return text, [r for _, r in parts]


label_maps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(sorted(LABEL_VALUES)))


@settings(max_examples=300)
@given(selector_texts(), label_maps)
def test_matches_agrees_with_reference(
    generated: tuple[str, list[_Req]], labels: dict[str, str]
) -> None:
    text, reqs = generated
    selector = LabelSelector.parse(text)
    assert selector.matches(labels) is _reference_matches(reqs, labels)
    assert len(selector.requirements) == len(reqs)


@settings(max_examples=300)
@given(selector_texts(), label_maps)
def test_canonical_string_round_trips(
    generated: tuple[str, list[_Req]], labels: dict[str, str]
) -> None:
    selector = LabelSelector.parse(generated[0])
    reparsed = LabelSelector.parse(str(selector))
    assert reparsed == selector
    assert str(reparsed) == str(selector)
    assert reparsed.matches(labels) is selector.matches(labels)
    keys = [r.key for r in selector.requirements]
    assert keys == sorted(keys)


@settings(max_examples=200)
@given(selector_texts(), label_maps)
def test_dict_form_matches_like_string_form(
    generated: tuple[str, list[_Req]], labels: dict[str, str]
) -> None:
    selector = LabelSelector.parse(generated[0])
    try:
        as_dict = selector.to_dict()
    except errors.SelectorError:
        assert any(
            r.operator in (Operator.GREATER_THAN, Operator.LESS_THAN) for r in selector.requirements
        )
        return
    assert LabelSelector.from_dict(as_dict).matches(labels) is selector.matches(labels)
