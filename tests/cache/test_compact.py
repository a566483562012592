"""Tests for kubemirror.cache.compact: CompactIndexer against the Indexer contract.

The state machine is ``test_index.IndexerMachine`` run on a ``CompactIndexer``
(reads return equal, decoded objects instead of the very object written); the
rest covers what only a compact store has: partial views, the decode cache, bytes
in and out, and the memory bound (tracemalloc, not timed).
"""

from __future__ import annotations

import importlib.util
import os
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubemirror import cache, errors, keys
from kubemirror.cache.raw_object import PartialDecoder, RawObject
from tests.cache import test_index
from tests.objects import obj

VIEW = ("tags", "poison")


class CompactIndexerMachine(test_index.IndexerMachine):
    """Any sequence of writes leaves every index equal to a recomputation from scratch."""

    def __init__(self) -> None:
        super().__init__()
        self.indexer = cache.CompactIndexer(  # type: ignore[assignment]
            indexers={"namespace": keys.meta_namespace_index_func}, view_paths=VIEW, cache_size=3
        )

    @staticmethod
    def fingerprint(o: Any) -> Any:
        """Compact reads return equal, freshly decoded objects, not the one written."""
        return repr(o)


CompactIndexerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
TestCompactIndexerMachine = CompactIndexerMachine.TestCase


def by_node(o: Any) -> list[str]:
    node = (o.get("spec") or {}).get("nodeName")
    return [node] if node else []


def by_image(o: Any) -> list[str]:
    return [c["image"] for c in (o.get("spec") or {}).get("containers", [])]


def test_index_funcs_see_only_the_partial_view() -> None:
    seen: list[Any] = []

    def spy(o: Any) -> list[str]:
        seen.append(o)
        return by_node(o) + by_image(o)

    ix = cache.CompactIndexer(indexers={"spy": spy}, view_paths=["spec.nodeName"])
    ix.add(obj("a", labels={"app": "x"}, spec={"nodeName": "n1", "containers": [{"image": "i"}]},
               status={"phase": "Running"}))
    (view,) = seen
    assert view == {"kind": "Pod", "metadata": {"name": "a", "namespace": "ns",
                                                "resourceVersion": "1", "labels": {"app": "x"}},
                    "spec": {"nodeName": "n1"}}
    assert ix.list_index_func_values("spy") == ["n1"]  # the image is not in the view
    whole = ix.get_by_key("ns/a")
    assert whole is not None
    assert whole["status"] == {"phase": "Running"}  # reads are whole


def test_add_indexers_computes_from_stored_bytes() -> None:
    ix = cache.CompactIndexer(view_paths=["spec"])
    ix.add(obj("a", spec={"nodeName": "n1", "containers": [{"image": "i1"}]}))
    ix.add(obj("b", spec={"nodeName": "n2", "containers": [{"image": "i1"}]}))
    ix.add_indexers({"image": by_image})
    assert sorted(ix.index_keys("image", "i1")) == ["ns/a", "ns/b"]
    assert [o["metadata"]["name"] for o in ix.index("image", obj("q", spec={
        "containers": [{"image": "i1"}]}))] != []


def test_raw_objects_bytes_and_dicts_are_stored_alike() -> None:
    decoder = PartialDecoder()
    ix = cache.CompactIndexer(decoder=decoder)
    a, b, c = obj("a", x=1), obj("b", x=2), obj("c", x=3)
    ix.add(decoder.view(orjson.dumps(a)))
    ix.add(orjson.dumps(b))
    ix.add(c)
    assert [ix.get_by_key(f"ns/{n}") for n in "abc"] == [a, b, c]
    assert ix.get_raw_by_key("ns/b") == orjson.dumps(b)
    view = ix.get_view_by_key("ns/c")
    assert isinstance(view, RawObject)
    assert view == {"kind": "Pod", "metadata": {"name": "c", "namespace": "ns",
                                                "resourceVersion": "1"}}
    assert view.decode() == c
    assert ix.get_view_by_key("ns/zz") is None
    assert ix.get_raw_by_key("ns/zz") is None


def test_reads_are_cached_shared_and_never_changed_by_writes() -> None:
    ix = cache.CompactIndexer(cache_size=1)
    ix.add(obj("a", rv="1"))
    first = ix.get_by_key("ns/a")
    assert ix.get_by_key("ns/a") is first  # served from the decode cache
    private = ix.get_by_key("ns/a", copy=True)
    assert private == first
    assert private is not first
    ix.update(obj("a", rv="2"))
    assert first is not None
    assert first["metadata"]["resourceVersion"] == "1"
    assert ix.get_by_key("ns/a") == obj("a", rv="2")
    ix.add(obj("b"))
    ix.get_by_key("ns/b")  # evicts a (cache_size=1)
    assert len(ix._cache) == 1


@pytest.mark.parametrize("bad", [b"not json", b"[1]", 42, {"metadata": 5}],
                         ids=["garbage", "array", "int", "meta-not-object"])
def test_undecodable_input_is_a_key_func_error_naming_it(bad: Any) -> None:
    ix = cache.CompactIndexer()
    with pytest.raises(errors.KeyFuncError) as info:
        ix.add(bad)
    assert info.value.obj is bad
    assert len(ix) == 0


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(errors.ConfigError, match="cache_size"):
        cache.CompactIndexer(cache_size=-1)
    with pytest.raises(errors.ConfigError, match=r"spec\.\.x"):
        cache.CompactIndexer(view_paths=["spec..x"])


