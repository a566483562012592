"""Tests for kubemirror.cache.expiration_cache: lazy expiry driven by a fake clock."""

from __future__ import annotations

import pytest

from kubemirror import cache
from tests.objects import FakeClock, obj


def test_entries_expire_after_ttl(clock: FakeClock) -> None:
    store = cache.TTLStore(ttl=10.0, clock=clock)
    a = obj("a")
    store.add(a)
    clock.advance(10.0)
    assert store.get(a) is a  # alive at exactly ttl
    clock.advance(0.001)
    assert store.get(a) is None
    assert store.list() == []
    assert store.list_keys() == []


def test_expired_entries_are_purged_on_read(clock: FakeClock) -> None:
    store = cache.TTLStore(ttl=5.0, clock=clock)
    store.add(obj("old"))
    clock.advance(4.0)
    store.add(obj("young"))
    clock.advance(2.0)
    assert store.list_keys() == ["ns/young"]
    assert "1 entries" in repr(store)  # "old" was removed, not just hidden


def test_update_refreshes_the_timestamp(clock: FakeClock) -> None:
    store = cache.TTLStore(ttl=5.0, clock=clock)
    store.add(obj("a", rv="1"))
    clock.advance(4.0)
    store.update(obj("a", rv="2"))
    clock.advance(4.0)
    got = store.get_by_key("ns/a")
    assert got is not None
    assert got["metadata"]["resourceVersion"] == "2"


def test_replace_stamps_everything_now(clock: FakeClock) -> None:
    store = cache.TTLStore(ttl=5.0, clock=clock)
    store.add(obj("dropped"))
    clock.advance(4.0)
    store.replace([obj("a"), obj("b")], "9")
    clock.advance(4.0)
    assert sorted(store.list_keys()) == ["ns/a", "ns/b"]
    clock.advance(2.0)
    assert store.list() == []


@pytest.mark.parametrize("ttl", [0.0, -1.0], ids=["zero", "negative"])
def test_non_positive_ttl_never_expires(clock: FakeClock, ttl: float) -> None:
    store = cache.TTLStore(ttl=ttl, clock=clock)
    store.add(obj("a"))
    clock.advance(1e9)
    assert store.list_keys() == ["ns/a"]


class NamedPolicy:
    """Expires exactly the entries whose name is listed (a custom ExpirationPolicy)."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def is_expired(self, entry: cache.TimestampedEntry) -> bool:
        return bool(entry.obj["metadata"]["name"] in self.names)


def test_custom_policy(clock: FakeClock) -> None:
    policy = NamedPolicy("b")
    store = cache.ExpirationCache(policy=policy, clock=clock)
    store.add(obj("a"))
    store.add(obj("b"))
    assert store.list_keys() == ["ns/a"]
    policy.names.add("a")
    assert store.get_by_key("ns/a") is None
    store.delete(obj("a"))  # already purged: fine


def test_timestamped_entries_record_key_and_time(clock: FakeClock) -> None:
    seen: list[cache.TimestampedEntry] = []

    class Spy:
        def is_expired(self, entry: cache.TimestampedEntry) -> bool:
            seen.append(entry)
            return False

    store = cache.ExpirationCache(policy=Spy(), clock=clock)
    a = obj("a")
    store.add(a)
    store.get(a)
    assert seen == [cache.TimestampedEntry(a, clock.now(), "ns/a")]


def test_a_purge_never_removes_a_rewritten_entry(clock: FakeClock) -> None:
    """Expiry is judged outside the lock; a write in between must survive the purge."""
    store: cache.ExpirationCache

    class RewritingPolicy:
        def is_expired(self, entry: cache.TimestampedEntry) -> bool:
            if entry.obj["metadata"]["resourceVersion"] == "1":
                store.add(obj("a", rv="2"))  # a concurrent writer, simulated
                return True
            return False

    store = cache.ExpirationCache(policy=RewritingPolicy(), clock=clock)
    store.add(obj("a", rv="1"))
    assert store.get_by_key("ns/a") is None  # the entry it judged was expired
    got = store.get_by_key("ns/a")
    assert got is not None
    assert got["metadata"]["resourceVersion"] == "2"


def test_default_clock_is_monotonic() -> None:
    store = cache.TTLStore(ttl=3600.0)
    store.add(obj("a"))
    assert store.list_keys() == ["ns/a"]
