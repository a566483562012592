"""Tests for kubemirror.multicluster.compact_objects: the compact form serves what the dict
layout serves, byte for byte, from dicts and from received bytes; selectors decide the same on
the skeleton; the memory a stored object takes stays near its JSON size."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubemirror.cache.raw_object import PartialDecoder
from kubemirror.keys import ExplicitKey
from kubemirror.listing import ListOptions
from kubemirror.multicluster import resources
from kubemirror.multicluster.compact_objects import (
    CLUSTER_ANNOTATION,
    CompactEncoder,
    selectable_skeleton,
    stamp_object,
)
from kubemirror.multicluster.list_request import ListScope, object_filter
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, new_storage

POD_INFO = next(i for i in resources.BUILTIN_RESOURCES if i.gvr == PODS)

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text | st.floats(
    allow_nan=False, allow_infinity=False
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
label_values = st.sampled_from(["a", "b", "api", ""])


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    """Pod-shaped objects: metadata with or without labels, annotations (the cluster one
    maybe already there), resourceVersion and nested ``metadata`` keys elsewhere; spec and
    status with the selectable fields or anything else; kind/apiVersion maybe missing."""
    meta: dict[str, Any] = {"name": draw(st.sampled_from(["x", "y", "web-1"]))}
    if draw(st.booleans()):
        meta["namespace"] = draw(st.sampled_from(["default", "n1"]))
    if draw(st.booleans()):
        meta["labels"] = draw(st.dictionaries(st.sampled_from(["app", "tier"]), label_values))
    if draw(st.booleans()):
        annotations = draw(st.dictionaries(_text, _text, max_size=2))
        if draw(st.booleans()):
            annotations[CLUSTER_ANNOTATION] = draw(st.sampled_from(["a", "other"]))
        meta["annotations"] = annotations
    if draw(st.booleans()):
        meta["resourceVersion"] = draw(st.sampled_from(["7", "", "12345"]))
    meta.update(draw(st.dictionaries(st.sampled_from(["uid", "finalizers", "x"]), json_values,
                                     max_size=2)))
    members: list[tuple[str, Any]] = [("metadata", meta)]
    spec: dict[str, Any] = draw(st.dictionaries(
        st.sampled_from(["nodeName", "restartPolicy", "hostNetwork", "metadata", "x"]),
        json_values | label_values, max_size=3))
    keep_empty_spec: bool = draw(st.booleans())
    if spec or keep_empty_spec:
        members.append(("spec", spec))
    if draw(st.booleans()):
        members.append(("status", draw(st.dictionaries(
            st.sampled_from(["phase", "podIP", "podIPs"]), json_values | label_values,
            max_size=2))))
    if draw(st.booleans()):
        members.append(("kind", "Pod"))
    if draw(st.booleans()):
        members.append(("apiVersion", "v1"))
    if draw(st.booleans()):
        members.append(("extra", draw(json_values)))
    order = draw(st.permutations(range(len(members))))
    return dict(members[i] for i in order)


def stamped_json(obj: dict[str, Any], cluster: str = "a", index: int = 9) -> bytes:
    """What the dict layout serves for ``obj``."""
    return orjson.dumps(stamp_object(POD_INFO, "p", cluster, obj, index, "5"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(obj=objects(), cluster=st.sampled_from(["a", "b"]))
def test_compact_bytes_equal_the_dict_layout_from_a_dict_or_the_bytes_received(
    obj: dict[str, Any], cluster: str
) -> None:
    encoder = CompactEncoder(POD_INFO)
    expected = stamped_json(obj, cluster)
    from_dict, skeleton = encoder.encode(obj, "p", cluster, 9, "5")
    received = PartialDecoder().view(orjson.dumps(obj))
    from_bytes, raw_skeleton = encoder.encode(received, "p", cluster, 9, "5")
    assert from_dict == expected
    assert from_bytes == expected
    stamped = orjson.loads(expected)
    assert skeleton == raw_skeleton == selectable_skeleton(stamped, encoder.field_paths)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(obj=objects(), spaced=st.booleans())
def test_bytes_of_another_encoder_keep_their_encoding_and_mean_the_same(
    obj: dict[str, Any], spaced: bool
) -> None:
    """Go escapes ``<>&`` and non-ASCII differently, Python's json spaces members: the
    bytes outside ``metadata`` stay as received (or, unspliceable, re-encoded); the JSON
    value and member order are the dict layout's."""
    text = json.dumps(obj, ensure_ascii=True, separators=(", ", ": ") if spaced else (",", ":"))
    encoded, _ = CompactEncoder(POD_INFO).encode(
        PartialDecoder().view(text.encode()), "p", "a", 9, "5"
    )
    assert orjson.dumps(orjson.loads(encoded)) == stamped_json(obj)


