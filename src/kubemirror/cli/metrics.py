"""Prometheus metrics of ``kubemirror serve``, read from the live objects at scrape time.

Part of the ``cli`` layer: the pull route of the metrics whose names, help texts
and import live in ``informer.metrics`` (whose ``PrometheusMetrics`` is the push
route of library users). Needs the optional ``prometheus_client`` package
(``pip install 'kubemirror[metrics]'``): ``load_prometheus`` says so clearly
when it is missing. ``MirrorCollector`` adds nothing to the event path: on each
scrape it reads the storage sizes, each reflector's ``ReflectorStats``, each
member's ``MemberHealth`` (up, staleness) and each feed's ``DriftMonitor`` (the
last drift check); ``metrics_handler`` serves them as the API server's ``/metrics``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any, TypeVar

from aiohttp import web

from kubemirror import drift, errors, reflector
from kubemirror.informer import metrics as mirror_metrics
from kubemirror.multicluster import server
from kubemirror.multicluster.storage_api import Storage
from kubemirror.multicluster.synchro import MemberHealth
from kubemirror.types import GroupVersionResource

__all__ = ["DriftMonitors", "MirrorCollector", "Prometheus", "load_prometheus",
           "metrics_handler"]

Feeds = Callable[[], Mapping[tuple[str, GroupVersionResource], reflector.Reflector]]
Health = Callable[[], Mapping[str, MemberHealth]]
_T = TypeVar("_T")
DriftMonitors = Callable[[], Mapping[tuple[str, GroupVersionResource], drift.DriftMonitor]]


class Prometheus:
    """The parts of ``prometheus_client`` used here, loaded on demand."""

    def __init__(self, client: ModuleType, core: ModuleType) -> None:
        self.client = client
        self.core = core

    @property
    def content_type(self) -> str:
        return str(self.client.CONTENT_TYPE_LATEST)

    def registry(self, collector: MirrorCollector) -> Any:
        registry = self.client.CollectorRegistry(auto_describe=False)
        registry.register(collector)
        self.client.ProcessCollector(registry=registry)
        return registry

    def render(self, registry: Any) -> bytes:
        data: bytes = self.client.generate_latest(registry)
        return data


def load_prometheus() -> Prometheus:
    """Import ``prometheus_client`` (``informer.metrics.import_prometheus``); raises
    ``CommandError`` with the install command."""
    try:
        client = mirror_metrics.import_prometheus()
    except errors.ConfigError as exc:
        raise errors.CommandError(
            "the /metrics endpoint needs the prometheus_client package, which is not installed",
            "Install it with pip install 'kubemirror[metrics]', or pass --no-metrics",
        ) from exc
    return Prometheus(client, importlib.import_module("prometheus_client.core"))


def metrics_handler(prometheus: Prometheus, collector: MirrorCollector) -> server.Handler:
    """The ``/metrics`` handler (for ``KubeApiServer(extra_routes=...)``): ``collector``'s
    metrics and the process's, in Prometheus text format, read at each scrape."""
    registry = prometheus.registry(collector)

    async def metrics(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=prometheus.render(registry))
        response.headers["Content-Type"] = prometheus.content_type
        return response

    return metrics


