"""Tests for kubemirror.keys."""

from __future__ import annotations

from typing import Any

import pytest

from kubemirror import errors, keys


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"namespace": "ns", "name": "a"}}, "ns/a"),
        ({"metadata": {"name": "node-1"}}, "node-1"),
        ({"metadata": {"namespace": "", "name": "pv"}}, "pv"),
        (keys.ExplicitKey("x/y"), "x/y"),
        (keys.DeletedFinalStateUnknown("ns/gone", None), "ns/gone"),
    ],
    ids=["namespaced", "cluster-scoped", "empty-namespace", "explicit", "tombstone"],
)
def test_meta_namespace_key(obj: Any, expected: str) -> None:
    assert keys.meta_namespace_key(obj) == expected


@pytest.mark.parametrize(
    "obj",
    [{}, {"metadata": {}}, {"metadata": {"name": ""}}, {"metadata": {"name": 3}}, None, "plain"],
    ids=["no-metadata", "no-name", "empty-name", "int-name", "none", "plain-str"],
)
def test_meta_namespace_key_errors_carry_the_object(obj: Any) -> None:
    with pytest.raises(errors.KeyFuncError) as info:
        keys.meta_namespace_key(obj)
    assert info.value.obj is obj


@pytest.mark.parametrize(
    ("key", "expected"),
    [("ns/a", ("ns", "a")), ("a", ("", "a")), ("/a", ("", "a")), ("ns/", ("ns", "")),
     ("", ("", ""))],
    ids=["namespaced", "cluster-scoped", "empty-namespace", "empty-name", "empty"],
)
def test_split_meta_namespace_key(key: str, expected: tuple[str, str]) -> None:
    assert keys.split_meta_namespace_key(key) == expected


@pytest.mark.parametrize(
    "key", ["a/b/c", "//", "a/b/"], ids=["two-slashes", "only-slashes", "trailing-slash"]
)
def test_split_meta_namespace_key_rejects(key: str) -> None:
    with pytest.raises(errors.KeyFuncError, match="unexpected key format"):
        keys.split_meta_namespace_key(key)


def test_meta_namespace_index_func() -> None:
    assert keys.meta_namespace_index_func({"metadata": {"namespace": "x", "name": "a"}}) == ["x"]
    assert keys.meta_namespace_index_func({"metadata": {"name": "a"}}) == [""]
    tomb = keys.DeletedFinalStateUnknown("x/a", {"metadata": {"namespace": "x", "name": "a"}})
    assert keys.meta_namespace_index_func(tomb) == ["x"]


@pytest.mark.parametrize(
    ("namespace", "name", "key"),
    [("ns", "a", "ns/a"), ("", "a", "a"), (None, "a", "a")],
    ids=["namespaced", "empty-namespace", "cluster-scoped"],
)
def test_object_key(namespace: str | None, name: str, key: str) -> None:
    assert keys.object_key(namespace, name) == key
    assert keys.split_meta_namespace_key(key) == (namespace or "", name)
