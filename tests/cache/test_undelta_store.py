"""Tests for kubemirror.cache.undelta_store: one ordered full-state push per change."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from kubemirror import cache, errors
from tests.objects import obj


def names(state: list[Any]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in state)


def test_every_change_pushes_the_full_state_once() -> None:
    pushes: list[list[str]] = []
    store = cache.UndeltaStore(lambda state: pushes.append(names(state)))
    store.add(obj("a"))
    store.add(obj("b"))
    store.update(obj("a", rv="2"))
    store.delete(obj("b"))
    store.delete(obj("ghost"))
    store.replace([obj("x"), obj("y")], "3")
    store.resync()
    assert pushes == [["a"], ["a", "b"], ["a", "b"], ["a"], ["a"], ["x", "y"]]


def test_pushed_lists_are_fresh_and_share_the_objects() -> None:
    pushes: list[list[Any]] = []
    store = cache.UndeltaStore(pushes.append)
    a = obj("a")
    store.add(a)
    store.add(obj("b"))
    assert pushes[0] == [a]  # a later change did not grow the earlier list
    assert pushes[0][0] is a


def test_push_func_may_read_but_not_write() -> None:
    seen: list[list[str]] = []
    store: cache.UndeltaStore

    def push(state: list[Any]) -> None:
        seen.append(sorted(store.list_keys()))
        if len(state) == 2:
            store.add(obj("from-push"))

    store = cache.UndeltaStore(push)
    store.add(obj("a"))
    with pytest.raises(errors.StoreError, match="must not write"):
        store.add(obj("b"))
    assert seen == [["ns/a"], ["ns/a", "ns/b"]]
    assert store.get_by_key("ns/from-push") is None
    store.add(obj("c"))  # the store is still usable afterwards
    assert len(store) == 3


def test_a_failing_push_keeps_the_change() -> None:
    def push(state: list[Any]) -> None:
        raise RuntimeError("consumer down")

    store = cache.UndeltaStore(push)
    with pytest.raises(RuntimeError):
        store.add(obj("a"))
    assert store.list_keys() == ["ns/a"]


def test_concurrent_writers_push_in_change_order() -> None:
    """Pushes are serialized: each pushed state contains every earlier one (adds only)."""
    pushes: list[frozenset[str]] = []
    store = cache.UndeltaStore(lambda state: pushes.append(frozenset(names(state))))

    def writer(prefix: str) -> None:
        for i in range(200):
            store.add(obj(f"{prefix}{i}"))

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(pushes) == 800
    for earlier, later in itertools.pairwise(pushes):
        assert earlier < later
    assert len(pushes[-1]) == 800
