"""Tests for kubemirror.drift: the pure comparison (hypothesis properties and tables), and
drift checks of a ``SharedInformer`` and a ``Watcher`` against the project's own API
server over real HTTP.

Drift is made two ways: by writing into a synced mirror's store behind its back, and by
losing a watch event. A real server never loses an event on demand, so the lost event
comes from ``tests.faultproxy``, which holds the informer's watch back while the object
changes on the server and then swallows that one line; the stream goes on, so the
mirror's resourceVersion moves past the change it never saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import drift, errors
from kubemirror.client import ClientConfig, KubeClient
from kubemirror.drift import DriftEntry, DriftReport
from kubemirror.informer import STORE_COMPACT, PrometheusMetrics, SharedInformer
from kubemirror.listwatch import ListWatch
from kubemirror.reflector import Backoff
from kubemirror.stores import indexed_store
from kubemirror.testing import PODS, make_pod
from kubemirror.watcher import ChangeStats, Watcher, WatcherConfig
from tests.polling import eventually
from tests.proxied_server import Env, create, proxied_env

# -- the pure comparison ----------------------------------------------------------------------

KEYS = st.sampled_from([f"ns/o{i}" for i in range(12)])
VERSIONS = st.integers(min_value=1, max_value=40).map(str)
SNAPSHOTS = st.dictionaries(KEYS, VERSIONS, max_size=12)


@given(mirror=SNAPSHOTS, server=SNAPSHOTS)
def test_exact_report_is_exactly_the_difference(mirror: dict[str, str],
                                                server: dict[str, str]) -> None:
    report = drift.compare(mirror, server, mirror_version="50", server_version="50")
    assert {e.key for e in report.missing} == server.keys() - mirror.keys()
    assert {e.key for e in report.extra} == mirror.keys() - server.keys()
    assert {e.key for e in report.stale} == {
        k for k in mirror.keys() & server.keys() if mirror[k] != server[k]}
    assert report.in_flight == 0
    assert report.checked == len(server)
    assert report.drifted == (mirror != server)
    for entry in (*report.missing, *report.extra, *report.stale):
        assert entry.mirror_version == mirror.get(entry.key, "")
        assert entry.server_version == server.get(entry.key, "")
    # Applying the report to the mirror gives the server's state.
    repaired = {k: v for k, v in mirror.items() if k not in {e.key for e in report.extra}}
    repaired.update({e.key: e.server_version for e in (*report.missing, *report.stale)})
    assert repaired == server


@given(mirror=SNAPSHOTS, server=SNAPSHOTS,
       since=st.integers(min_value=0, max_value=40), later=st.integers(min_value=0, max_value=5))
def test_fresh_list_allows_only_what_may_be_in_flight(
    mirror: dict[str, str], server: dict[str, str], since: int, later: int
) -> None:
    exact = drift.compare(mirror, server)
    report = drift.compare(mirror, server, mirror_version=str(since),
                           server_version=str(since + later), exact=False)
    assert not report.exact
    assert report.count + report.in_flight == exact.count
    assert set(report.keys()) <= set(exact.keys())
    # What is reported cannot be explained by events after the mirror's version.
    for entry in (*report.missing, *report.stale):
        assert int(entry.server_version) <= since
    if later:
        assert report.extra == ()  # any of those deletes may be on its way
    else:
        assert report.extra == exact.extra


@pytest.mark.parametrize(
    ("rv", "order"),
    [("123", 123), ("0a1b2c3d.42", 42), ("0a1b2c3d.42.17", 42), ("", None), ("abc", None),
     ("x.y", None)],
    ids=["etcd", "served-list", "served-object", "empty", "opaque", "opaque-dotted"],
)
def test_version_order(rv: str, order: int | None) -> None:
    assert drift.version_order(rv) == order


def test_report_says_what_differs() -> None:
    report = drift.compare({"ns/a": "1", "ns/b": "2"}, {"ns/b": "3", "ns/c": "4"},
                           mirror_version="5", server_version="5", name="pods")
    assert report.missing == (DriftEntry("ns/c", "", "4"),)
    assert report.extra == (DriftEntry("ns/a", "1", ""),)
    assert report.stale == (DriftEntry("ns/b", "2", "3"),)
    assert report.keys() == ["ns/a", "ns/b", "ns/c"]
    assert str(report) == ("pods: 1 missing (ns/c); 1 extra (ns/a); 1 stale (ns/b) among 2 "
                           "objects at resourceVersion 5 (exact)")


def test_monitor_refuses_a_bad_period() -> None:
    async def check() -> DriftReport:
        raise AssertionError("not called")

    with pytest.raises(errors.ConfigError, match="check_drift_every"):
        drift.DriftMonitor(check, 0, name="pods")


# -- against the project's own server ------------------------------------------------------------


@pytest_asyncio.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with proxied_env(getattr(request, "param", 100_000)) as made:
        yield made


async def touch(env: Env, name: str, value: str) -> str:
    """Change a label of ``name`` on the server; returns its new resourceVersion."""
    obj = await env.writer.get(PODS, name, "default")
    obj["metadata"].setdefault("labels", {})["touched"] = value
    return str((await env.writer.replace(PODS, obj, "default"))["metadata"]["resourceVersion"])


def informer(env: Env, **kwargs: Any) -> SharedInformer:
    return SharedInformer(ListWatch(env.client, PODS, "default"),
                          backoff=Backoff(initial=0.005, cap=0.05), **kwargs)


def behind_the_back(kind: str, indexer: Any) -> str:
    """Make the indexer wrong without the informer knowing; returns the key made wrong."""
    if kind == "missing":
        indexer.delete(indexer.get_by_key("default/p2"))
        return "default/p2"
    if kind == "extra":
        indexer.add(make_pod("ghost"))
        return "default/ghost"
    old = indexer.get_by_key("default/p2")
    indexer.update({**old, "metadata": {**old["metadata"], "resourceVersion": "stale"}})
    return "default/p2"


@pytest.mark.parametrize("kind", ["missing", "extra", "stale"])
async def test_informer_check_drift_reports_exactly_the_key_changed_behind_its_back(
    env: Env, kind: str
) -> None:
    await create(env, *(f"p{i}" for i in range(5)))
    async with informer(env, page_size=2) as inf:  # the check lists in pages too
        assert await inf.wait_for_sync(10)
        clean = await inf.check_drift()
        assert not clean.drifted
        assert clean.exact
        assert clean.checked == 5
        key = behind_the_back(kind, inf.get_indexer())
        report = await inf.check_drift()
    assert report.exact
    assert report.keys() == [key]
    assert len(getattr(report, kind)) == 1


async def test_compact_informer_check_drift(env: Env) -> None:
    await create(env, "a", "b", "c")
    async with informer(env, store=STORE_COMPACT) as inf:
        assert await inf.wait_for_sync(10)
        assert not (await inf.check_drift()).drifted
        gone = inf.get_indexer().get_by_key("default/b")
        assert gone is not None
        inf.get_indexer().delete(gone)
        report = await inf.check_drift()
    assert report.keys() == ["default/b"]
    assert report.missing[0].mirror_version == ""


async def test_thread_facade_check_drift(env: Env) -> None:
    """From a plain script's thread (the server runs on this loop)."""
    await create(env, "a", "b")
    own_client = KubeClient(ClientConfig(env.server.url))
    inf = SharedInformer(ListWatch(own_client, PODS, "default"))

    def plain_script() -> tuple[DriftReport, DriftReport]:
        with inf.start_in_thread(closing=[own_client]) as handle:
            assert handle.wait_for_sync(10)
            clean = handle.check_drift(10)
            handle.indexer.add(make_pod("ghost"))
            return clean, handle.check_drift(10)

    clean, report = await asyncio.to_thread(plain_script)
    assert not clean.drifted
    assert [e.key for e in report.extra] == ["default/ghost"]


