"""Tests for kubemirror.selectors.fields: Kubernetes field selector semantics.

Valid/invalid tables follow the cases of apimachinery's ``fields/selector_test.go``;
hypothesis checks the escaping round trip.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors, selectors
from kubemirror.selectors.fields import FieldRequirement, FieldSelector
from kubemirror.selectors.labels import Operator


def test_field_selectors_pickle() -> None:
    field_selector = FieldSelector.parse("a=b")
    assert pickle.loads(pickle.dumps(field_selector)) == field_selector


VALID_FIELD_SELECTORS = [
    # (text, canonical)
    ("x=a,y=b,z=c", "x=a,y=b,z=c"),
    ("", ""),
    ("x!=a,y=b", "x!=a,y=b"),
    (r"x=a||y\=b", r"x=a||y\=b"),
    (r"x=a\=\=b", r"x=a\=\=b"),
    ("x=a,a=x", "a=x,x=a"),
    ("b==bvalue,c!=cvalue,a=avalue", "a=avalue,b=bvalue,c!=cvalue"),
    ("a=a,", "a=a"),
    (",a=a", "a=a"),
    (",,", ""),
    (r"k=\,,k2=v2", r"k2=v2,k=\,"),
    (r"k=\\,k2=v2", r"k2=v2,k=\\"),
    (r"k=\\\,,k2=v2", r"k2=v2,k=\\\,"),
    ("함=수,목=록", "목=록,함=수"),
    (
        "metadata.name=x,status.phase!=Running,spec.nodeName==n1",
        "metadata.name=x,spec.nodeName=n1,status.phase!=Running",
    ),
    ("a!=b!c", "a!=b!c"),
    ("x=", "x="),
    ("x= a b ", "x= a b "),
]


@pytest.mark.parametrize(("text", "canonical"), VALID_FIELD_SELECTORS, ids=repr)
def test_field_selector_parses_and_prints_canonically(text: str, canonical: str) -> None:
    selector = FieldSelector.parse(text)
    assert str(selector) == canonical
    assert FieldSelector.parse(canonical) == selector
    assert selectors.parse_field_selector(text) == selector


INVALID_FIELD_SELECTORS = [
    # (text, position, words)
    ("x=a||y=b", 6, "unescaped '='"),
    ("x==a==b", 4, "unescaped '='"),
    ("x=a,b", 4, "cannot understand 'b'"),
    ("x in (a)", 0, "cannot understand"),
    ("x in (a,b,c)", 0, "cannot understand"),
    ("x", 0, "cannot understand 'x'"),
    (r"k=\a", 2, "invalid escape sequence"),
    ("k=\\", 2, "lone '\\'"),
    ("k=" + "\\" * 5, 6, "lone"),
    (r"a=b,k=\!", 6, "invalid escape sequence"),
    ("=x", 0, "expected a field name"),
    ("a=b,!=x", 4, "expected a field name"),
    ("metadata.name = x", 0, "whitespace"),
    ("metadata..name=x", 0, "empty segment"),
    (".name=x", 0, "empty segment"),
]


@pytest.mark.parametrize(("text", "position", "words"), INVALID_FIELD_SELECTORS, ids=repr)
def test_field_selector_errors(text: str, position: int, words: str) -> None:
    with pytest.raises(errors.SelectorError) as info:
        FieldSelector.parse(text)
    assert info.value.expression == text
    assert info.value.position == position
    assert words in info.value.message
    assert f"position {position}" in str(info.value)


FIELD_SET_MATCHES = [
    ("", {"x": "y"}, True),
    ("x=y", {"x": "y"}, True),
    ("x=y,z=w", {"x": "y", "z": "w"}, True),
    ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
    ("notin=in", {"notin": "in"}, True),
    ("x=y", {"x": "z"}, False),
    ("x=y,z=w", {"x": "w", "z": "w"}, False),
    ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
    (
        r"foo=bar,baz=blah,complex=\=value\\\,\\",
        {"foo": "bar", "baz": "blah", "complex": "=value\\,\\"},
        True,
    ),
    ("foo=bar,foobar=bar,baz=blah", {"foo": "bar", "baz": "blah"}, False),
    ("missing=", {}, True),
    ("missing!=", {}, False),
]


@pytest.mark.parametrize(("text", "fields", "expected"), FIELD_SET_MATCHES, ids=repr)
def test_field_selector_matches_fields(text: str, fields: dict[str, str], expected: bool) -> None:
    assert FieldSelector.parse(text).matches_fields(fields) is expected


POD = {
    "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"nodeName": "n1", "replicas": 3, "unschedulable": True, "ratio": 2.0},
    "status": {"phase": "Running", "podIP": None},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metadata.name=web-0", True),
        ("metadata.name=web-0,metadata.namespace=default", True),
        ("metadata.namespace!=default", False),
        ("status.phase!=Running", False),
        ("spec.nodeName==n1", True),
        ("spec.nodeName=", False),
        ("spec.missing=", True),
        ("spec.missing!=", False),
        ("status.podIP=", True),
        ("metadata.labels.app=web", True),
        ("spec.replicas=3", True),
        ("spec.unschedulable=true", True),
        ("spec.ratio=2", True),
        ("metadata.name.deeper=", True),
        ("metadata.labels=x", False),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_field_selector_matches_objects(text: str, expected: bool) -> None:
    assert FieldSelector.parse(text).matches(POD) is expected


def test_field_selector_everything_nothing_and_exact_match() -> None:
    assert FieldSelector.parse("") is FieldSelector.everything()
    assert FieldSelector.everything().is_empty()
    assert FieldSelector.everything().matches({})
    assert not FieldSelector.nothing().matches(POD)
    assert not FieldSelector.nothing().matches_fields({})
    assert not FieldSelector.nothing().is_empty()
    selector = FieldSelector.parse("metadata.name=a,spec.nodeName!=b")
    assert selector.requires_exact_match("metadata.name") == "a"
    assert selector.requires_exact_match("spec.nodeName") is None
    assert selector.requirements[0] == FieldRequirement("metadata.name", Operator.EQUALS, "a")
    assert FieldSelector.from_fields({"b": "1", "a": "2"}) == FieldSelector.parse("a=2,b=1")
    assert repr(selector) == "FieldSelector.parse('metadata.name=a,spec.nodeName!=b')"
    assert repr(FieldSelector.nothing()) == "FieldSelector.nothing()"
    assert FieldRequirement("a", Operator.DOUBLE_EQUALS, "x").operator is Operator.EQUALS
    with pytest.raises(errors.SelectorError):
        FieldRequirement("a", Operator.IN, "x")
    with pytest.raises(errors.SelectorError):
        FieldSelector.parse(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("", ""), ("a", "a"), ("=", r"\="), (",", r"\,"), ("\\", r"\\"), (r"\=\,\\", r"\\\=\\\,\\\\")],
    ids=repr,
)
def test_escape_field_value(raw: str, escaped: str) -> None:
    assert selectors.escape_field_value(raw) == escaped


@given(st.text(max_size=20), st.text(max_size=20))
def test_field_values_round_trip_through_escaping(value: str, other: str) -> None:
    text = f"a={selectors.escape_field_value(value)},b!={selectors.escape_field_value(other)}"
    selector = FieldSelector.parse(text)
    assert selector.matches_fields({"a": value, "b": other + "x"})
    assert not selector.matches_fields({"a": value, "b": other})
    assert FieldSelector.parse(str(selector)) == selector
