"""Tests for kubemirror.cache.thread_safe_store: index bookkeeping, errors, concurrency."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from kubemirror import errors, keys
from kubemirror.cache.thread_safe_store import ThreadSafeStore
from tests.objects import obj


def by_app(o: Any) -> list[str]:
    labels = o["metadata"].get("labels") or {}
    return [labels["app"]] if "app" in labels else []


def by_tags(o: Any) -> list[str]:
    return list(o.get("tags", []))


@pytest.fixture
def tss() -> ThreadSafeStore:
    return ThreadSafeStore(
        {"namespace": keys.meta_namespace_index_func, "app": by_app, "tags": by_tags}
    )


def test_add_get_list(tss: ThreadSafeStore) -> None:
    a = obj("a")
    tss.add("ns/a", a)
    assert tss.get("ns/a") is a
    assert tss.get("nope") is None
    assert tss.list() == [a]
    assert tss.list_keys() == ["ns/a"]
    assert len(tss) == 1
    assert "ns/a" in tss


def test_by_index_and_index_keys(tss: ThreadSafeStore) -> None:
    a = obj("a", labels={"app": "web"})
    b = obj("b", "other", labels={"app": "web"})
    tss.add("ns/a", a)
    tss.add("other/b", b)
    assert tss.by_index("namespace", "ns") == [a]
    assert sorted(tss.index_keys("app", "web")) == ["ns/a", "other/b"]
    assert tss.by_index("app", "nothing") == []
    assert tss.index_keys("app", "nothing") == []
    assert sorted(tss.list_index_func_values("namespace")) == ["ns", "other"]


def test_update_moves_index_entries_and_drops_empty_buckets(tss: ThreadSafeStore) -> None:
    tss.add("k", obj("a", labels={"app": "web"}))
    tss.update("k", obj("a", labels={"app": "db"}))
    assert tss.index_keys("app", "web") == []
    assert tss.index_keys("app", "db") == ["k"]
    assert tss.list_index_func_values("app") == ["db"]
    tss.update("k", obj("a"))  # no app label: in no bucket
    assert tss.list_index_func_values("app") == []


def test_delete_removes_index_entries(tss: ThreadSafeStore) -> None:
    tss.add("k", obj("a", labels={"app": "web"}, tags=["x", "y"]))
    tss.delete("k")
    tss.delete("k")  # absent: ignored
    for name in ("namespace", "app", "tags"):
        assert tss.list_index_func_values(name) == []
    assert tss.list() == []


def test_multi_valued_index_with_duplicates(tss: ThreadSafeStore) -> None:
    tss.add("k", obj("a", tags=["x", "x", "y"]))
    assert sorted(tss.list_index_func_values("tags")) == ["x", "y"]
    tss.update("k", obj("a", tags=["x"]))
    assert tss.list_index_func_values("tags") == ["x"]
    tss.update("k", obj("a", tags=["y", "y"]))
    assert tss.list_index_func_values("tags") == ["y"]


def test_index_unions_and_dedups(tss: ThreadSafeStore) -> None:
    a = obj("a", tags=["x", "y"])
    b = obj("b", tags=["y"])
    c = obj("c", tags=["z"])
    for o in (a, b, c):
        tss.add(o["metadata"]["name"], o)
    found = tss.index("tags", {"tags": ["x", "y"]})
    assert sorted(o["metadata"]["name"] for o in found) == ["a", "b"]
    assert tss.index("tags", {"tags": ["z"]}) == [c]
    assert tss.index("tags", {"tags": []}) == []


def test_replace_rebuilds_indices(tss: ThreadSafeStore) -> None:
    tss.add("old", obj("old", labels={"app": "web"}))
    new = obj("new", labels={"app": "db"})
    tss.replace({"new": new})
    assert tss.list() == [new]
    assert tss.list_index_func_values("app") == ["db"]
    assert tss.by_index("app", "db") == [new]


def test_unknown_index_is_an_error_naming_it(tss: ThreadSafeStore) -> None:
    for call in (
        lambda: tss.by_index("nope", "x"),
        lambda: tss.index_keys("nope", "x"),
        lambda: tss.index("nope", obj("a")),
    ):
        with pytest.raises(errors.UnknownIndexError, match="'nope'") as info:
            call()
        assert info.value.index_name == "nope"
        assert isinstance(info.value, LookupError)
    # client-go's ListIndexFuncValues reads a missing index as an empty one
    assert tss.list_index_func_values("nope") == []


def test_get_indexers_returns_a_copy(tss: ThreadSafeStore) -> None:
    indexers = tss.get_indexers()
    assert sorted(indexers) == ["app", "namespace", "tags"]
    indexers.clear()
    assert len(tss.get_indexers()) == 3


def test_add_indexers_indexes_existing_items() -> None:
    tss = ThreadSafeStore()
    tss.add("k1", obj("a", labels={"app": "web"}))
    tss.add("k2", obj("b", labels={"app": "db"}))
    tss.add_indexers({"app": by_app})
    assert tss.index_keys("app", "web") == ["k1"]
    tss.add_indexers({"namespace": keys.meta_namespace_index_func})
    assert sorted(tss.index_keys("namespace", "ns")) == ["k1", "k2"]
    tss.update("k1", obj("a", labels={"app": "db"}))
    assert sorted(tss.index_keys("app", "db")) == ["k1", "k2"]
    tss.add_indexers({})  # nothing to do


def test_add_indexers_conflict_changes_nothing(tss: ThreadSafeStore) -> None:
    with pytest.raises(errors.ConfigError, match="already exists") as info:
        tss.add_indexers({"fresh": by_app, "app": by_app})
    assert info.value.expression == "app"
    assert "fresh" not in tss.get_indexers()


def _explode_on_b(o: Any) -> list[str]:
    if o["metadata"]["name"] == "b":
        raise ValueError("boom")
    return ["ok"]


def test_failing_index_func_leaves_store_unchanged(tss: ThreadSafeStore) -> None:
    tss.add_indexers({"fragile": _explode_on_b})
    a = obj("a", labels={"app": "web"})
    tss.add("ns/a", a)
    with pytest.raises(errors.IndexFuncError, match="'fragile'") as info:
        tss.add("ns/b", obj("b", labels={"app": "web"}))
    assert info.value.index_name == "fragile"
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(errors.IndexFuncError):
        tss.update("ns/a", obj("b"))
    with pytest.raises(errors.IndexFuncError):
        tss.replace({"ns/b": obj("b")})
    assert tss.list() == [a]
    assert tss.index_keys("app", "web") == ["ns/a"]
    assert tss.index_keys("fragile", "ok") == ["ns/a"]


def test_failing_new_indexer_changes_nothing() -> None:
    tss = ThreadSafeStore({"app": by_app})
    tss.add("a", obj("a"))
    tss.add("b", obj("b"))
    with pytest.raises(errors.IndexFuncError):
        tss.add_indexers({"fragile": _explode_on_b})
    assert list(tss.get_indexers()) == ["app"]
    tss.add("c", obj("c"))  # still writable with the old index set
    assert len(tss) == 3


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("ns", "got str"),
        (None, "got NoneType"),
        (["ok", 3], "got int 3"),
        ([["nested"]], "got list"),
    ],
    ids=["str", "none", "int-value", "nested-list"],
)
def test_index_func_must_return_strings(result: Any, message: str) -> None:
    tss = ThreadSafeStore({"bad": lambda o: result})
    with pytest.raises(errors.IndexFuncError, match=message):
        tss.add("k", obj("a"))
    assert len(tss) == 0


def test_index_func_may_return_any_iterable_of_strings() -> None:
    as_set: Any = lambda o: {"x"}  # noqa: E731  (deliberately not the declared list type)
    as_tuple: Any = lambda o: ("y", "z")  # noqa: E731
    tss = ThreadSafeStore({"set": as_set, "tuple": as_tuple})
    tss.add("k", obj("a"))
    assert tss.index_keys("set", "x") == ["k"]
    assert tss.index_keys("tuple", "z") == ["k"]
    tss.update("k", obj("a"))
    tss.delete("k")
    assert tss.list_index_func_values("tuple") == []


def test_add_indexers_racing_with_writes_stays_exact() -> None:
    """A writer that computed index values before add_indexers landed recomputes them."""
    gate = threading.Event()
    release = threading.Event()

    def slow_app(o: Any) -> list[str]:
        if o["metadata"]["name"] == "slow" and not gate.is_set():
            gate.set()
            assert release.wait(10)
        return by_app(o)

    tss = ThreadSafeStore({"app": slow_app})
    writer = threading.Thread(target=tss.add, args=("slow", obj("slow", labels={"app": "web"})))
    writer.start()
    assert gate.wait(10)  # the writer is inside its index function, lock not held
    tss.add("other", obj("other", "elsewhere"))
    tss.add_indexers({"namespace": keys.meta_namespace_index_func})
    release.set()
    writer.join(10)
    assert sorted(tss.index_keys("namespace", "ns")) == ["slow"]
    assert tss.index_keys("namespace", "elsewhere") == ["other"]
    assert tss.index_keys("app", "web") == ["slow"]


# -- concurrency ---------------------------------------------------------------


def _label_value(o: Any) -> str:
    return str(o["metadata"]["labels"]["v"])


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_writers_and_readers_keep_indices_exact() -> None:
    tss = ThreadSafeStore(
        {"v": lambda o: [_label_value(o)], "namespace": keys.meta_namespace_index_func}
    )
    writes_per_thread = 20_000
    failures: list[str] = []
    done = threading.Event()

    def guarded(body: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                body(*args)
            except Exception as exc:  # a thread's exception would not fail the test
                failures.append(repr(exc))

        return run

    @guarded
    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(writes_per_thread):
            name = f"o{rng.randrange(20)}"
            ns = f"ns{rng.randrange(2)}"
            key = f"{ns}/{name}"
            if rng.random() < 0.25:
                tss.delete(key)
            else:
                tss.update(key, obj(name, ns, labels={"v": str(rng.randrange(5))}))

    @guarded
    def reader() -> None:
        checks = 0
        while not done.is_set() or checks < 50:
            checks += 1
            for value in tss.list_index_func_values("v"):
                # by_index resolves every key of the bucket under the lock: a key
                # without an object would raise KeyError here.
                for o in tss.by_index("v", value):
                    if _label_value(o) != value:
                        failures.append(f"{o['metadata']} in bucket {value}")
            for ns in tss.list_index_func_values("namespace"):
                for o in tss.by_index("namespace", ns):
                    if o["metadata"]["namespace"] != ns:
                        failures.append(f"{o['metadata']} in namespace bucket {ns}")

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(60)
    done.set()
    for t in readers:
        t.join(60)
    assert not any(t.is_alive() for t in writers + readers)
    assert failures == []
    # Finally the indices equal a from-scratch recomputation.
    expected: dict[str, set[str]] = {}
    for key in tss.list_keys():
        o = tss.get(key)
        expected.setdefault(_label_value(o), set()).add(key)
    assert {v: set(tss.index_keys("v", v)) for v in tss.list_index_func_values("v")} == expected
