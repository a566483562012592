"""The ``IndexedStore`` contract, run over ``MemoryStore``, ``CachedStore`` and
``MutationCheckingMemoryStore`` (strict).

For ``CachedStore`` the ``fetch`` seam reads a dict the test keeps equal to what it
wrote (standing in for the API server, which tests/test_watcher.py uses for real).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kubemirror import errors, stores
from kubemirror.stores import CachedStore, IndexedStore, MemoryStore
from kubemirror.types import Obj
from tests.objects import FakeClock, obj


class Api:
    """The objects a CachedStore fetches: whatever the test last wrote."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.fetches = 0

    async def fetch(self, namespace: str, name: str) -> Obj | None:
        self.fetches += 1
        return self.objects.get((namespace, name))


class Harness:
    """Writes through the store and mirrors them into ``Api`` for CachedStore."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.api = Api()

    def make(self, num_keys: int, ignore_fields: Sequence[str] = ()) -> IndexedStore:
        if self.kind == "memory":
            return MemoryStore(num_keys, ignore_fields=ignore_fields)
        if self.kind == "mutation-checking":
            return stores.MutationCheckingMemoryStore(num_keys, ignore_fields, strict=True)
        return CachedStore(
            num_keys, self.api.fetch, ttl=60, clock=FakeClock(), ignore_fields=ignore_fields
        )

    def write(self, store: IndexedStore, o: Obj, keys: Sequence[str]) -> None:
        meta = o["metadata"]
        self.api.objects[(meta.get("namespace", ""), meta["name"])] = o
        store.update(o, keys)


@pytest.fixture(params=["memory", "cached", "mutation-checking"])
def harness(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


def names(objs: Sequence[Obj]) -> list[str]:
    return [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in objs]


async def test_implements_protocol(harness: Harness) -> None:
    assert isinstance(harness.make(1), IndexedStore)


@pytest.mark.parametrize(
    "keys",
    [(), ("a",), ("a", "b", "c")],
    ids=["none", "too-few", "too-many"],
)
async def test_write_with_wrong_key_count_names_keys(
    harness: Harness, keys: tuple[str, ...]
) -> None:
    store = harness.make(2)
    with pytest.raises(errors.StoreError, match="expected 2 index keys") as info:
        store.add(obj("x", "default"), keys)
    assert info.value.keys == keys
    with pytest.raises(errors.StoreError):
        store.update(obj("x", "default"), keys)
    with pytest.raises(errors.StoreError):
        store.delete(*keys)
    assert store.size == 0


async def test_get_accepts_prefix_but_not_zero_or_too_many(harness: Harness) -> None:
    store = harness.make(2)
    with pytest.raises(errors.StoreError, match="1 to 2"):
        await store.aget()
    with pytest.raises(errors.StoreError, match="1 to 2") as info:
        await store.aget("a", "b", "c")
    assert info.value.keys == ("a", "b", "c")


async def test_non_string_key_rejected(harness: Harness) -> None:
    store = harness.make(1)
    bad: list[Any] = [None]
    with pytest.raises(errors.StoreError, match="must be strings"):
        store.add(obj("x", "default"), bad)


async def test_object_without_name_rejected(harness: Harness) -> None:
    store = harness.make(1)
    with pytest.raises(errors.StoreError, match=r"metadata\.name") as info:
        store.add({"metadata": {"namespace": "ns"}}, ["k"])
    assert info.value.keys == ("k",)
    with pytest.raises(errors.StoreError, match="no metadata"):
        store.add({"kind": "Pod"}, ["k"])


async def test_bucket_sorted_by_namespace_name(harness: Harness) -> None:
    store = harness.make(1)
    for ns, name in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "z")]:
        harness.write(store, obj(name, ns), ["svc"])
    assert names(await store.aget("svc")) == ["a/y", "a/z", "b/a", "b/z"]
    assert store.size == 4


async def test_upsert_replaces_by_namespace_name_and_moves_bucket(harness: Harness) -> None:
    store = harness.make(2)
    harness.write(store, obj("p", "default", rv="1", data={"v": 1}), ["web", "n1"])
    harness.write(store, obj("p", "default", rv="2", data={"v": 2}), ["web", "n1"])
    assert store.size == 1
    assert [o["data"] for o in await store.aget("web", "n1")] == [{"v": 2}]
    harness.write(store, obj("p", "default", rv="3", data={"v": 3}), ["web", "n2"])
    assert store.size == 1
    assert await store.aget("web", "n1") == ()
    assert [o["data"] for o in await store.aget("web", "n2")] == [{"v": 3}]
    ref = store.ref("default", "p")
    assert ref == stores.ObjectRef("default", "p", ("web", "n2"), "3")


async def test_partial_key_get_collects_every_bucket_sorted(harness: Harness) -> None:
    store = harness.make(3)
    harness.write(store, obj("c", "ns2"), ["x", "1", "a"])
    harness.write(store, obj("a", "ns1"), ["x", "2", "b"])
    harness.write(store, obj("b", "ns1"), ["x", "1", "b"])
    harness.write(store, obj("d", "ns1"), ["y", "1", "a"])
    assert names(await store.aget("x")) == ["ns1/a", "ns1/b", "ns2/c"]
    assert names(await store.aget("x", "1")) == ["ns1/b", "ns2/c"]
    assert names(await store.aget("x", "1", "b")) == ["ns1/b"]
    assert await store.aget("z") == ()
    assert await store.aget("x", "9") == ()
    assert names(await store.alist()) == ["ns1/a", "ns1/b", "ns1/d", "ns2/c"]


async def test_delete_removes_whole_bucket_and_delete_by_name_one(harness: Harness) -> None:
    store = harness.make(1)
    for name in "abc":
        harness.write(store, obj(name, "default"), ["k"])
    harness.write(store, obj("d", "default"), ["other"])
    assert store.delete_by_name("default", "b") is True
    assert store.delete_by_name("default", "b") is False
    assert names(await store.aget("k")) == ["default/a", "default/c"]
    assert store.delete("k") == 2
    assert store.delete("k") == 0
    assert names(await store.alist()) == ["default/d"]
    assert store.size == 1
    store.clear()
    assert store.size == 0
    assert await store.alist() == []


async def test_mod_count_bumps_on_every_mutation(harness: Harness) -> None:
    store = harness.make(1)
    counts = [store.mod_count]
    store.add(obj("a", "default"), ["k"])
    counts.append(store.mod_count)
    store.update(obj("a", "default", rv="2"), ["k"])
    counts.append(store.mod_count)
    store.delete_by_name("default", "a")
    counts.append(store.mod_count)
    store.delete("k")
    counts.append(store.mod_count)
    store.clear()
    counts.append(store.mod_count)
    assert counts == sorted(set(counts))
    await store.aget("k")
    assert store.mod_count == counts[-1]


async def test_ignore_fields_stripped_without_mutating_caller(harness: Harness) -> None:
    store = harness.make(1, ignore_fields=["metadata.managedFields", "status"])
    original = obj("a", "default", status={"phase": "Running"}, spec={"x": 1})
    original["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    harness.write(store, original, ["k"])
    (stored,) = await store.aget("k")
    assert "managedFields" not in stored["metadata"]
    assert "status" not in stored
    assert stored["spec"] == {"x": 1}
    assert original["metadata"]["managedFields"] == [{"manager": "kubectl"}]
    assert original["status"] == {"phase": "Running"}


async def test_bad_ignore_field_is_config_error(harness: Harness) -> None:
    with pytest.raises(errors.ConfigError) as info:
        harness.make(1, ignore_fields=["metadata.name", "metadata..x"])
    assert info.value.field == "ignore_fields[1]"


async def test_cluster_scoped_objects(harness: Harness) -> None:
    store = harness.make(1)
    harness.write(store, obj("n2", namespace=""), ["node"])
    harness.write(store, obj("n1", namespace=""), ["node"])
    assert names(await store.aget("node")) == ["/n1", "/n2"]
    assert store.ref("", "n1") is not None


async def test_copy_returns_private_deep_copies(harness: Harness) -> None:
    store = harness.make(1)
    harness.write(store, obj("a", "default", labels={"x": "1"}), ["k"])
    (copy,) = await store.aget("k", copy=True)
    assert isinstance(copy, dict)
    copy["metadata"]["labels"]["x"] = "mutated"
    (shared,) = await store.aget("k")
    assert shared["metadata"]["labels"] == {"x": "1"}

