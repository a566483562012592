"""Tests for kubemirror.multicluster.paging: continue tokens, page cutting at a version."""

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
from kubemirror.multicluster import key_order, paging, resources, watch_cache
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
    prefix=st.text(
        st.characters(codec="utf-8", blacklist_characters="."),
        min_size=1,
        max_size=8,
    ),
    bound_to=st.text(st.characters(codec="utf-8"), max_size=16),
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


def _entry(cluster: str, key: str, web: bool, index: int) -> watch_cache.StoredObject:
    namespace, name = key.split("/")
    obj = make_pod(name, namespace, {"app": "web" if web else "db"})
    return watch_cache.StoredObject(
        obj, cluster=cluster, key=key, namespace=namespace, index=index, original_rv="1"
    )


_KEYS = st.sampled_from(["a/p1", "a/p2", "a/p3", "a0/p1", "b/p1", "b/p2", "ns/p1"])
_STATES = st.dictionaries(st.tuples(st.sampled_from(["c1", "c2", "c3"]), _KEYS), st.booleans())


@given(
    current=_STATES,
    then=_STATES,
    written=st.sets(st.tuples(st.sampled_from(["c1", "c2", "c3"]), _KEYS)),
    limit=st.integers(min_value=0, max_value=4),
    selector=st.sampled_from(["", "app=web"]),
    namespace=st.sampled_from(["", "a", "b"]),
)
def test_pages_cut_until_the_end_give_the_state_at_the_version_once_in_order(
    current: dict[tuple[str, str], bool],
    then: dict[tuple[str, str], bool],
    written: set[tuple[str, str]],
    limit: int,
    selector: str,
    namespace: str,
) -> None:
    """Current entries with the keys ``written`` since undone to their state ``then``:
    the pages hold exactly the state at the version, and ``count_after`` counts what
    is left of it after each page."""
    at_version = {k: v for k, v in current.items() if k not in written}
    at_version.update({k: then[k] for k in written if k in then})
    parts = []
    for cluster in sorted({c for c, _ in current} | {c for c, _ in written}):
        objects = {
            key: _entry(cluster, key, web, 2) for (c, key), web in current.items() if c == cluster
        }
        undone = sorted(
            (key, _entry(cluster, key, then[(c, key)], 1) if (c, key) in then else None)
            for c, key in written
            if c == cluster
        )
        order = key_order.KeyOrder(objects) if objects else None
        parts.append(paging.ClusterAtVersion(cluster, objects, {cluster: order}.get, undone))
    flt = object_filter(ListScope(namespace=namespace or None),
                        ListOptions(label_selector=selector), POD_INFO)
    expected = [
        k for k, web in sorted(at_version.items())
        if (not namespace or k[1].startswith(namespace + "/")) and (web or not selector)
    ]
    in_scope = [k for k in sorted(at_version) if not namespace or k[1].startswith(namespace + "/")]
    seen: list[tuple[str, str]] = []
    after: tuple[str, str] | None = None
    while True:
        page, more = paging.cut_page(parts, namespace, after, limit, flt)
        assert not limit or len(page) <= limit
        seen += [(e.cluster, e.key) for e in page]
        assert all(e.index == (1 if (e.cluster, e.key) in written else 2) for e in page)
        if not more:
            break
        assert page, "a page that says more follows is not empty"
        after = (page[-1].cluster, page[-1].key)
        assert paging.count_after(parts, namespace, after) == sum(1 for k in in_scope if k > after)
    assert seen == expected


@pytest.mark.parametrize(
    ("decoded", "position"),
    [
        ({"i": 3, "c": "east", "k": "ns/a"}, (3, ("east", "ns/a"))),
        ({"i": -1, "c": "east", "k": "ns/a"}, None),
        ({"i": True, "c": "east", "k": "ns/a"}, None),
        ({"i": 3, "c": 1, "k": "ns/a"}, None),
        ({"i": 3, "c": "east"}, None),
        ({}, None),
    ],
    ids=["valid", "negative", "bool", "cluster-not-str", "no-key", "empty"],
)
def test_key_position(
    decoded: dict[str, object], position: tuple[int, tuple[str, str]] | None
) -> None:
    assert paging.key_position(decoded) == position


def test_a_too_old_continue_carries_a_fresh_token() -> None:
    gone = paging.continue_too_old("fresh")
    assert gone.code == 410
    assert gone.reason == "Expired"
    assert gone.status["metadata"] == {"continue": "fresh"}
    assert "too old" in gone.status["message"]