@pytest.mark.parametrize(
    ("env", "exact"), [(100_000, True), (1, False)], indirect=["env"],
    ids=["listed-at-the-mirrors-version", "window-passed-fresh-list"],
)
async def test_a_change_held_back_is_in_flight_not_drift(env: Env, exact: bool) -> None:
    """With the changes still in the server's event window, it lists at the mirror's
    version; once they left it (a window of one event), a fresh list is compared and the
    change counts as in flight."""
    await create(env, "a", "b")
    async with informer(env) as inf:
        assert await inf.wait_for_sync(10)
        env.proxy.pause_watches()
        await touch(env, "a", "1")
        await touch(env, "a", "2")
        report = await inf.check_drift()
        env.proxy.resume_watches()
    assert report.exact is exact
    assert not report.drifted
    assert report.in_flight == (0 if exact else 1)


def lost_update_of(name: str) -> Any:
    return lambda line: b'"MODIFIED"' in line and f'"name":"{name}"'.encode() in line


async def test_periodic_check_reports_a_lost_update_then_repairs_it(env: Env) -> None:
    await create(env, "a", "b")
    reports: list[DriftReport] = []
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    async with informer(env, check_drift_every=0.05, on_drift=reports.append,
                        repair_drift=True, metrics=metrics) as inf:
        assert await inf.wait_for_sync(10)
        env.proxy.swallow.append(lost_update_of("a"))
        env.proxy.pause_watches()
        new_rv = await touch(env, "a", "lost")
        env.proxy.resume_watches()
        await create(env, "c")  # the mirror's version moves past the lost change
        await eventually(lambda: bool(reports), what="a drift report")
        first = reports[0]
        assert first.exact
        assert first.stale == (DriftEntry("default/a", first.stale[0].mirror_version, new_rv),)
        assert first.missing == ()
        assert first.extra == ()
        # The repair relists: the mirror gets the change and later checks are clean.
        await eventually(lambda: _rv(inf, "default/a") == new_rv, what="repaired by relist")
        monitor = inf.drift_monitor
        assert monitor is not None
        checks = monitor.checks
        await eventually(lambda: monitor.checks > checks + 1, what="two more checks")
        assert monitor.last_report is not None
        assert not monitor.last_report.drifted
        assert monitor.repairs == 1 == len(reports)
        assert inf.reflector.stats.relists >= 1
    assert len(env.proxy.stats.swallowed) == 1
    assert _sample(registry, "kubemirror_drift_objects_total", inf.name) == 1
    assert _sample(registry, "kubemirror_drift_repairs_total", inf.name) == 1
    assert _sample(registry, "kubemirror_drift_stale", inf.name) == 0
    assert _sample(registry, "kubemirror_drift_checks_total", inf.name) == monitor.checks