def test_a_received_object_is_spliced_not_reencoded() -> None:
    """Outside ``metadata`` the received bytes are kept verbatim (here Go's escapes)."""
    body = b'{"metadata":{"name":"x","namespace":"n"},"spec":{"nodeName":"\\u003cn1\\u003e"}}'
    encoded, skeleton = CompactEncoder(POD_INFO).encode(
        PartialDecoder().view(body), "p", "a", 3, "7"
    )
    assert encoded.startswith(b'{"metadata":{"name":"x","namespace":"n","annotations":')
    assert encoded.endswith(
        b',"spec":{"nodeName":"\\u003cn1\\u003e"},"kind":"Pod","apiVersion":"v1"}'
    )
    assert orjson.loads(encoded)["metadata"]["resourceVersion"] == "p.3.7"
    assert skeleton["spec"] == {"nodeName": "<n1>"}


def test_string_sections_of_skeletons_are_shared_others_kept_apart() -> None:
    encoder = CompactEncoder(POD_INFO)

    def skeleton(name: str, spec: dict[str, Any]) -> Any:
        pod = {"metadata": {"name": name, "namespace": "n", "labels": {"app": "api"}},
               "spec": spec}
        return encoder.encode(pod, "p", "a", 1, "1")[1]

    one = skeleton("x", {"nodeName": "n1", "hostNetwork": True})
    two = skeleton("y", {"nodeName": "n1", "hostNetwork": True})
    three = skeleton("z", {"nodeName": "n1"})
    assert one["metadata"]["labels"] is two["metadata"]["labels"] is three["metadata"]["labels"]
    assert one["spec"] is not two["spec"], "a section with a bool is not shared"
    assert three["spec"] is skeleton("w", {"nodeName": "n1"})["spec"]
    assert one["metadata"]["name"] == "x"
    assert two["metadata"]["name"] == "y"


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.dictionaries(st.sampled_from(["app", "tier", "v"]), st.sampled_from(["a", "b"])),
    phase=st.sampled_from(["Running", "Pending", None]),
    node=st.sampled_from(["n1", "n2", None]),
    host_network=st.sampled_from([True, False, None]),
    selector=st.sampled_from(["", "app=a", "app!=a,tier", "!v", "app in (a,b),tier notin (b)"]),
    fields=st.sampled_from([
        "", "status.phase=Running", "spec.nodeName!=n1", "spec.host=n2",
        "metadata.name=x,metadata.namespace=default", "spec.hostNetwork=false",
    ]),
)
def test_selectors_decide_the_same_on_compact_entries_as_on_full_objects(
    labels: dict[str, str], phase: str | None, node: str | None, host_network: bool | None,
    selector: str, fields: str,
) -> None:
    pod = make_pod("x", labels=labels)
    for section, key, value in (("status", "phase", phase), ("spec", "nodeName", node),
                                ("spec", "hostNetwork", host_network)):
        pod[section].pop(key, None)
        if value is not None:
            pod[section][key] = value
    flt = object_filter(
        ListScope(), ListOptions(label_selector=selector, field_selector=fields), POD_INFO
    )
    encoder = CompactEncoder(POD_INFO)
    for given_obj in (pod, PartialDecoder().view(orjson.dumps(pod))):
        _, skeleton = encoder.encode(given_obj, "p", "a", 1, "1")
        assert flt.matches_object(skeleton) == flt.matches_object(pod)