class MirrorCollector:
    """A Prometheus collector over a storage and the reflectors feeding it.

    ``feeds()`` returns the current ``{(cluster, gvr): Reflector}``; ``ready()``
    whether every cluster has synced; ``health()`` (optional) ``{cluster:
    MemberHealth}``, for the ``kubemirror_member_*`` metrics: ``up`` (0 while a
    member fails), ``stale_seconds`` (how long it has been failing: the mirror's
    data of it may be that old), ``last_success_timestamp_seconds`` (the last time
    it was known in sync: now while it is up) and ``failures_total``; ``drift()``
    (optional) ``{(cluster, gvr): DriftMonitor}``, for ``kubemirror_drift_objects``
    (by ``kind``: missing, extra, stale; from the last check),
    ``kubemirror_drift_checks_total``, ``kubemirror_drift_detected_total`` (checks
    that found drift) and ``kubemirror_drift_repairs_total``. Called from the
    scraping request only.
    """

    def __init__(
        self,
        prometheus: Prometheus,
        storage: Storage,
        feeds: Feeds,
        ready: Callable[[], bool],
        *,
        health: Health | None = None,
        drift: DriftMonitors | None = None,
    ) -> None:
        self.prometheus = prometheus
        self.storage = storage
        self.feeds = feeds
        self.ready = ready
        self.health = health
        self.drift = drift

    def collect(self) -> Iterator[Any]:
        core = self.prometheus.core
        labels = ["cluster", "resource"]
        objects = core.GaugeMetricFamily(
            "kubemirror_objects", "Objects stored, by cluster and resource.", labels=labels
        )
        for rs in self.storage.resource_storages():
            for cluster in rs.clusters():
                objects.add_metric([cluster, str(rs.gvr)], rs.count(cluster))
        yield objects
        watchers = core.GaugeMetricFamily(
            "kubemirror_api_watches", "Open WATCH requests, by resource.", labels=["resource"]
        )
        for rs in self.storage.resource_storages():
            if rs.watcher_count:
                watchers.add_metric([str(rs.gvr)], rs.watcher_count)
        yield watchers
        yield core.GaugeMetricFamily(
            "kubemirror_storage_index",
            "The storage-wide event counter (the newest resourceVersion index).",
            value=self.storage.index,
        )
        yield core.GaugeMetricFamily(
            "kubemirror_ready", "1 once every cluster has synced.", value=int(self.ready())
        )
        synced = core.GaugeMetricFamily(
            "kubemirror_synced", "1 once the initial list was stored.", labels=labels
        )
        counters = mirror_metrics.counter_families(
            core, ("events", "lists", "relists", "errors", "malformed_events"), labels,
            exported={"events": "watch_events"})
        for key, feed in _by_cluster_and_resource(self.feeds()):
            stats = feed.stats
            synced.add_metric(key, int(feed.has_synced()))
            _add_samples(counters, key, events=stats.events, lists=stats.lists,
                         relists=stats.relists, errors=stats.errors,
                         malformed_events=stats.malformed_events)
        yield synced
        yield from counters.values()
        if self.health is not None:
            yield from self._member_metrics(self.health())
        if self.drift is not None:
            yield from self._drift_metrics(self.drift())

    def _drift_metrics(
        self, monitors: Mapping[tuple[str, GroupVersionResource], drift.DriftMonitor]
    ) -> Iterator[Any]:
        core = self.prometheus.core
        labels = ["cluster", "resource"]
        objects = core.GaugeMetricFamily(
            "kubemirror_drift_objects",
            "Objects that differ between the mirror and the member (last drift check).",
            labels=[*labels, "kind"],
        )
        counters = mirror_metrics.counter_families(
            core, ("drift_checks", "drift_detected", "drift_repairs", "drift_check_errors"),
            labels)
        for key, monitor in _by_cluster_and_resource(monitors):
            last = monitor.last_report
            if last is not None:
                for kind, entries in (("missing", last.missing), ("extra", last.extra),
                                      ("stale", last.stale)):
                    objects.add_metric([*key, kind], len(entries))
            _add_samples(counters, key, drift_checks=monitor.checks,
                         drift_detected=monitor.drifts, drift_repairs=monitor.repairs,
                         drift_check_errors=monitor.failures)
        yield objects
        yield from counters.values()

    def _member_metrics(self, health: Mapping[str, MemberHealth]) -> Iterator[Any]:
        core = self.prometheus.core
        labels = ["cluster"]
        up = core.GaugeMetricFamily(
            "kubemirror_member_up",
            "1 while the member cluster answers its reflectors, 0 while they fail.",
            labels=labels,
        )
        stale = core.GaugeMetricFamily(
            "kubemirror_member_stale_seconds",
            "Seconds the member cluster has been failing (0 while it answers).",
            labels=labels,
        )
        last = core.GaugeMetricFamily(
            "kubemirror_member_last_success_timestamp_seconds",
            "Unix time the member cluster was last known in sync (now while it answers).",
            labels=labels,
        )
        failures = core.CounterMetricFamily(
            "kubemirror_member_failures",
            "Failed lists, watches and watch streams of the member cluster.",
            labels=labels,
        )
        now = time.time()
        for cluster, member in sorted(health.items()):
            up.add_metric([cluster], int(member.up))
            stale.add_metric([cluster], member.down_for())
            if member.up and member.last_success is not None:
                last.add_metric([cluster], now)
            elif member.last_success is not None:
                last.add_metric([cluster], member.last_success)
            failures.add_metric([cluster], member.failures)
        yield up
        yield stale
        yield last
        yield failures


def _by_cluster_and_resource(
    items: Mapping[tuple[str, GroupVersionResource], _T]
) -> Iterator[tuple[list[str], _T]]:
    """``(["cluster", "resource"] label values, item)``, in a stable order."""
    for (cluster, gvr), item in sorted(items.items(), key=lambda kv: str(kv[0])):
        yield [cluster, str(gvr)], item


def _add_samples(families: Mapping[str, Any], labels: list[str], **values: float) -> None:
    """One sample per family named in ``values``, all with the same label values."""
    for name, value in values.items():
        families[name].add_metric(labels, value)