def _rv(inf: SharedInformer, key: str) -> str | None:
    obj = inf.get_indexer().get_by_key(key)
    return None if obj is None else str(obj["metadata"]["resourceVersion"])


def _sample(registry: prometheus_client.CollectorRegistry, name: str, resource: str) -> float:
    value = registry.get_sample_value(name, {"resource": resource})
    assert value is not None, name
    return float(value)


# -- the Watcher ---------------------------------------------------------------------------------


def watcher_config(**kwargs: Any) -> WatcherConfig:
    async def on_change(store: indexed_store.IndexedStore, stats: ChangeStats) -> None:
        pass

    return WatcherConfig(gvr=PODS, namespace="default", index_by=["metadata.name"],
                         on_change=on_change, **kwargs)


async def test_watcher_check_drift_reports_an_object_removed_behind_its_back(env: Env) -> None:
    await create(env, "a", "b", "c")
    watcher = Watcher(watcher_config(), env.client)
    async with watcher:
        await asyncio.wait_for(watcher.wait_for_sync(), 10)
        assert not (await watcher.check_drift()).drifted
        assert watcher.store.delete_by_name("default", "b")
        report = await watcher.check_drift()
    assert report.exact
    assert report.keys() == ["default/b"]
    assert report.missing[0].mirror_version == ""


async def test_watcher_periodic_check_repairs_a_lost_delete(env: Env) -> None:
    await create(env, "a", "b")
    reports: list[DriftReport] = []

    async def on_drift(report: DriftReport) -> None:
        reports.append(report)

    watcher = Watcher(watcher_config(check_drift_every=0.05, on_drift=on_drift,
                                     repair_drift=True), env.client)
    async with watcher:
        await asyncio.wait_for(watcher.wait_for_sync(), 10)
        env.proxy.swallow.append(lambda line: b'"DELETED"' in line)
        await env.writer.delete(PODS, "b", "default")
        await create(env, "c")
        await eventually(lambda: bool(reports), what="a drift report")
        assert reports[0].extra[0].key == "default/b"
        await eventually(lambda: watcher.store.ref("default", "b") is None,
                         what="the lost delete repaired")
    assert [e.key for e in reports[0].extra] == ["default/b"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("check_drift_every", -1), ("on_drift", "log"), ("repair_drift", "yes")],
    ids=["negative-period", "uncallable-callback", "non-bool-repair"],
)
def test_watcher_config_names_a_bad_drift_field(field: str, value: Any) -> None:
    config = watcher_config(**{field: value})
    config.set_defaults()
    with pytest.raises(errors.ConfigError, match=field):
        config.validate()
