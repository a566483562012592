"""The ``Store`` contract, run over every implementation (client-go's ``doTestStore`` idea),
plus ``deep_copy``."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, cast

import pytest

from kubemirror import cache, errors, keys
from tests.objects import FakeClock, obj

StoreFactory = Callable[[], cache.Store]


def _indexer() -> cache.Store:
    return cache.Indexer(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})


def _undelta() -> cache.Store:
    return cache.UndeltaStore(lambda state: None)


def _compact() -> cache.Store:
    return cache.CompactIndexer(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})


def _mutation_checking() -> cache.Store:
    return cache.MutationCheckingIndexer(
        indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}, strict=True)


def _ttl() -> cache.Store:
    return cache.TTLStore(ttl=60.0, clock=FakeClock())


FACTORIES: dict[str, StoreFactory] = {
    "Indexer": _indexer,
    "new_store": cache.new_store,
    "UndeltaStore": _undelta,
    "TTLStore": _ttl,
    "FIFO": cache.FIFO,
    "CompactIndexer": _compact,
    "MutationCheckingIndexer": _mutation_checking,
}


def same(store: cache.Store, got: Any, want: Any) -> bool:
    """``got is want``; for stores that keep objects encoded (and decode on read), equality."""
    if isinstance(store, cache.CompactIndexer):
        return got is not None and got == want and got is not want
    return got is want


@pytest.fixture(params=sorted(FACTORIES), ids=sorted(FACTORIES))
def store(request: pytest.FixtureRequest) -> cache.Store:
    return FACTORIES[request.param]()


def test_implements_the_protocol(store: cache.Store) -> None:
    assert isinstance(store, cache.Store)
    assert isinstance(store, cache.KeyListerGetter)


def test_add_then_get(store: cache.Store) -> None:
    a = obj("a")
    store.add(a)
    assert same(store, store.get(a), a)
    assert same(store, store.get_by_key("ns/a"), a)
    assert same(store, store.get({"metadata": {"name": "a", "namespace": "ns"}}), a)
    assert store.get_by_key("ns/missing") is None
    assert store.get(obj("b")) is None


def test_update_overwrites(store: cache.Store) -> None:
    store.add(obj("a", rv="1"))
    newer = obj("a", rv="2")
    store.update(newer)
    assert same(store, store.get_by_key("ns/a"), newer)
    assert store.list() == [newer]
    assert store.list_keys() == ["ns/a"]


def test_add_existing_key_overwrites(store: cache.Store) -> None:
    store.add(obj("a", rv="1"))
    newer = obj("a", rv="2")
    store.add(newer)
    assert store.list() == [newer]


def test_delete(store: cache.Store) -> None:
    a, b = obj("a"), obj("b")
    store.add(a)
    store.add(b)
    store.delete(a)
    assert store.get(a) is None
    assert store.list() == [b]
    store.delete(a)  # absent: ignored
    store.delete(keys.ExplicitKey("ns/b"))
    assert store.list() == []


def test_delete_by_tombstone(store: cache.Store) -> None:
    store.add(obj("a"))
    store.delete(keys.DeletedFinalStateUnknown("ns/a", None))
    assert store.list_keys() == []


def test_list_and_list_keys(store: cache.Store) -> None:
    objs = [obj("a"), obj("b", "other"), obj("node-1", None)]
    for o in objs:
        store.add(o)
    assert sorted(store.list_keys()) == ["node-1", "ns/a", "other/b"]
    if isinstance(store, cache.CompactIndexer):
        assert sorted(map(repr, store.list())) == sorted(map(repr, objs))
    else:
        assert sorted(id(o) for o in store.list()) == sorted(id(o) for o in objs)


def test_list_returns_a_new_list(store: cache.Store) -> None:
    store.add(obj("a"))
    first = store.list()
    first.clear()
    assert len(store.list()) == 1
    keys_ = store.list_keys()
    keys_.clear()
    assert store.list_keys() == ["ns/a"]


def test_replace(store: cache.Store) -> None:
    store.add(obj("old"))
    store.add(obj("kept", rv="1"))
    kept, new = obj("kept", rv="2"), obj("new")
    store.replace([kept, new], "42")
    assert sorted(store.list_keys()) == ["ns/kept", "ns/new"]
    assert same(store, store.get_by_key("ns/kept"), kept)
    assert store.get_by_key("ns/old") is None
    store.replace([])
    assert store.list() == []


def test_replace_accepts_any_iterable(store: cache.Store) -> None:
    store.replace(obj(n) for n in "abc")
    assert sorted(store.list_keys()) == ["ns/a", "ns/b", "ns/c"]


def test_resync_keeps_content(store: cache.Store) -> None:
    a = obj("a")
    store.add(a)
    store.resync()
    assert store.list() == [a]


@pytest.mark.parametrize(
    "bad",
    [{}, {"metadata": {}}, {"metadata": {"name": ""}}, None],
    ids=["no-metadata", "no-name", "empty-name", "none"],
)
def test_objects_without_key_are_rejected_naming_them(store: cache.Store, bad: Any) -> None:
    for write in (store.add, store.update, store.delete):
        with pytest.raises(errors.KeyFuncError) as info:
            write(bad)
        assert info.value.obj is bad
    with pytest.raises(errors.KeyFuncError):
        store.replace([obj("fine"), bad])
    assert store.list() == []


def test_store_never_mutates_what_it_handed_out(store: cache.Store) -> None:
    """Writers replace objects: a reader's object stays exactly as it was read."""
    original = obj("a", labels={"x": "1"}, spec={"containers": [{"name": "c"}]})
    pristine = copy.deepcopy(original)
    store.add(original)
    held = store.get_by_key("ns/a")
    held_list = store.list()
    store.update(obj("a", labels={"x": "2"}, spec={"containers": []}))
    store.add(obj("b"))
    store.replace([obj("a", labels={"x": "3"})])
    store.delete(obj("a"))
    store.replace([])
    assert same(store, held, original)
    assert held == pristine
    assert held_list == [pristine]
    assert original == pristine  # nor the caller's input