def _synchro_writes(mem: MemoryStorage, raw: bool) -> list[bytes]:
    """A synchro's adds, updates, relist and deletes (with and without a final state);
    returns every LIST item and watch line the storage then serves."""
    decoder = PartialDecoder()

    def given_obj(obj: dict[str, Any]) -> Any:
        return decoder.view(orjson.dumps(obj)) if raw else obj

    store = mem.cluster_store("a", PODS)
    watch = mem.resource_storage(PODS).watch(ListOptions(resource_version="0"))
    store.add(given_obj(make_pod("x", labels={"app": "api"}, resource_version="10")))
    store.add(given_obj(make_pod("y", resource_version="11")))
    store.update(given_obj(make_pod("x", labels={"app": "web"}, resource_version="12")))
    store.replace([given_obj(make_pod("x", resource_version="12")),
                   given_obj(make_pod("z", resource_version="13"))])
    store.delete(given_obj(make_pod("z", resource_version="14")))
    api = mem.resource_storage(PODS)
    api.create("a", make_pod("w"))
    api.delete_by_key("a", "default/w")
    served = [e.encoded() for e in api.list().entries]
    lines = []
    while watch._pending or watch._fill():
        lines.append(watch._pop().line())
    watch.stop()
    return served + lines


def test_a_compact_storage_fed_received_bytes_serves_what_the_dict_layout_serves() -> None:
    compact = new_storage(prefix="p")
    dicts = new_storage(prefix="p", compact=False)
    for mem in (compact, dicts):
        mem.prepare_cluster("a")
    assert _synchro_writes(compact, raw=True) == _synchro_writes(dicts, raw=False)


def test_a_delete_without_final_state_keeps_the_member_version() -> None:
    mem = new_storage(prefix="p")
    mem.prepare_cluster("a")
    store = mem.cluster_store("a", PODS)
    store.add(PartialDecoder().view(orjson.dumps(make_pod("x", resource_version="41"))))
    store.delete(ExplicitKey("default/x"))
    events = mem.resource_storage(PODS)._watch_cache.events_after(0)
    assert [(e.type, e.entry.original_rv) for e in events] == [("ADDED", "41"), ("DELETED", "41")]
    assert events[-1].object["metadata"]["resourceVersion"] == "p.2.41"


def test_a_received_deleted_state_is_the_final_state() -> None:
    mem = new_storage(prefix="p")
    mem.prepare_cluster("a")
    store = mem.cluster_store("a", PODS)
    decoder = PartialDecoder()
    store.add(decoder.view(orjson.dumps(make_pod("x", resource_version="41"))))
    final = make_pod("x", labels={"gone": "yes"}, resource_version="42")
    store.delete(decoder.view(orjson.dumps(final)))
    last = mem.resource_storage(PODS)._watch_cache.events_after(0)[-1]
    assert last.type == "DELETED"
    assert last.entry.original_rv == "42"
    assert last.object["metadata"]["labels"] == {"gone": "yes"}


@pytest.mark.parametrize("raw", [True, False], ids=["received-bytes", "dicts"])
def test_a_stored_pod_takes_its_json_and_a_few_hundred_bytes(raw: bool) -> None:
    """tracemalloc over 2,000 stored pods (the storage's fixed rings excluded): no
    allocator slack on the bytes (orjson's growth buffer held up to 16 KB per 6 KB pod)
    and no decoded dict kept (a make_pod dict is ~10 KB). Measured: ~1.3 KB besides the
    JSON (skeleton ~0.6 KB, entry, event, key and versions ~0.5 KB)."""
    decoder = PartialDecoder()
    pods = []
    for i in range(2000):
        pod = make_pod(f"web-{i}", labels={"app": "api", "pod-template-hash": f"{i // 50}"},
                       resource_version=str(i + 1))
        pod["status"]["podIP"] = f"10.0.{i // 256}.{i % 256}"
        pods.append(decoder.view(orjson.dumps(pod)) if raw else pod)
    mem = new_storage(prefix="p", event_window=4096)
    mem.prepare_cluster("a")
    store = mem.cluster_store("a", PODS)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for pod in pods:
            store.add(pod)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stored = mem.resource_storage(PODS)._clusters["a"].values()
    json_bytes = sum(len(e.encoded()) for e in stored)
    overhead = (used - json_bytes) / len(pods)
    assert overhead < 1600, f"{overhead:.0f} bytes per pod besides its JSON"

