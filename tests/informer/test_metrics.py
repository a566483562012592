"""Tests for kubemirror.informer.metrics: one catalogue behind both Prometheus exporters."""

from __future__ import annotations

import pytest

from kubemirror import reflector
from kubemirror.informer import metrics

prometheus_client = pytest.importorskip("prometheus_client")


def test_the_push_exporter_exports_exactly_the_catalogue() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink: reflector.MetricsSink = metrics.PrometheusMetrics(registry, prefix="m")
    for name in metrics.MIRROR_COUNTERS:
        sink.inc(name, "pods", 2)
    for name in metrics.MIRROR_GAUGES:
        sink.set(name, "pods", 7)
    sink.inc("not_in_the_catalogue", "pods")
    exported = {family.name: family for family in registry.collect()}
    assert set(exported) == ({f"m_{name}" for name in metrics.MIRROR_COUNTERS}
                             | {f"m_{name}" for name in metrics.MIRROR_GAUGES})
    for name, text in metrics.MIRROR_COUNTERS.items():
        assert exported[f"m_{name}"].documentation == text
        assert registry.get_sample_value(f"m_{name}_total", {"resource": "pods"}) == 2
    for name in metrics.MIRROR_GAUGES:
        assert registry.get_sample_value(f"m_{name}", {"resource": "pods"}) == 7


def test_the_pull_families_share_the_catalogue_and_may_rename() -> None:
    core = metrics.import_prometheus().core
    families = metrics.counter_families(core, ("events", "drift_checks"), ["cluster"],
                                        exported={"events": "watch_events"})
    assert families["events"].name == "kubemirror_watch_events"
    assert families["events"].documentation == metrics.MIRROR_COUNTERS["events"] + "."
    assert families["drift_checks"].name == "kubemirror_drift_checks"
    with pytest.raises(KeyError):
        metrics.counter_families(core, ("undescribed",), ["cluster"])


def test_every_metric_the_mirrors_report_is_in_the_catalogue() -> None:
    """The names the reflector, the informer and drift monitors pass to their sink
    (``reflector.MetricsSink``'s list)."""
    reported = {"events", "lists", "relists", "errors", "malformed_events", "store_size",
                "queue_depth", "drift_checks", "drift_detected", "drift_objects",
                "drift_repairs", "drift_check_errors", "drift_missing", "drift_extra",
                "drift_stale"}
    assert reported <= set(metrics.MIRROR_COUNTERS) | set(metrics.MIRROR_GAUGES)
