"""Tests for kubemirror.paths: compiling, reading and removing IndexBy/IgnoreFields paths."""

from __future__ import annotations

import copy
import pickle
import types
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import errors, paths
from kubemirror.paths import FieldPath, compile_all, fields_remover, remove_fields


def test_all_lists_the_public_names() -> None:
    public = {
        name
        for name, value in vars(paths).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == paths.__name__
        and callable(value)
    }
    assert set(paths.__all__) == public | {"Segment"}
    assert paths.__all__ == [
        "FieldPath",
        "Segment",
        "compile_all",
        "fields_remover",
        "remove_fields",
    ]


# --------------------------------------------------------------------------- compiling

VALID_PATHS = [
    ("metadata.namespace", ("metadata", "namespace")),
    ("metadata.managedFields", ("metadata", "managedFields")),
    (
        "metadata.labels['kubernetes.io/service-name']",
        ("metadata", "labels", "kubernetes.io/service-name"),
    ),
    (
        'metadata.labels["kubernetes.io/service-name"]',
        ("metadata", "labels", "kubernetes.io/service-name"),
    ),
    ("spec.rules[0].host", ("spec", "rules", 0, "host")),
    ("spec.rules[-1]", ("spec", "rules", -1)),
    ("status.conditions[007].type", ("status", "conditions", 7, "type")),
    ("{.metadata.name}", ("metadata", "name")),
    ("{$.metadata.name}", ("metadata", "name")),
    ("{['metadata']}", ("metadata",)),
    (".metadata.name", ("metadata", "name")),
    ("$.metadata.name", ("metadata", "name")),
    ("$['metadata']['name']", ("metadata", "name")),
    ("['metadata'].name", ("metadata", "name")),
    ("[0]", (0,)),
    ("$[2][-3]", (2, -3)),
    (
        r"metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration",
        ("metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"),
    ),
    (r"a\[0\]\\", ("a[0]\\",)),
    (r"a['it\'s']", ("a", "it's")),
    (r'a["x\"y"]', ("a", 'x"y')),
    ("a['']", ("a", "")),
    ("a['x.y[0]']", ("a", "x.y[0]")),
    ("a-b_c/d:e+f~g%h", ("a-b_c/d:e+f~g%h",)),
    ("0.1", ("0", "1")),
]


@pytest.mark.parametrize(("expr", "segments"), VALID_PATHS, ids=repr)
def test_compile_accepts(expr: str, segments: tuple[str | int, ...]) -> None:
    path = FieldPath.compile(expr)
    assert path.segments == segments
    assert path.expression == expr
    assert str(path) == expr
    assert FieldPath.compile(expr) is path  # cached
    assert FieldPath.compile(FieldPath.from_segments(*segments).expression) == path


INVALID_PATHS = [
    # (expression, position, words)
    ("", 0, "must not be empty"),
    ("a.", 1, "trailing dot"),
    ("a.b.", 3, "trailing dot"),
    (".", 0, "trailing dot"),
    ("a..b", 1, "recursive descent"),
    ("..a", 0, "recursive descent"),
    ("$..a", 1, "recursive descent"),
    ("a.*", 2, "wildcards"),
    ("a[*]", 2, "wildcards"),
    ("a[?(@.x)]", 2, "filter"),
    ("a(b)", 1, "filter"),
    ("a[0:1]", 3, "slices"),
    ("a[0,1]", 3, "unions"),
    ("a,b", 1, "unions"),
    ("{a", 0, "unbalanced '{'"),
    ("{.metadata.name", 0, "unbalanced '{'"),
    ("a}", 1, "braces"),
    ("{.a}x", 4, "after the closing '}'"),
    ("{}", 1, "holds no field path"),
    ("a[0", 1, "unbalanced '['"),
    ("a[", 1, "unbalanced '['"),
    ("a['k'][", 6, "unbalanced '['"),
    ("a]", 1, "unbalanced ']'"),
    ("a['x", 2, "unterminated quoted key"),
    ("a['x'", 1, "unbalanced '['"),
    ("a['x'x]", 5, "expected ']'"),
    ("a[x]", 2, "integer index or a quoted key"),
    ("a[]", 2, "empty brackets"),
    ("a[-]", 3, "digits after '-'"),
    ("a[0]b", 4, "expected '.' or '['"),
    ("a.[0]", 2, "expected a field name"),
    ("$", 1, "after '$'"),
    ("$a", 1, "expected '.' or '['"),
    ("a$", 1, "'$' may only start"),
    ("a b", 1, "whitespace"),
    (" a", 0, "whitespace"),
    ("a\\x", 1, "'\\' may only escape"),
    ("a'b'", 1, "quoted keys must be in brackets"),
]


