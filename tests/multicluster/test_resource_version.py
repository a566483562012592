"""Resource version encoding: round trips, foreign prefixes (410) and garbage (400)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.multicluster import resource_version as rvs

prefixes = st.text("abcdef0123456789", min_size=1, max_size=8)
originals = st.text(min_size=0, max_size=20)


@given(prefixes, st.integers(min_value=0, max_value=2**63), originals)
def test_memory_version_round_trips(prefix: str, index: int, original: str) -> None:
    rv = rvs.to_memory_resource_version(prefix, index, original)
    assert rvs.parse_memory_resource_version(rv) == (prefix, index, original)
    assert rvs.parse_list_resource_version(rv, prefix) == index


@given(prefixes, st.integers(min_value=0, max_value=2**63))
def test_list_version_round_trips(prefix: str, index: int) -> None:
    rv = rvs.to_list_resource_version(prefix, index)
    assert rv == f"{prefix}.{index}"
    assert rvs.parse_list_resource_version(rv, prefix) == index


def test_new_prefix_is_random_and_dotless() -> None:
    seen = {rvs.new_prefix() for _ in range(50)}
    assert len(seen) == 50
    assert all("." not in p and p for p in seen)


def test_foreign_prefix_is_gone_with_expired_status() -> None:
    with pytest.raises(errors.GoneError) as info:
        rvs.parse_list_resource_version("other.5", "mine")
    assert info.value.code == 410
    assert info.value.reason == "Expired"
    assert info.value.status["kind"] == "Status"


@pytest.mark.parametrize(
    "rv",
    ["", "12", "abc", "p.x", "p.-1", ".5", "p.5x.7", "p.١٢"],
    ids=["empty", "plain-int", "word", "bad-idx", "negative", "no-prefix", "junk", "unicode"],
)
def test_unparsable_list_version_is_bad_request(rv: str) -> None:
    with pytest.raises(errors.BadRequestError) as info:
        rvs.parse_list_resource_version(rv, "p")
    assert info.value.code == 400
    assert repr(rv) in str(info.value)


@pytest.mark.parametrize("rv", ["p.1", "p", "1.2"], ids=["two-parts", "one-part", "digits"])
def test_memory_version_needs_three_parts(rv: str) -> None:
    with pytest.raises(errors.BadRequestError):
        rvs.parse_memory_resource_version(rv)


@pytest.mark.parametrize(
    ("rv", "expected"),
    [
        ("", rvs.WatchStart()),
        ("0", rvs.WatchStart(any_version=True)),
        ("p.7", rvs.WatchStart(index=7)),
        ("p.7.123", rvs.WatchStart(index=7)),
        ('{"a": "10", "b": "x"}', rvs.WatchStart(cluster_versions={"a": "10", "b": "x"})),
    ],
    ids=["unset", "any", "list", "object", "json"],
)
def test_watch_versions(rv: str, expected: rvs.WatchStart) -> None:
    assert rvs.parse_watch_resource_version(rv, "p") == expected


@pytest.mark.parametrize("rv", ["{bad", '["a"]', '{"a": 1}'], ids=["syntax", "array", "int"])
def test_bad_json_watch_version(rv: str) -> None:
    with pytest.raises(errors.BadRequestError):
        rvs.parse_watch_resource_version(rv, "p")


def test_watch_version_from_other_instance_is_gone() -> None:
    with pytest.raises(errors.GoneError):
        rvs.parse_watch_resource_version("q.7.1", "p")
