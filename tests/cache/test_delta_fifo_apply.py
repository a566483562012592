"""Tests for DeltaFIFO's apply-at-once mode (``DeltaFIFO(apply=...)``, ``apply_next``).

The mode is a shortcut of the plain queue, not a second semantics: the property test
drives the same writes into a queue in apply mode and into a plain queue popped the
way the mode promises (one key after each watch write; a first list drained whole),
and requires the same deltas applied in the same order, deletes included.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import cache, errors, keys
from kubemirror.cache import DeltaType as T
from tests.objects import obj

Applied = tuple[str, T, Any, bool]


class Consumer:
    """Applies deltas to an Indexer by key and records them (the informer's role)."""

    def __init__(self) -> None:
        self.store = cache.new_store()
        self.applied: list[Applied] = []

    def apply(self, key: str, type_: T, item: Any, at_once: bool) -> None:
        self.applied.append((key, type_, item, at_once))
        if type_ is T.DELETED:
            self.store.delete_by_key(key)
        else:
            self.store.update_by_key(key, item)


def applying_fifo() -> tuple[cache.DeltaFIFO, Consumer]:
    consumer = Consumer()
    fifo = cache.DeltaFIFO(known_objects=consumer.store, emit_delta_type_replaced=True,
                           apply=consumer.apply)
    return fifo, consumer


def test_an_idle_write_is_applied_at_once_without_queueing() -> None:
    fifo, consumer = applying_fifo()
    fifo.add(obj("a"))
    fifo.update(obj("a", rv="2"))
    assert [(k, t, at_once) for k, t, _, at_once in consumer.applied] == [
        ("ns/a", T.ADDED, True), ("ns/a", T.UPDATED, True)]
    assert len(fifo) == 0
    assert fifo.is_idle()
    assert fifo.has_synced(), "a write before any replace populates the queue"


def test_a_delete_of_an_unknown_key_is_not_applied() -> None:
    fifo, consumer = applying_fifo()
    fifo.delete(obj("ghost"))
    assert consumer.applied == []
    fifo.add(obj("a"))
    fifo.delete(obj("a"))
    assert [(k, t) for k, t, _, _ in consumer.applied] == [("ns/a", T.ADDED),
                                                         ("ns/a", T.DELETED)]
    assert len(consumer.store) == 0


def test_a_first_list_into_an_empty_store_is_applied_at_once_in_list_order() -> None:
    fifo, consumer = applying_fifo()
    assert not fifo.has_synced()
    fifo.replace([obj("b"), obj("a"), obj("c")])
    assert [(k, t, at_once) for k, t, _, at_once in consumer.applied] == [
        ("ns/b", T.REPLACED, False), ("ns/a", T.REPLACED, False), ("ns/c", T.REPLACED, False)]
    assert fifo.has_synced()
    assert len(fifo) == 0


def test_a_relist_over_known_objects_queues_for_apply_next() -> None:
    fifo, consumer = applying_fifo()
    fifo.replace([obj("a"), obj("b")])
    consumer.applied.clear()
    fifo.replace([obj("a", rv="2")])
    assert consumer.applied == [], "a relist is queued, drained by the consumer"
    assert fifo.list_keys() == ["ns/a", "ns/b"]
    while fifo.apply_next():
        pass
    assert [(k, t) for k, t, _, _ in consumer.applied] == [("ns/a", T.REPLACED),
                                                         ("ns/b", T.DELETED)]
    tombstone = consumer.applied[1][2]
    assert isinstance(tombstone, keys.DeletedFinalStateUnknown)
    assert tombstone.obj == obj("b")
    assert consumer.store.list_keys() == ["ns/a"]


def test_a_write_behind_a_queue_is_queued_then_the_oldest_key_is_applied() -> None:
    fifo, consumer = applying_fifo()
    fifo.replace([obj("a"), obj("b")])
    fifo.replace([obj("a", rv="2"), obj("b", rv="2")])  # queued: a, b
    consumer.applied.clear()
    fifo.update(obj("c", rv="3"))
    assert [(k, t, at_once) for k, t, _, at_once in consumer.applied] == [
        ("ns/a", T.REPLACED, False)], "the oldest key, not the new write"
    assert fifo.list_keys() == ["ns/b", "ns/c"]


def test_apply_next_requeues_on_requeue_and_needs_apply() -> None:
    calls: list[str] = []

    def flaky(key: str, type_: T, item: Any, at_once: bool) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise errors.Requeue()

    store = cache.new_store()
    store.add(obj("a"))
    fifo = cache.DeltaFIFO(known_objects=store, apply=flaky)
    fifo.replace([obj("a", rv="2")])
    assert fifo.apply_next() is True
    assert fifo.list_keys() == ["ns/a"], "requeued"
    assert fifo.apply_next() is True
    assert fifo.apply_next() is False
    assert calls == ["ns/a", "ns/a"]
    with pytest.raises(TypeError, match="apply"):
        cache.DeltaFIFO().apply_next()


# -- the mode is the plain queue popped as it promises ------------------------------

NAMES = ("a", "b", "c", "d")
ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(("add", "update", "delete")), st.sampled_from(NAMES)),
        st.tuples(st.just("replace"), st.sets(st.sampled_from(NAMES))),
        st.tuples(st.just("resync"), st.none()),
        st.tuples(st.just("drain"), st.integers(1, 3)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_apply_mode_applies_what_the_plain_queue_would_pop(script: list[tuple[str, Any]]
                                                            ) -> None:
    fifo, fast = applying_fifo()
    plain = Consumer()
    queue = cache.DeltaFIFO(known_objects=plain.store, emit_delta_type_replaced=True)

    def pop_one() -> bool:
        if not len(queue):
            return False

        def process(deltas: cache.Deltas) -> None:
            key = queue.key_of(deltas)
            for delta in deltas:
                plain.apply(key, delta.type, delta.object, False)

        queue.pop(process, timeout=0)
        return True

    for rv, (op, arg) in enumerate(script):
        if op in ("add", "update", "delete"):
            item = obj(arg, rv=str(rv))
            idle = queue.is_idle()
            before = len(plain.applied)
            getattr(fifo, op)(item)
            getattr(queue, op)(item)
            pop_one()
            if idle and len(plain.applied) > before:  # applied at once in apply mode
                plain.applied[-1] = (*plain.applied[-1][:3], True)
        elif op == "replace":
            first = queue.is_idle() and not plain.store.list_keys()
            listed = [obj(name, rv=str(rv)) for name in sorted(arg)]
            fifo.replace(listed)
            queue.replace(listed)
            while first and pop_one():
                pass
        elif op == "resync":
            fifo.resync()
            queue.resync()
        else:
            for _ in range(arg):
                fifo.apply_next()
                pop_one()
        assert fast.applied == plain.applied
    while fifo.apply_next():
        pass
    while pop_one():
        pass
    assert fast.applied == plain.applied
    assert fast.store.list() == plain.store.list()
    assert fifo.has_synced() == queue.has_synced()
