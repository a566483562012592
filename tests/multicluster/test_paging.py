"""Tests for kubemirror.multicluster.paging: continue tokens, page cutting, kept snapshots."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import paging, resources, watch_cache
from kubemirror.multicluster.list_request import ListScope, object_filter
from kubemirror.testing import PODS, make_pod
from kubemirror.types import GroupVersionResource

POD_INFO = next(info for info in resources.BUILTIN_RESOURCES if info.gvr == PODS)
OTHER_INFO = resources.ResourceInfo(
    GroupVersionResource("apps", "v1", "deployments"), kind="Deployment"
)


def _offset(decoded: Mapping[str, Any]) -> int | None:
    offset = decoded.get("o")
    return offset if isinstance(offset, int) and not isinstance(offset, bool) else None


@given(
    prefix=st.text(st.characters(blacklist_characters="."), min_size=1, max_size=8),
    bound_to=st.text(max_size=16),
    offset=st.integers(min_value=0, max_value=10**12),
)
def test_a_token_decodes_to_the_position_it_was_encoded_with(
    prefix: str, bound_to: str, offset: int
) -> None:
    token = paging.encode_continue(prefix, POD_INFO, bound_to, {"o": offset})
    assert "=" not in token
    assert paging.decode_continue(token, prefix, POD_INFO, bound_to, _offset) == offset


def test_a_token_is_bound_to_its_storage_type_and_request() -> None:
    token = paging.encode_continue("p", POD_INFO, "q1", {"o": 3})
    with pytest.raises(errors.GoneError, match="another storage instance"):
        paging.decode_continue(token, "other", POD_INFO, "q1", _offset)
    with pytest.raises(errors.BadRequestError, match="another request"):
        paging.decode_continue(token, "p", OTHER_INFO, "q1", _offset)
    with pytest.raises(errors.BadRequestError, match="another request"):
        paging.decode_continue(token, "p", POD_INFO, "q2", _offset)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a", "illegal base64 data"),
        (base64.urlsafe_b64encode(b"not json").decode(), "not a JSON object"),
        (base64.urlsafe_b64encode(b"[1]").decode(), "not a JSON object"),
        (base64.urlsafe_b64encode(orjson.dumps({"o": "x"})).decode(), "start position"),
    ],
    ids=["base64", "json", "array", "position"],
)
def test_a_malformed_token_is_a_bad_request_saying_why(token: str, reason: str) -> None:
    with pytest.raises(errors.BadRequestError, match=reason):
        paging.decode_continue(token, "p", POD_INFO, "q", _offset)


def test_the_scope_key_tells_requests_apart_but_not_pages_of_one() -> None:
    opts = ListOptions(label_selector="app=a", limit=2)
    key = paging.scope_key(ListScope(("east",), "web"), opts)
    assert key == paging.scope_key(ListScope(("east",), "web"), ListOptions(
        label_selector="app=a", limit=5, continue_token="t"))
    assert key != paging.scope_key(ListScope(("west",), "web"), opts)
    assert key != paging.scope_key(ListScope(("east",), None), opts)
    assert key != paging.scope_key(ListScope(("east",), "web"), ListOptions(field_selector="x=y"))


@pytest.mark.parametrize(
    "opts",
    [ListOptions(limit=-1), ListOptions(continue_token="t", resource_version="p.1")],
    ids=["negative-limit", "continue-with-rv"],
)
def test_paging_checks(opts: ListOptions) -> None:
    with pytest.raises(errors.BadRequestError):
        paging.check_paging(opts)


def _entries(labels: list[bool]) -> list[watch_cache.StoredObject]:
    out = []
    for i, web in enumerate(labels):
        obj = make_pod(f"p{i:03}", "ns", {"app": "web" if web else "db"})
        out.append(watch_cache.StoredObject(
            obj, cluster="c", key=f"ns/p{i:03}", namespace="ns", index=i + 1, original_rv="1"))
    return out


@given(
    labels=st.lists(st.booleans(), max_size=30),
    limit=st.integers(min_value=0, max_value=7),
    selector=st.sampled_from(["", "app=web"]),
)
def test_cutting_pages_until_the_end_yields_each_selected_entry_once_in_order(
    labels: list[bool], limit: int, selector: str
) -> None:
    entries = _entries(labels)
    flt = object_filter(ListScope(), ListOptions(label_selector=selector), POD_INFO)
    expected = [e for e in entries if flt.matches_object(e.object)]
    seen: list[watch_cache.StoredObject] = []
    offset = 0
    while True:
        page, end = paging.cut_page(entries, offset, limit, flt)
        assert end >= offset
        assert not limit or len(page) <= limit
        seen += page
        if end >= len(entries) or (not page and not limit):
            break
        offset = end
    assert seen == expected


def test_kept_snapshots_are_resumed_by_their_request_and_evicted_least_recent_first() -> None:
    snapshots = paging.Snapshots()
    first = snapshots.keep(paging.Snapshot([], 1, "q1"), capacity=2)
    second = snapshots.keep(paging.Snapshot([], 2, "q2"), capacity=2)
    assert snapshots.resume(first, "q1").index == 1  # now the most recently used
    with pytest.raises(errors.BadRequestError, match="another request"):
        snapshots.resume(first, "q2")
    snapshots.keep(paging.Snapshot([], 3, "q3"), capacity=2)  # evicts the second
    with pytest.raises(errors.GoneError, match="too old"):
        snapshots.resume(second, "q2")
    assert snapshots.resume(first, "q1").index == 1
    snapshots.drop(first)
    snapshots.drop(first)  # absent: ignored
    with pytest.raises(errors.GoneError):
        snapshots.resume(first, "q1")


@pytest.mark.parametrize(
    ("decoded", "position"),
    [
        ({"s": "ab", "o": 3}, ("ab", 3)),
        ({"s": "ab", "o": -1}, None),
        ({"s": "ab", "o": True}, None),
        ({"s": 1, "o": 3}, None),
        ({}, None),
    ],
    ids=["valid", "negative", "bool", "id-not-str", "empty"],
)
def test_snapshot_position(decoded: dict[str, object], position: tuple[str, int] | None) -> None:
    assert paging.snapshot_position(decoded) == position