def _podgen() -> Any:
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "podgen.py")
    spec = importlib.util.spec_from_file_location("podgen", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _retained_per_object(build: Any, count: int) -> float:
    """Bytes still allocated after ``build()`` (which returns the store), per object."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == count
    return (after - before) / count


def test_memory_per_stored_pod_stays_bounded() -> None:
    """A regression guard (generous bounds, not a benchmark): bytes per ~6 KB Pod.

    tracemalloc over 300 podgen Pods arriving as watch lines, stored as the client
    hands them over (compact: ``PartialDecoder.event`` -> ``RawObject``; dict
    store: ``orjson.loads``). Measured: compact ~6.2 KB, ~4.3 KB with
    managedFields stripped, the decoded-dict ``Indexer`` ~32 KB.
    """
    pods = _podgen().make_pods(300, 7)
    lines = [orjson.dumps({"type": "ADDED", "object": p}) for p in pods]
    ns_index = {cache.NAMESPACE_INDEX: keys.meta_namespace_index_func}
    results = {}
    for strip, bound in ((False, 8 * 1024), (True, 6 * 1024)):
        decoder = PartialDecoder(strip_managed_fields=strip)

        def build(d: PartialDecoder = decoder) -> cache.CompactIndexer:
            store = cache.CompactIndexer(indexers=ns_index, decoder=d)
            store.replace([d.event(line)["object"] for line in lines])
            return store

        results[strip] = _retained_per_object(build, len(pods))
        assert results[strip] < bound, results

    def build_dicts() -> cache.Indexer:
        store = cache.Indexer(indexers=ns_index)
        store.replace([orjson.loads(line)["object"] for line in lines])
        return store

    dict_bytes = _retained_per_object(build_dicts, len(pods))
    assert 4 * results[False] < dict_bytes < 48 * 1024, (dict_bytes, results)


_OBJECTS = st.fixed_dictionaries(
    {"metadata": st.fixed_dictionaries(
        {"name": st.sampled_from(["a", "b"]), "resourceVersion": st.sampled_from(["1", "2"])},
        optional={"namespace": st.sampled_from(["ns", ""]),
                  "managedFields": st.lists(st.dictionaries(st.sampled_from(["m", "object"]),
                                                            st.integers(-9, 9)), max_size=2)})},
    optional={"spec": st.dictionaries(st.sampled_from(["x", "object", "managedFields"]),
                                      st.integers(-9, 9) | st.text(max_size=3), max_size=2)},
)


@given(obj=_OBJECTS, etype=st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]),
       shape=st.sampled_from(["server", "reordered", "spaced", "extra_key", "dup_object"]),
       strip=st.booleans())
def test_event_fast_path_agrees_with_the_general_decode(
    obj: dict[str, Any], etype: str, shape: str, strip: bool
) -> None:
    """Whatever the line's shape, ``event`` returns what the two-pass decode returns.

    The fast path slices the object's bytes out of ``{"type":T,"object":...}``; other
    key orders, whitespace, extra keys and a duplicated ``object`` key must not fool it.
    """
    body = orjson.dumps(obj)
    line = {
        "server": b'{"type":"%s","object":%s}' % (etype.encode(), body),
        "reordered": b'{"object":%s,"type":"%s"}' % (body, etype.encode()),
        "spaced": b'{"type": "%s", "object": %s}' % (etype.encode(), body),
        "extra_key": b'{"type":"%s","object":%s,"x":1}' % (etype.encode(), body),
        "dup_object": b'{"type":"%s","object":{"metadata":{"name":"z"}},"object":%s}'
                      % (etype.encode(), body),
    }[shape]
    decoder = PartialDecoder(strip_managed_fields=strip)
    fast = decoder.event(line)
    slow = decoder._event_slow(line)
    viewed = decoder.event(memoryview(b"\n" + line + b"\n")[1:-1])  # as LineSplitter hands it
    assert fast["type"] == slow["type"] == viewed["type"] == etype
    assert type(viewed["object"].raw) is bytes
    assert (dict(viewed["object"]), viewed["object"].raw) == (dict(fast["object"]),
                                                              fast["object"].raw)
    assert dict(fast["object"]) == dict(slow["object"])
    assert fast["object"].raw == slow["object"].raw
    expected = dict(obj, metadata=dict(obj["metadata"]))
    if strip:
        expected["metadata"].pop("managedFields", None)
    assert orjson.loads(fast["object"].raw) == expected


@given(names=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8),
       strip=st.booleans())
@settings(max_examples=60, deadline=None)
def test_list_views_after_replace_gives_what_get_view_by_key_decodes(names: list[str],
                                                                    strip: bool) -> None:
    """One view per stored key, in the store's order, equal to a fresh decode of the
    stored bytes (a name listed twice keeps its first place and its last object).
    (``list_views`` succeeds ``replace_and_view``, whose one caller, the informer's bulk
    route, is gone.)"""
    decoder = PartialDecoder(VIEW, strip_managed_fields=strip)
    indexer = cache.CompactIndexer(indexers={"namespace": keys.meta_namespace_index_func},
                                   decoder=decoder)
    objs = []
    for i, name in enumerate(names):
        o = obj(name, rv=str(i + 1), tags=[str(i)])
        o["metadata"]["managedFields"] = [{"manager": "m", "time": str(i)}]
        objs.append(o)
    indexer.replace(objs)
    views = indexer.list_views()
    assert [keys.meta_namespace_key(v) for v in views] == indexer.list_keys()
    assert indexer.list_keys() == list(dict.fromkeys(f"ns/{n}" for n in names))
    last = {f"ns/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in objs}
    for view in views:
        key = keys.meta_namespace_key(view)
        assert view["metadata"]["resourceVersion"] == last[key]
        fresh = indexer.get_view_by_key(key)
        assert fresh is not None
        assert dict(fresh) == dict(view)
        assert fresh.raw == view.raw
        assert (b"managedFields" in view.raw) is not strip
