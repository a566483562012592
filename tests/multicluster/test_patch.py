"""Merge patch (RFC 7386) and JSON patch (RFC 6902): results, sharing, errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.multicluster.patch import apply_json_patch, apply_merge_patch

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": "b"}, ["c"], ["c"]),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
    ids=["replace", "add", "delete", "nested", "list-replaced", "non-object", "nested-null"],
)
def test_merge_patch_rfc_examples(target: Any, patch: Any, result: Any) -> None:
    assert apply_merge_patch(target, patch) == result


@given(json_values, json_values)
def test_merge_patch_never_mutates_target(target: Any, patch: Any) -> None:
    import copy

    before = copy.deepcopy(target)
    apply_merge_patch(target, patch)
    assert target == before


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "d"}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "replace", "path": "/c", "value": "e"},
        {"op": "copy", "from": "/c", "path": "/f"},
        {"op": "move", "from": "/f", "path": "/g"},
        {"op": "remove", "path": "/a/b/0"},
        {"op": "test", "path": "/g", "value": "e"},
        {"op": "add", "path": "/a/x~1y", "value": 1},
    ]
    assert apply_json_patch(doc, ops) == {"a": {"b": [2, 3], "x/y": 1}, "c": "e", "g": "e"}
    assert doc == {"a": {"b": [1, 2]}, "c": "d"}


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add"},
        [{"op": "add", "path": "/x"}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "test", "path": "/c", "value": "nope"}],
        [{"op": "frobnicate", "path": "/c"}],
        [{"op": "add", "path": "/a/b/9", "value": 1}],
        [{"op": "add", "path": "no-slash", "value": 1}],
    ],
    ids=["not-a-list", "no-value", "missing", "test-fails", "unknown", "index", "pointer"],
)
def test_json_patch_errors(ops: Any) -> None:
    with pytest.raises(errors.BadRequestError):
        apply_json_patch({"a": {"b": [1]}, "c": "d"}, ops)
