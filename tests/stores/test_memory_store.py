"""MemoryStore: immutability of what readers hold, copies, and a model-based state machine."""

from __future__ import annotations

import threading
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kubemirror import cache, stores
from kubemirror.stores import MemoryStore
from kubemirror.types import Obj
from tests.objects import obj


def test_exact_get_returns_cached_tuple_until_bucket_changes() -> None:
    store = MemoryStore(1)
    store.add(obj("a", "default"), ["k"])
    first = store.get("k")
    assert isinstance(first, tuple)
    assert store.get("k") is first
    store.add(obj("z", "default"), ["other"])  # another bucket: this one's tuple survives
    assert store.get("k") is first
    store.add(obj("b", "default"), ["k"])
    second = store.get("k")
    assert second is not first
    assert [o["metadata"]["name"] for o in first] == ["a"]
    assert [o["metadata"]["name"] for o in second] == ["a", "b"]


def test_update_replaces_object_never_mutates_the_one_readers_hold() -> None:
    store = MemoryStore(1)
    store.add(obj("a", "default", rv="1", data={"v": "old"}), ["k"])
    held = store.get("k")[0]
    held_list = store.list()
    store.update(obj("a", "default", rv="2", data={"v": "new"}), ["k"])
    store.delete("k")
    assert held["data"] == {"v": "old"}
    assert held_list[0] is held
    assert store.size == 0


def test_reads_share_stored_objects_without_ignore_fields() -> None:
    store = MemoryStore(1)
    original = obj("a", "default")
    store.add(original, ["k"])
    assert store.get("k")[0] is original
    assert store.get_by_name("default", "a") is original
    assert store.list()[0] is original


def test_list_is_a_fresh_list() -> None:
    store = MemoryStore(1)
    store.add(obj("a", "default"), ["k"])
    listed = store.list()
    listed.clear()
    assert store.size == 1
    assert len(store.list()) == 1


def test_copy_true_on_list_and_deep_copy_helper() -> None:
    store = MemoryStore(1)
    store.add(obj("a", "default", spec={"items": [{"x": 1}]}), ["k"])
    (copied,) = store.list(copy=True)
    copied["spec"]["items"][0]["x"] = 2
    assert store.get("k")[0]["spec"]["items"][0]["x"] == 1
    deep = cache.deep_copy(store.get("k")[0])
    assert deep == store.get("k")[0]
    assert deep["spec"]["items"] is not store.get("k")[0]["spec"]["items"]


async def test_aget_and_alist() -> None:
    store = MemoryStore(2)
    store.add(obj("a", "default"), ["x", "y"])
    assert await store.aget("x") == store.get("x")
    assert await store.alist() == store.list()


def test_ref_and_refs() -> None:
    store = MemoryStore(2)
    store.add(obj("a", "default", rv="7"), ["x", "y"])
    assert store.ref("default", "a") == stores.ObjectRef("default", "a", ("x", "y"), "7")
    assert store.ref("default", "missing") is None
    assert store.refs() == [stores.ObjectRef("default", "a", ("x", "y"), "7")]


def test_concurrent_writers_and_readers_stay_consistent() -> None:
    """Threads writing disjoint names while others read prefixes: nothing lost or torn."""
    store = MemoryStore(2)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(300):
                store.add(obj(f"w{w}-{i}", "default", rv=str(i)), [f"b{i % 3}", f"w{w}"])
                if i % 5 == 0:
                    store.delete_by_name("default", f"w{w}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                for bucket in ("b0", "b1", "b2"):
                    found = store.get(bucket)
                    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in found]
                    assert keys == sorted(keys)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.size == 3 * (300 - 60)


NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
NAMESPACES = st.sampled_from(["", "ns1", "ns2"])
KEY = st.sampled_from(["k1", "k2", "k3"])
KEYS = st.tuples(KEY, KEY)


class MemoryStoreModel(RuleBasedStateMachine):
    """Any sequence of writes, compared with a dict of namespace/name -> (keys, object)."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore(2)
        self.model: dict[tuple[str, str], tuple[tuple[str, str], Obj]] = {}
        self.version = 0
        self.mod_count = 0
        self.held: list[tuple[tuple[Obj, ...], list[Any]]] = []

    def _obj(self, ns: str, name: str) -> Obj:
        self.version += 1
        return obj(name, ns, rv=str(self.version))

    def _bump(self) -> None:
        assert self.store.mod_count > self.mod_count
        self.mod_count = self.store.mod_count

    @rule(ns=NAMESPACES, name=NAMES, keys=KEYS, use_add=st.booleans())
    def write(self, ns: str, name: str, keys: tuple[str, str], use_add: bool) -> None:
        o = self._obj(ns, name)
        (self.store.add if use_add else self.store.update)(o, keys)
        self.model[(ns, name)] = (keys, o)
        self._bump()

    @rule(keys=KEYS)
    def delete_bucket(self, keys: tuple[str, str]) -> None:
        doomed = [ref for ref, (k, _) in self.model.items() if k == keys]
        assert self.store.delete(*keys) == len(doomed)
        for ref in doomed:
            del self.model[ref]
        self._bump()

    @rule(ns=NAMESPACES, name=NAMES)
    def delete_by_name(self, ns: str, name: str) -> None:
        assert self.store.delete_by_name(ns, name) == ((ns, name) in self.model)
        self.model.pop((ns, name), None)
        self._bump()

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.model.clear()
        self._bump()

    @rule(keys=KEYS)
    def hold_a_bucket(self, keys: tuple[str, str]) -> None:
        """Remember a bucket tuple and its contents; later writes must not change it."""
        got = self.store.get(*keys)
        assert isinstance(got, tuple)
        self.held.append((got, [dict(o) for o in got]))

    def _expected(self, prefix: tuple[str, ...]) -> list[Obj]:
        matches = [
            (ref, o) for ref, (k, o) in self.model.items() if k[: len(prefix)] == prefix
        ]
        return [o for _, o in sorted(matches, key=lambda pair: pair[0])]

    @invariant()
    def gets_match_model(self) -> None:
        for k1 in ("k1", "k2", "k3"):
            assert list(self.store.get(k1)) == self._expected((k1,))
            for k2 in ("k1", "k2", "k3"):
                assert list(self.store.get(k1, k2)) == self._expected((k1, k2))
        assert self.store.list() == self._expected(())
        assert self.store.size == len(self.model)
        for (ns, name), (keys, o) in self.model.items():
            assert self.store.get_by_name(ns, name) is o
            ref = self.store.ref(ns, name)
            assert ref is not None
            assert ref.keys == keys

    @invariant()
    def held_tuples_never_change(self) -> None:
        for got, snapshot in self.held:
            assert [dict(o) for o in got] == snapshot


TestMemoryStoreModel = MemoryStoreModel.TestCase
TestMemoryStoreModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_deep_copy_copies_every_container_and_keeps_scalars() -> None:
    original = {"a": [1, {"b": (2, 3)}], "m": {"x": None, "f": 1.5, "t": True}}
    copied = cache.deep_copy(original)
    assert copied == {"a": [1, {"b": [2, 3]}], "m": {"x": None, "f": 1.5, "t": True}}
    assert copied["a"] is not original["a"]
    assert copied["m"] is not original["m"]
