"""Tests for kubemirror.cache.index: the Indexer against a from-scratch reference model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kubemirror import cache, errors, keys
from kubemirror.types import IndexFunc
from tests.objects import obj


def by_app(o: Any) -> list[str]:
    labels = o["metadata"].get("labels") or {}
    return [labels["app"]] if "app" in labels else []


def by_tags(o: Any) -> list[str]:
    return list(o.get("tags", ()))


def by_fragile(o: Any) -> list[str]:
    if o.get("poison"):
        raise RuntimeError("poisoned object")
    return [o["metadata"]["name"][:1]]


ALL_INDEXERS: dict[str, IndexFunc] = {
    "namespace": keys.meta_namespace_index_func,
    "app": by_app,
    "tags": by_tags,
    "fragile": by_fragile,
}

names = st.sampled_from(["a", "b", "c", "d", "e"])
namespaces = st.sampled_from(["x", "y", ""])
apps = st.sampled_from(["web", "db", None])
tag_lists = st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=3)


@st.composite
def objects(draw: st.DrawFn, poison: bool = False) -> dict[str, Any]:
    app = draw(apps)
    return obj(
        draw(names),
        draw(namespaces) or None,
        labels={"app": app} if app else {},
        tags=draw(tag_lists),
        poison=poison,
    )


class IndexerMachine(RuleBasedStateMachine):
    """Any sequence of writes leaves every index equal to a recomputation from scratch."""

    def __init__(self) -> None:
        super().__init__()
        self.indexer = cache.Indexer(indexers={"namespace": keys.meta_namespace_index_func})
        self.model: dict[str, dict[str, Any]] = {}
        self.handed_out: list[tuple[Any, Any]] = []

    @staticmethod
    def fingerprint(o: Any) -> Any:
        """What a read must preserve: the very object written (identity)."""
        return id(o)

    @rule(o=objects())
    def add(self, o: dict[str, Any]) -> None:
        self.indexer.add(o)
        self.model[keys.meta_namespace_key(o)] = o

    @rule(o=objects())
    def update(self, o: dict[str, Any]) -> None:
        self.indexer.update(o)
        self.model[keys.meta_namespace_key(o)] = o

    @rule(o=objects())
    def delete(self, o: dict[str, Any]) -> None:
        self.indexer.delete(o)
        self.model.pop(keys.meta_namespace_key(o), None)

    @rule(objs=st.lists(objects(), max_size=6))
    def replace(self, objs: list[dict[str, Any]]) -> None:
        self.indexer.replace(objs, "7")
        self.model = {keys.meta_namespace_key(o): o for o in objs}

    @rule(o=objects(poison=True))
    def poisoned_write_changes_nothing(self, o: dict[str, Any]) -> None:
        if "fragile" not in self.indexer.get_indexers():
            return
        with pytest.raises(errors.IndexFuncError):
            self.indexer.add(o)

    @rule(name=st.sampled_from(sorted(ALL_INDEXERS)))
    def add_indexer(self, name: str) -> None:
        if name in self.indexer.get_indexers():
            with pytest.raises(errors.ConfigError):
                self.indexer.add_indexers({name: ALL_INDEXERS[name]})
        else:
            self.indexer.add_indexers({name: ALL_INDEXERS[name]})

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def hold_a_read_object(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        got = self.indexer.get_by_key(key)
        self.handed_out.append((got, cache.deep_copy(got)))

    @invariant()
    def content_matches_model(self) -> None:
        assert sorted(self.indexer.list_keys()) == sorted(self.model)
        assert len(self.indexer) == len(self.model)
        for key, o in self.model.items():
            assert self.fingerprint(self.indexer.get_by_key(key)) == self.fingerprint(o)

    @invariant()
    def indices_equal_recomputation(self) -> None:
        for name, func in self.indexer.get_indexers().items():
            expected: dict[str, set[str]] = {}
            for key, o in self.model.items():
                for value in func(o):
                    expected.setdefault(value, set()).add(key)
            actual = {
                value: set(self.indexer.index_keys(name, value))
                for value in self.indexer.list_index_func_values(name)
            }
            assert actual == expected, name
            for value, bucket in expected.items():
                got = self.indexer.by_index(name, value)
                assert sorted(map(self.fingerprint, got)) == sorted(
                    self.fingerprint(self.model[k]) for k in bucket
                )

    @invariant()
    def objects_handed_out_never_change(self) -> None:
        for held, snapshot in self.handed_out:
            assert held == snapshot


IndexerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestIndexerMachine = IndexerMachine.TestCase


def test_new_store_has_no_indices() -> None:
    store = cache.new_store()
    store.add(obj("a"))
    assert store.get_indexers() == {}
    with pytest.raises(errors.UnknownIndexError):
        store.by_index(cache.NAMESPACE_INDEX, "ns")


def test_index_by_object() -> None:
    ix = cache.Indexer(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})
    a, b, c = obj("a"), obj("b"), obj("c", "other")
    for o in (a, b, c):
        ix.add(o)
    same_ns = ix.index(cache.NAMESPACE_INDEX, obj("anything"))
    assert sorted(o["metadata"]["name"] for o in same_ns) == ["a", "b"]


def test_cluster_scoped_objects_index_under_empty_namespace() -> None:
    ix = cache.Indexer(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})
    node = obj("node-1", None)
    ix.add(node)
    assert ix.by_index(cache.NAMESPACE_INDEX, "") == [node]
    assert ix.get_by_key("node-1") is node


def test_repr_mentions_size_and_indices() -> None:
    ix = cache.Indexer(indexers={"app": by_app})
    ix.add(obj("a"))
    assert repr(ix) == "<Indexer 1 objects, indices ['app']>"