@pytest.mark.parametrize(("expr", "position", "words"), INVALID_PATHS, ids=repr)
def test_compile_rejects_with_position(expr: str, position: int, words: str) -> None:
    with pytest.raises(errors.FieldPathError) as info:
        FieldPath.compile(expr)
    err = info.value
    assert isinstance(err, errors.ConfigError)
    assert err.expression == expr
    assert err.position == position
    assert words in err.message
    assert repr(expr) in str(err)
    assert f"position {position}" in str(err)


def test_compile_rejects_non_strings() -> None:
    with pytest.raises(errors.FieldPathError):
        FieldPath.compile(["metadata"])  # type: ignore[arg-type]
    with pytest.raises(errors.FieldPathError):
        FieldPath("x", ())
    with pytest.raises(errors.FieldPathError):
        FieldPath("x", (True,))


def test_paths_pickle_and_copy() -> None:
    path = FieldPath.compile("metadata.labels['app']")
    for clone in (pickle.loads(pickle.dumps(path)), copy.deepcopy(path), copy.copy(path)):
        assert clone == path
        assert clone.expression == path.expression
        assert clone.get({"metadata": {"labels": {"app": "x"}}}) == "x"


def test_equality_and_hash_use_segments() -> None:
    a, b = FieldPath.compile("{.metadata.name}"), FieldPath.compile("metadata['name']")
    assert a == b
    assert hash(a) == hash(b)
    assert a.expression != b.expression
    assert FieldPath.compile("a[0]") != FieldPath.compile("a['0']")
    assert repr(a) == "FieldPath.compile('{.metadata.name}')"


def test_compile_all_names_the_failing_item() -> None:
    assert compile_all(["metadata.name", "spec.x"], "index_by") == (
        FieldPath.compile("metadata.name"),
        FieldPath.compile("spec.x"),
    )
    with pytest.raises(errors.FieldPathError) as info:
        compile_all(["metadata.name", "spec..x"], "ignore_fields")
    assert info.value.field == "ignore_fields[1]"
    assert info.value.expression == "spec..x"
    assert info.value.position == 4
    assert str(info.value).startswith("ignore_fields[1]: ")
    with pytest.raises(errors.FieldPathError) as info:
        compile_all("metadata.name", "index_by")
    assert info.value.field == "index_by"


@given(
    st.lists(
        st.one_of(st.text(max_size=8), st.integers(min_value=-(10**6), max_value=10**6)),
        min_size=1,
        max_size=5,
    )
)
def test_from_segments_expression_compiles_back(segments: list[str | int]) -> None:
    path = FieldPath.from_segments(*segments)
    assert FieldPath.compile(path.expression).segments == tuple(segments)


# --------------------------------------------------------------------------- get / index_value

