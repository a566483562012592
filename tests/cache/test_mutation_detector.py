"""Tests for kubemirror.cache.mutation_detector: first_difference (properties and a table),
the detector's reporting rules, the options from the environment, and
``MutationCheckingIndexer`` (the plain ``Indexer`` contract runs over it in test_store.py)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import cache, errors, keys
from kubemirror.cache import mutation_detector as detection
from tests.objects import obj

pytestmark = pytest.mark.mutates_stored_objects

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(value=JSON)
def test_a_copy_has_no_difference(value: Any) -> None:
    assert detection.first_difference(value, copy.deepcopy(value)) is None


@given(value=st.dictionaries(st.sampled_from(["a", "b", "c"]), JSON, min_size=1), data=st.data())
def test_the_changed_top_level_key_is_named(value: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    changed = {**value, key: ["<changed>", value[key]]}
    found = detection.first_difference(value, changed)
    assert found is not None
    assert found == key or found.startswith(key + "[") or found.startswith(key + ".")


@pytest.mark.parametrize(
    ("before", "after", "path"),
    [
        ({"metadata": {"labels": {"a": "1"}}}, {"metadata": {"labels": {"a": "2"}}},
         "metadata.labels.a"),
        ({"metadata": {"labels": {}}}, {"metadata": {"labels": {"tier": "x"}}},
         "metadata.labels.tier"),
        ({"metadata": {"labels": {"k8s.io/app": "1"}}}, {"metadata": {"labels": {}}},
         "metadata.labels['k8s.io/app']"),
        ({"spec": {"containers": [{"image": "a"}]}}, {"spec": {"containers": [{"image": "b"}]}},
         "spec.containers[0].image"),
        ({"spec": {"ports": [1]}}, {"spec": {"ports": [1, 2]}}, "spec.ports[1]"),
        ({"a": 1, "b": 1}, {"a": 2, "b": 2}, "a"),
        (1, 2, ""),
    ],
    ids=["changed-value", "added-key", "removed-dotted-key", "list-item", "appended",
         "first-in-key-order", "scalar"],
)
def test_first_difference(before: Any, after: Any, path: str) -> None:
    assert detection.first_difference(before, after) == path


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("0", None), ("false", None), ("1", detection.MutationDetectorOptions()),
     ("true", detection.MutationDetectorOptions()),
     ("strict", detection.MutationDetectorOptions(strict=True))],
    ids=["unset", "zero", "false", "one", "true", "strict"],
)
def test_options_from_the_environment(value: str,
                                      expected: detection.MutationDetectorOptions | None) -> None:
    assert detection.MutationDetectorOptions.from_environment(
        {detection.ENV_VAR: value}) == expected


def test_an_unknown_environment_value_is_named() -> None:
    with pytest.raises(errors.ConfigError, match=detection.ENV_VAR):
        detection.MutationDetectorOptions.from_environment({detection.ENV_VAR: "maybe"})


@pytest.mark.parametrize(
    ("option", "enabled"), [(True, True), (False, False)], ids=["on", "off"])
def test_an_explicit_option_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, option: bool, enabled: bool
) -> None:
    monkeypatch.setenv(detection.ENV_VAR, "0" if enabled else "1")
    assert (detection.resolve_options(option) is not None) is enabled


def test_verify_all_reports_each_mutation_once(caplog: pytest.LogCaptureFixture) -> None:
    found: list[errors.MutationError] = []
    detector = detection.MutationDetector("pods", on_mutation=found.append)
    pod = obj("p", labels={"app": "web"})
    detector.record("ns/p", pod)
    assert detector.verify_all() == []
    pod["metadata"]["labels"]["app"] = "db"
    with caplog.at_level(logging.ERROR):
        first = detector.verify_all()
    assert [(e.key, e.path) for e in first] == [("ns/p", "metadata.labels.app")]
    assert found == first
    assert "ns/p" in caplog.text
    assert detector.verify_all() == []  # reported once; the fingerprint follows the change
    assert detector.mutations == 1


def test_a_write_reports_the_object_it_replaces_without_raising() -> None:
    found: list[errors.MutationError] = []
    indexer = cache.MutationCheckingIndexer(
        detector=detection.MutationDetector(on_mutation=found.append))
    pod = obj("p", labels={"app": "web"})
    indexer.add(pod)
    pod["metadata"]["labels"]["app"] = "db"  # a reader changes the shared object
    indexer.update(obj("p", rv="2"))
    indexer.delete(obj("p"))
    assert [(e.key, e.path, e.where) for e in found] == [
        ("ns/p", "metadata.labels.app", "a write")]


@pytest.mark.parametrize("read", ["get_by_key", "get", "list", "by_index"])
def test_a_strict_read_raises_naming_the_key_and_field(read: str) -> None:
    indexer = cache.MutationCheckingIndexer(
        indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}, strict=True)
    pod = obj("p", labels={"app": "web"})
    indexer.add(pod)
    pod["metadata"]["labels"]["tier"] = "x"
    reads: dict[str, Callable[[], Any]] = {
        "get_by_key": lambda: indexer.get_by_key("ns/p"),
        "get": lambda: indexer.get(pod),
        "list": lambda: indexer.list(),
        "by_index": lambda: indexer.by_index(cache.NAMESPACE_INDEX, "ns"),
    }
    with pytest.raises(errors.MutationError) as info:
        reads[read]()
    assert info.value.key == "ns/p"
    assert info.value.path == "metadata.labels.tier"
    assert "metadata.labels.tier" in str(info.value)


def test_reads_with_copy_and_unchanged_objects_pass() -> None:
    indexer = cache.MutationCheckingIndexer(strict=True)
    pod = obj("p", labels={"app": "web"})
    indexer.replace([pod, obj("q")])
    assert indexer.get_by_key("ns/p") is pod
    mine = indexer.get_by_key("ns/p", copy=True)
    assert mine is not None
    mine["metadata"]["labels"]["app"] = "db"  # a private copy: allowed
    assert len(indexer.list()) == 2
    assert indexer.detector.mutations == 0


def test_checking_callback_raises_after_a_mutating_call() -> None:
    def mutate(o: dict[str, Any]) -> None:
        o["metadata"]["labels"]["seen"] = "yes"

    def read(o: dict[str, Any]) -> str:
        return str(o["metadata"]["name"])

    pod = obj("p", labels={})
    assert detection.checking_callback(read, keys.meta_namespace_key, "h")(pod) == "p"
    with pytest.raises(errors.MutationError) as info:
        detection.checking_callback(mutate, keys.meta_namespace_key, "handler mutate")(pod)
    assert (info.value.key, info.value.path) == ("ns/p", "metadata.labels.seen")
    assert info.value.where == "handler mutate"


def test_objects_that_are_not_json_are_compared_by_copy() -> None:
    detector = detection.MutationDetector()
    when = {1, 2}
    value = {"metadata": {"name": "x"}, "when": when}
    detector.record("x", value)
    assert detector.verify_all() == []
    when.add(3)
    assert [e.path for e in detector.verify_all()] == ["when"]
