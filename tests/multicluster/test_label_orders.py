"""Tests for kubemirror.multicluster.label_orders: label orders follow every write."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubemirror.multicluster.key_order import KeyOrder
from kubemirror.multicluster.label_orders import LabelOrders, labels_of
from kubemirror.multicluster.watch_cache import StoredObject

KEYS = st.sampled_from(["a/x", "a/y", "b/x", "b/y", "c/z"])
APPS = st.sampled_from(["api", "web", None])


def entry(key: str, app: str | None, index: int) -> StoredObject:
    labels = {} if app is None else {"app": app}
    return StoredObject({"metadata": {"labels": labels}}, cluster="c", key=key,
                        namespace=key.split("/")[0], index=index, original_rv=str(index))


@given(
    initial=st.dictionaries(KEYS, APPS),
    writes=st.lists(st.tuples(KEYS, APPS, st.booleans())),
    asked=st.lists(st.sampled_from(["api", "web", "db"]), min_size=1),
)
def test_each_label_order_holds_exactly_the_entries_carrying_its_label_in_key_order(
    initial: dict[str, str | None],
    writes: list[tuple[str, str | None, bool]],
    asked: list[str],
) -> None:
    model = {key: entry(key, app, 0) for key, app in initial.items()}
    everything = KeyOrder(model)
    orders = LabelOrders(capacity=3)  # every order asked for is kept in step
    for index, (key, app, delete) in enumerate(writes, 1):
        if index % 3 == 0:  # orders asked for between writes
            orders.order(("app", asked[index % len(asked)]), everything)
        if delete:
            model.pop(key, None)
            everything.remove(key)
            orders.write(key, None)
        else:
            model[key] = entry(key, app, index)
            everything.put(key, model[key])
            orders.write(key, model[key])
    for value in asked:
        order = orders.order(("app", value), everything)
        expected = sorted(k for k, e in model.items() if labels_of(e).get("app") == value)
        assert list(order.keys) == expected
        assert list(order.entries) == [model[k] for k in expected]


def test_labels_of_an_entry_without_labels_is_empty() -> None:
    bare = StoredObject({"metadata": {}}, cluster="c", key="a/x", namespace="a",
                        index=1, original_rv="1")
    assert labels_of(bare) == {}


def test_the_least_recently_used_order_is_dropped_beyond_the_capacity() -> None:
    everything = KeyOrder({"a/x": entry("a/x", "api", 1), "a/y": entry("a/y", "web", 2)})
    orders = LabelOrders(capacity=2)
    api = orders.order(("app", "api"), everything)
    orders.order(("app", "web"), everything)
    assert orders.order(("app", "api"), everything) is api  # kept, now the most recent
    orders.order(("app", "db"), everything)  # drops app=web
    assert len(orders) == 2
    assert orders.order(("app", "api"), everything) is api