OBJ: dict[str, Any] = {
    "metadata": {
        "name": "web-0",
        "labels": {"kubernetes.io/service-name": "web", "app": "web"},
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {"rules": [{"host": "a.example"}, {"host": "b.example"}], "replicas": 3},
    "status": {"podIP": None, "conditions": ("tuple-item",)},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("metadata.name", "web-0"),
        ("metadata.labels['kubernetes.io/service-name']", "web"),
        ("spec.rules[0].host", "a.example"),
        ("spec.rules[1].host", "b.example"),
        ("spec.rules[-1].host", "b.example"),
        ("spec.rules[-2].host", "a.example"),
        ("spec.rules[2].host", None),
        ("spec.rules[-3].host", None),
        ("status.conditions[0]", "tuple-item"),
        ("metadata.name[0]", None),
        ("metadata.name.first", None),
        ("spec.rules.host", None),
        ("metadata[0]", None),
        ("status.podIP", None),
        ("status.podIP.deeper", None),
        ("spec.replicas.x", None),
        ("nothing.here", None),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_get(expr: str, expected: Any) -> None:
    assert FieldPath.compile(expr).get(OBJ) == expected


@pytest.mark.parametrize(
    "obj",
    [None, "text", 3, 2.5, True, [], ["a"], ("a",), {"a": "text"}, {"a": ["x"]}, {"a": {"b": 1}}],
    ids=repr,
)
def test_get_never_raises_on_odd_objects(obj: Any) -> None:
    for expr in ("a.b", "a[0]", "[0]", "a", "a.b.c[1]"):
        FieldPath.compile(expr).get(obj)
    assert FieldPath.compile("a[0]").get({"a": "text"}) is None
    assert FieldPath.compile("[0]").get(["first"]) == "first"
    assert FieldPath.compile("[0]").get("first") is None


def test_get_reads_any_mapping() -> None:
    obj = types.MappingProxyType({"a": types.MappingProxyType({"b": 1})})
    assert FieldPath.compile("a.b").get(obj) == 1
    assert FieldPath.compile("a['b']").get(obj) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (-12, "-12"),
        (123456789012345678901234567890, "123456789012345678901234567890"),
        (3.0, "3"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (0.0, "0"),
        (-0.0, "-0"),
        (None, None),
        ({"b": 1, "a": [1, "x", None]}, '{"a":[1,"x",null],"b":1}'),
        ([], "[]"),
        ({}, "{}"),
        (types.MappingProxyType({"k": ("t",)}), '{"k":["t"]}'),
        (frozenset(), "frozenset()"),  # not JSON: falls back to str()
    ],
    ids=repr,
)
def test_index_value(value: Any, expected: str | None) -> None:
    assert FieldPath.compile("v").index_value({"v": value}) == expected


def test_index_value_of_absent_field_is_none() -> None:
    assert FieldPath.compile("a.b").index_value({}) is None
    assert FieldPath.compile("a.b").index_value({"a": "x"}) is None


# --------------------------------------------------------------------------- remove


@pytest.mark.parametrize(
    "expr",
    [
        "metadata.missing",
        "spec.rules[5].host",
        "spec.rules[-5]",
        "metadata.name.deeper",
        "spec.rules.x",
        "metadata[0]",
        "status.podIP.x",
        "nothing",
    ],
)
def test_remove_absent_field_returns_the_same_object(expr: str) -> None:
    before = copy.deepcopy(OBJ)
    assert FieldPath.compile(expr).remove(OBJ) is OBJ
    assert before == OBJ


def test_remove_copies_only_the_path() -> None:
    before = copy.deepcopy(OBJ)
    result = FieldPath.compile("metadata.managedFields").remove(OBJ)
    assert before == OBJ
    assert result is not OBJ
    assert "managedFields" not in result["metadata"]
    assert "managedFields" in OBJ["metadata"]
    assert result["metadata"] is not OBJ["metadata"]
    assert result["spec"] is OBJ["spec"]
    assert result["status"] is OBJ["status"]
    assert result["metadata"]["labels"] is OBJ["metadata"]["labels"]
    assert list(result["metadata"]) == ["name", "labels"]


def test_remove_list_items_and_null_values() -> None:
    result = FieldPath.compile("spec.rules[0]").remove(OBJ)
    assert result["spec"]["rules"] == [{"host": "b.example"}]
    assert result["spec"]["rules"][0] is OBJ["spec"]["rules"][1]
    result = FieldPath.compile("spec.rules[-1].host").remove(OBJ)
    assert result["spec"]["rules"] == [{"host": "a.example"}, {}]
    assert result["spec"]["rules"][0] is OBJ["spec"]["rules"][0]
    result = FieldPath.compile("status.podIP").remove(OBJ)
    assert "podIP" not in result["status"]
    result = FieldPath.compile("status.conditions[0]").remove(OBJ)
    assert result["status"]["conditions"] == ()
    top_level_list: Any = [1, 2]
    removed: Any = FieldPath.compile("[0]").remove(top_level_list)
    assert removed == [2]


def test_remove_from_a_read_only_mapping() -> None:
    inner = {"b": 1, "c": 2}
    outer: dict[str, Any] = {"a": types.MappingProxyType(inner), "d": [1]}
    obj = types.MappingProxyType(outer)
    result = FieldPath.compile("a.b").remove(obj)
    assert result == {"a": {"c": 2}, "d": [1]}
    assert result["d"] is obj["d"]
    assert inner == {"b": 1, "c": 2}


# --------------------------------------------------------------------------- remove_fields


def _compile(*exprs: str) -> list[FieldPath]:
    return [FieldPath.compile(e) for e in exprs]


def test_remove_fields_edge_cases() -> None:
    assert remove_fields(OBJ, []) is OBJ
    assert fields_remover([])(OBJ) is OBJ
    assert fields_remover(_compile("metadata.name"))(OBJ) == {
        **OBJ,
        "metadata": {k: v for k, v in OBJ["metadata"].items() if k != "name"},
    }
    assert remove_fields(OBJ, _compile("a", "b.c", "spec.rules[9]")) is OBJ
    result = remove_fields(OBJ, _compile("metadata.labels.app", "metadata"))
    assert "metadata" not in result
    result = remove_fields(OBJ, _compile("metadata", "metadata.labels.app"))
    assert "metadata" not in result
    result = remove_fields(OBJ, _compile("spec.rules[0]", "spec.rules[1]"))
    assert result["spec"]["rules"] == []  # indexes refer to the original list
    result = remove_fields(OBJ, _compile("spec.rules[0].host", "spec.rules[-2].port"))
    assert result["spec"]["rules"][0] == {}
    result = remove_fields(OBJ, _compile("spec.rules[1].host", "spec.rules[-1].host"))
    assert result["spec"]["rules"] == [{"host": "a.example"}, {}]
    result = remove_fields(OBJ, _compile("spec.rules[-1]", "spec.rules[1].host"))
    assert result["spec"]["rules"] == [{"host": "a.example"}]
    assert remove_fields(OBJ, _compile("metadata.name")) == FieldPath.compile(
        "metadata.name"
    ).remove(OBJ)


class CountingMapping(Mapping[str, Any]):
    """A Mapping that counts how often it is copied (``dict(m)`` calls ``keys()``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.copies = 0

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self) -> Any:
        self.copies += 1
        return self.data.keys()


def test_remove_fields_copies_each_container_once() -> None:
    metadata = CountingMapping(
        {"name": "x", "managedFields": [1], "annotations": {"a": "1"}, "labels": {"l": "v"}}
    )
    top = CountingMapping({"metadata": metadata, "spec": {"a": 1}, "status": {"b": 2}})
    result = remove_fields(
        top,
        _compile("metadata.managedFields", "metadata.annotations", "status.b", "spec.zzz"),
    )
    assert top.copies == 1
    assert metadata.copies == 1
    assert result == {
        "metadata": {"name": "x", "labels": {"l": "v"}},
        "spec": {"a": 1},
        "status": {},
    }
    assert result["spec"] is top["spec"]
    assert result["metadata"]["labels"] is metadata["labels"]


# --------------------------------------------------------------------------- hypothesis

KEYS = ["a", "b", "metadata", "labels", "x.y", "0", ""]
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5)


def _draw_path(data: st.DataObject, obj: Any) -> FieldPath:
    """A path that mostly follows the object's real structure, sometimes not."""
    segments: list[str | int] = []
    current = obj
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        follow = data.draw(st.integers(min_value=0, max_value=4)) > 0
        segment: str | int
        if follow and isinstance(current, dict) and current:
            segment = data.draw(st.sampled_from(sorted(current)))
        elif follow and isinstance(current, list) and current:
            segment = data.draw(st.integers(min_value=-len(current), max_value=len(current) - 1))
        else:
            segment = data.draw(st.sampled_from(KEYS) | st.integers(min_value=-3, max_value=3))
        segments.append(segment)
        current = FieldPath.from_segments(*segments).get(obj)
    return FieldPath.from_segments(*segments)


def _locate(obj: Any, path: FieldPath) -> tuple[str | int, ...] | None:
    """The concrete location (non-negative indexes) ``path`` names in ``obj``, if any."""
    location: list[str | int] = []
    current = obj
    for segment in path.segments:
        if isinstance(segment, str) and isinstance(current, dict) and segment in current:
            location.append(segment)
            current = current[segment]
        elif isinstance(segment, int) and isinstance(current, list):
            index = segment + len(current) if segment < 0 else segment
            if not 0 <= index < len(current):
                return None
            location.append(index)
            current = current[index]
        else:
            return None
    return tuple(location)


def _reference_without(
    obj: Any, removed: set[tuple[str | int, ...]], prefix: tuple[Any, ...] = ()
) -> Any:
    if isinstance(obj, dict):
        return {
            k: _reference_without(v, removed, (*prefix, k))
            for k, v in obj.items()
            if (*prefix, k) not in removed
        }
    if isinstance(obj, list):
        return [
            _reference_without(v, removed, (*prefix, i))
            for i, v in enumerate(obj)
            if (*prefix, i) not in removed
        ]
    return obj


def _assert_shared(
    original: Any, result: Any, removed: set[tuple[str | int, ...]], prefix: tuple[Any, ...] = ()
) -> None:
    """Subtrees holding no removed location are the very same objects."""
    touched = any(loc[: len(prefix)] == prefix for loc in removed)
    if not touched:
        assert result is original
        return
    assert result is not original
    if isinstance(original, dict):
        for key in result:
            _assert_shared(original[key], result[key], removed, (*prefix, key))
    else:
        kept = [i for i in range(len(original)) if (*prefix, i) not in removed]
        assert len(kept) == len(result)
        for position, index in enumerate(kept):
            _assert_shared(original[index], result[position], removed, (*prefix, index))


@settings(max_examples=300)
@given(json_objects, st.data())
def test_remove_never_mutates_and_shares_the_rest(obj: dict[str, Any], data: st.DataObject) -> None:
    path = _draw_path(data, obj)
    before = copy.deepcopy(obj)
    result = path.remove(obj)
    assert obj == before
    location = _locate(obj, path)
    if location is None:
        assert result is obj
        return
    assert result == _reference_without(obj, {location})
    _assert_shared(obj, result, {location})


@settings(max_examples=300)
@given(json_objects, st.data())
def test_remove_fields_matches_reference(obj: dict[str, Any], data: st.DataObject) -> None:
    field_paths = [_draw_path(data, obj) for _ in range(data.draw(st.integers(0, 4)))]
    before = copy.deepcopy(obj)
    result = remove_fields(obj, field_paths)
    assert obj == before
    again = fields_remover(field_paths)(obj)
    assert again == result
    assert (again is obj) is (result is obj)
    removed = {loc for p in field_paths if (loc := _locate(obj, p)) is not None}
    # A location under another removed location is gone with its ancestor.
    removed = {loc for loc in removed if not any(o != loc and loc[: len(o)] == o for o in removed)}
    if not removed:
        assert result is obj
        return
    assert result == _reference_without(obj, removed)
    _assert_shared(obj, result, removed)


@given(json_objects, st.data())
def test_get_agrees_with_locate(obj: dict[str, Any], data: st.DataObject) -> None:
    path = _draw_path(data, obj)
    location = _locate(obj, path)
    value = path.get(obj)
    if location is None:
        assert value is None
    else:
        expected: Any = obj
        for segment in location:
            expected = expected[segment]
        assert value is expected
