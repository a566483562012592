"""Tests for kubemirror.multicluster.key_order: KeyOrder stays equal to a sorted model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubemirror.multicluster.key_order import KeyOrder
from kubemirror.multicluster.watch_cache import StoredObject

KEYS = st.sampled_from(["a/x", "a/y", "a0/x", "b/x", "b/y", "x", "a"])


def entry(key: str, index: int) -> StoredObject:
    namespace = key.split("/")[0] if "/" in key else ""
    return StoredObject({"metadata": {}}, cluster="c", key=key, namespace=namespace,
                        index=index, original_rv=str(index))


@given(
    initial=st.lists(KEYS, unique=True),
    writes=st.lists(st.tuples(st.booleans(), KEYS)),
    namespace=st.sampled_from(["", "a", "b", "a0", "z"]),
)
def test_key_order_follows_every_write_in_key_order(
    initial: list[str], writes: list[tuple[bool, str]], namespace: str
) -> None:
    model = {key: entry(key, 0) for key in initial}
    order = KeyOrder(model)
    for index, (put, key) in enumerate(writes, 1):
        if put:
            model[key] = entry(key, index)
            order.put(key, model[key])
        else:
            model.pop(key, None)
            order.remove(key)
    out: list[StoredObject] = []
    order.copy_into(out, namespace)
    expected = [model[k] for k in sorted(model) if not namespace or k.startswith(namespace + "/")]
    assert out == expected
    assert len(order) == len(model)