# -- the KeyedIndexer contract: what an informer mirrors into --------------------------

KEYED: dict[str, Callable[[], cache.KeyedIndexer]] = {
    "Indexer": lambda: cache.Indexer(
        indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}),
    "CompactIndexer": lambda: cache.CompactIndexer(
        indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}),
    "MutationCheckingIndexer": lambda: cache.MutationCheckingIndexer(
        indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}),
    "MutationCheckingIndexer-strict": lambda: cache.MutationCheckingIndexer(
        indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}, strict=True),
}


@pytest.fixture(params=sorted(KEYED), ids=sorted(KEYED))
def keyed(request: pytest.FixtureRequest) -> cache.KeyedIndexer:
    return KEYED[request.param]()


def test_keyed_writes_read_back_and_keep_indices_exact(keyed: cache.KeyedIndexer) -> None:
    assert isinstance(keyed, cache.KeyedIndexer)
    a, b = obj("a", "x"), obj("b", "y")
    key_a, key_b = keyed.key_of(a), keyed.key_of(b)
    assert (key_a, key_b) == ("x/a", "y/b")
    keyed.update_by_key(key_a, a)
    assert keyed.swap_by_key(key_b, b) is None, "a new key replaces nothing"
    assert keyed.list_keys() == [key_a, key_b]
    assert key_a in keyed
    assert len(keyed) == 2
    moved = obj("a", "x", rv="2", labels={"moved": "yes"})
    replaced = keyed.swap_by_key(key_a, moved)
    assert replaced is not None
    assert replaced["metadata"] == a["metadata"]
    assert keyed.get_by_key(key_a) == moved
    index = cast(cache.Indexer, keyed)
    assert index.index_keys(cache.NAMESPACE_INDEX, "x") == [key_a]
    keyed.delete_by_key(key_b)
    keyed.delete_by_key("absent/key")
    assert keyed.list_keys() == [key_a]
    assert index.index_keys(cache.NAMESPACE_INDEX, "y") == []


def test_views_are_what_handlers_receive_without_decoding(keyed: cache.KeyedIndexer) -> None:
    pod = obj("a", spec={"nodeName": "n1"})
    keyed.update_by_key(keyed.key_of(pod), pod)
    view = keyed.get_view_by_key("ns/a")
    assert keyed.list_views() == [view]
    assert keyed.get_view_by_key("ns/absent") is None
    if isinstance(keyed, cache.CompactIndexer):
        assert isinstance(view, cache.RawObject), "the partial view, spec left encoded"
        assert "spec" not in view
        assert view.decode() == pod
    else:
        assert view is pod, "a decoded store's view is the stored object itself"


def test_custom_key_function_errors_become_key_func_errors() -> None:
    def key_func(o: Any) -> str:
        return str(o["id"])

    store = cache.Indexer(key_func)
    store.add({"id": 1})
    assert store.get_by_key("1") == {"id": 1}
    with pytest.raises(errors.KeyFuncError) as info:
        store.add({"no": "id"})
    assert isinstance(info.value.__cause__, KeyError)


# -- deep_copy -----------------------------------------------------------------


def test_deep_copy_of_plain_json_is_equal_and_unshared() -> None:
    src: dict[str, Any] = {"a": [1, 2.5, {"b": None, "c": True}], "d": "é", "e": {"f": []}}
    out = cache.deep_copy(src)
    assert out == src
    assert out is not src
    assert out["a"] is not src["a"]
    assert out["a"][2] is not src["a"][2]


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        keys.ExplicitKey("ns/a"),
        keys.DeletedFinalStateUnknown("ns/a", {"metadata": {"name": "a"}}),
        {"big": 2**70},
        {1: "non-string key"},
        [_Point(1)],
    ],
    ids=["str-subclass", "tombstone", "huge-int", "int-key", "dataclass"],
)
def test_deep_copy_falls_back_for_non_json(value: Any) -> None:
    out = cache.deep_copy(value)
    assert out == value
    assert type(out) is type(value)


def test_indexer_copy_flag_returns_private_copies() -> None:
    ix = cache.Indexer(indexers={cache.NAMESPACE_INDEX: keys.meta_namespace_index_func})
    a = obj("a", labels={"x": "1"})
    ix.add(a)
    for got in (
        ix.get(a, copy=True),
        ix.get_by_key("ns/a", copy=True),
        ix.list(copy=True)[0],
        ix.by_index(cache.NAMESPACE_INDEX, "ns", copy=True)[0],
        ix.index(cache.NAMESPACE_INDEX, a, copy=True)[0],
    ):
        assert got == a
        assert got is not a
        got["metadata"]["labels"]["x"] = "mutated"
    assert a["metadata"]["labels"] == {"x": "1"}
    assert ix.get_by_key("ns/missing", copy=True) is None
