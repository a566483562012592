"""Watcher, SingleWatcher, their configs, ChangeStats and the Debouncer.

The sans-I/O parts (configs, ChangeStats, Debouncer) are tested directly, the
debouncer on a fake clock. Watchers run against kubemirror's own API server over
real HTTP on 127.0.0.1 (the ``kube_api_server`` fixture) through ``KubeClient``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from kubemirror import errors, selectors, watcher
from kubemirror.stores import CachedStore, IndexedStore, MemoryStore
from kubemirror.types import GroupVersionResource, Obj
from kubemirror.watcher import (
    ChangeStats,
    Debouncer,
    SingleWatcherConfig,
    StoreType,
    WatcherConfig,
)
from tests.stores.support import FakeClock

PODS = GroupVersionResource("", "v1", "pods")


def noop(store: IndexedStore, stats: ChangeStats) -> None:
    """An on_change that does nothing."""


# -- ChangeStats ---------------------------------------------------------------------------


def test_change_stats_total_empty_and_sum() -> None:
    a = ChangeStats(created=2, modified=1)
    b = ChangeStats(deleted=3, is_initial_sync=True)
    assert a.total == 3
    assert not a.is_empty
    assert ChangeStats().is_empty
    assert a + b == ChangeStats(2, 1, 3, True)
    assert a + ChangeStats() == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.created = 5  # type: ignore[misc]  # frozen: the assignment under test must fail


# -- Debouncer -----------------------------------------------------------------------------


def test_debouncer_leading_edge_then_refractory_batch() -> None:
    clock = FakeClock()
    d = Debouncer(1.0, clock)
    assert d.deadline() is None
    assert d.pop_due() is None
    d.record(ChangeStats(created=1))
    assert d.deadline() == clock.now()  # quiet so far: due at once
    assert d.pop_due() == ChangeStats(created=1)
    d.record(ChangeStats(modified=1))
    clock.advance(0.3)
    d.record(ChangeStats(modified=2))
    assert d.pop_due() is None  # within the refractory period
    assert d.deadline() == pytest.approx(clock.now() + 0.7)
    clock.advance(0.7)
    assert d.pop_due() == ChangeStats(modified=3)
    assert d.pop_due() is None
    clock.advance(5)
    d.record(ChangeStats(deleted=1))
    assert d.pop_due() == ChangeStats(deleted=1)  # quiet again: at once


def test_debouncer_flush_and_empty_stats() -> None:
    clock = FakeClock()
    d = Debouncer(10.0, clock)
    d.record(ChangeStats())
    assert d.pending is None
    d.record(ChangeStats(created=1))
    d.pop_due()
    d.record(ChangeStats(created=4))
    assert d.pop_due() is None
    assert d.flush() == ChangeStats(created=4)
    assert d.flush() is None


def test_debouncer_rejects_negative_interval() -> None:
    with pytest.raises(errors.ConfigError) as info:
        Debouncer(-1.0)
    assert info.value.field == "debounce_interval"


@given(
    st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.integers(1, 5)), min_size=1, max_size=40
    ),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_debouncer_spacing_and_no_loss(events: list[tuple[float, int]], interval: float) -> None:
    """A driver polling at every event and deadline: calls are >= interval apart, and
    every recorded change is reported exactly once (the trailing call included)."""
    clock = FakeClock(0.0)
    d = Debouncer(interval, clock)
    fired: list[tuple[float, int]] = []

    def poll() -> None:
        stats = d.pop_due()
        if stats is not None:
            fired.append((clock.now(), stats.created))

    def run_until(t: float) -> None:
        """Fire every batch that falls due up to time ``t``, as a driver would."""
        while (deadline := d.deadline()) is not None and deadline <= t:
            clock.t = max(clock.t, deadline)
            poll()
        clock.t = t

    for gap, count in events:
        run_until(clock.t + gap)
        d.record(ChangeStats(created=count))
        poll()
    if (last := d.deadline()) is not None:
        run_until(last)
    assert sum(n for _, n in fired) == sum(n for _, n in events)
    times = [t for t, _ in fired]
    assert all(b - a >= interval - 1e-9 for a, b in zip(times, times[1:], strict=False))


# -- configuration -------------------------------------------------------------------------


def config(**kw: Any) -> WatcherConfig:
    base: dict[str, Any] = {"gvr": PODS, "index_by": ["metadata.namespace"], "on_change": noop}
    base.update(kw)
    return WatcherConfig(**base)


def test_defaults() -> None:
    c = config()
    c.set_defaults()
    c.validate()
    assert c.debounce_interval == watcher.DEFAULT_DEBOUNCE_INTERVAL == 0.1
    assert c.cache_ttl == watcher.DEFAULT_CACHE_TTL
    assert c.store_type is StoreType.MEMORY
    assert c.call_on_change_during_sync is False
    assert c.watch_namespace() == ""
    explicit = config(debounce_interval=0.0, cache_ttl=5.0, store_type="cached")
    explicit.set_defaults()
    explicit.validate()
    assert explicit.debounce_interval == 0.0
    assert explicit.store_type is StoreType.CACHED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gvr": None}, "gvr"),
        ({"gvr": GroupVersionResource("", "v1", "")}, "gvr.resource"),
        ({"gvr": GroupVersionResource("", "", "pods")}, "gvr.version"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
        ({"index_by": []}, "index_by"),
        ({"index_by": "metadata.name"}, "index_by"),
        ({"index_by": ["metadata.name", "metadata[labels"]}, "index_by[1]"),
        ({"ignore_fields": ["metadata..x"]}, "ignore_fields[0]"),
        ({"label_selector": "app in (a"}, "label_selector"),
        ({"label_selector": {"matchExpressions": [{"key": "a", "operator": "Bad"}]}},
         "label_selector"),
        ({"label_selector": 42}, "label_selector"),
        ({"store_type": "disk"}, "store_type"),
        ({"cache_ttl": 0}, "cache_ttl"),
        ({"cache_ttl": "1m"}, "cache_ttl"),
        ({"cache_max_size": 0}, "cache_max_size"),
        ({"debounce_interval": -1}, "debounce_interval"),
        ({"on_change": None}, "on_change"),
        ({"on_change": "not callable"}, "on_change"),
        ({"on_sync_complete": 3}, "on_sync_complete"),
        ({"call_on_change_during_sync": "yes"}, "call_on_change_during_sync"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)) if isinstance(v, dict)
    else str(v),
)
def test_validate_names_the_field(changes: dict[str, Any], field: str) -> None:
    c = config(**changes)
    c.set_defaults()
    with pytest.raises(errors.ConfigError) as info:
        c.validate()
    assert info.value.field is not None
    assert info.value.field.startswith(field)


def test_bad_index_path_error_quotes_expression_and_position() -> None:
    c = config(index_by=["metadata.labels['x"])
    c.set_defaults()
    with pytest.raises(errors.FieldPathError) as info:
        c.validate()
    assert info.value.expression == "metadata.labels['x"
    assert info.value.position is not None


def test_label_selector_forms() -> None:
    for form in ("app=web,tier!=db", {"matchLabels": {"app": "web"},
                                       "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                             "values": ["db"]}]},
                 selectors.LabelSelector.parse("app=web,tier notin (db)")):
        sel = config(label_selector=form).selector()
        assert sel.matches({"app": "web", "tier": "fe"})
        assert not sel.matches({"app": "web", "tier": "db"})
    assert config().selector().matches({})


def test_namespaced_watch_reads_the_service_account_file(tmp_path: Path) -> None:
    path = tmp_path / "namespace"
    path.write_text("team-a\n")
    c = config(namespace="ignored", namespaced_watch=True, namespace_file=path)
    c.set_defaults()
    c.validate()
    assert c.watch_namespace() == "team-a"
    missing = config(namespaced_watch=True, namespace_file=tmp_path / "absent")
    missing.set_defaults()
    with pytest.raises(errors.ConfigError, match="absent") as info:
        missing.validate()
    assert info.value.field == "namespaced_watch"
    assert config(namespaced_watch=False).watch_namespace() == ""


def test_default_namespace_file_is_the_service_account_mount() -> None:
    assert config().namespace_file == (
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gvr": None}, "gvr"),
        ({"namespace": ""}, "namespace"),
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"on_change": None}, "on_change"),
        ({"on_sync_complete": "x"}, "on_sync_complete"),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else str(v),
)
def test_single_config_validate(changes: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "gvr": PODS, "namespace": "default", "name": "cfg", "on_change": print,
    }
    base.update(changes)
    c = SingleWatcherConfig(**base)
    c.set_defaults()
    with pytest.raises(errors.ConfigError) as info:
        c.validate()
    assert info.value.field == field
