"""Prometheus export of a mirror's metrics: one catalogue, one import, two ways to feed it.

The ``informer`` layer (client-go keeps its informer metrics beside the informer).
``MIRROR_COUNTERS``/``MIRROR_GAUGES`` name and describe every metric a mirror
reports through a ``reflector.MetricsSink``; ``import_prometheus`` loads the
optional ``prometheus-client`` (``kubemirror[metrics]``) with one error naming
the extra. ``PrometheusMetrics`` is the push route (the sink counts as events
happen); ``counter_families`` builds the same metrics for a collector read at
scrape time (``cli.metrics.MirrorCollector``, the pull route of ``serve``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from kubemirror import errors

__all__ = ["MIRROR_COUNTERS", "MIRROR_GAUGES", "PrometheusMetrics", "counter_families",
           "import_prometheus"]

MIRROR_COUNTERS: dict[str, str] = {
    "events": "Watch events applied",
    "lists": "Full LISTs (initial and relists)",
    "relists": "Relists after an expired resourceVersion",
    "errors": "List/watch/handler errors",
    "malformed_events": "Malformed watch lines skipped",
    "drift_checks": "Drift checks completed",
    "drift_detected": "Drift checks that found drift",
    "drift_objects": "Objects found drifted, summed over checks",
    "drift_repairs": "Relists to repair drift",
    "drift_check_errors": "Drift checks that failed",
}
"""Counters of a mirror (``<prefix>_<name>_total``), name -> help text."""

MIRROR_GAUGES: dict[str, str] = {
    "store_size": "Objects in the informer's store",
    "queue_depth": "Keys waiting in the DeltaFIFO",
    "drift_missing": "Objects on the server missing from the mirror (last check)",
    "drift_extra": "Objects in the mirror deleted on the server (last check)",
    "drift_stale": "Objects at another version in the mirror (last check)",
}
"""Gauges of a mirror (``<prefix>_<name>``), name -> help text."""


def import_prometheus() -> ModuleType:
    """Import ``prometheus_client`` (and its ``core``); raises ``ConfigError`` naming the
    ``kubemirror[metrics]`` extra when it is not installed."""
    try:
        client = importlib.import_module("prometheus_client")
        importlib.import_module("prometheus_client.core")
    except ImportError as exc:
        raise errors.ConfigError(
            "Prometheus metrics need the prometheus-client package "
            "(pip install 'kubemirror[metrics]')", field="metrics"
        ) from exc
    return client


def counter_families(core: ModuleType, names: Iterable[str], labels: Sequence[str], *,
                     prefix: str = "kubemirror", exported: Mapping[str, str] | None = None
                     ) -> dict[str, Any]:
    """``{name: CounterMetricFamily}`` for a collector read at scrape time, each described
    by ``MIRROR_COUNTERS`` (``KeyError`` for a name it does not describe) and exported as
    ``<prefix>_<exported.get(name, name)>_total``."""
    rename = exported or {}
    return {name: core.CounterMetricFamily(f"{prefix}_{rename.get(name, name)}",
                                           f"{MIRROR_COUNTERS[name]}.", labels=list(labels))
            for name in names}


class PrometheusMetrics:
    """A ``reflector.MetricsSink`` exporting Prometheus counters and gauges.

    Needs the optional ``prometheus-client`` package (``kubemirror[metrics]``).
    One counter ``<prefix>_<name>_total`` per ``MIRROR_COUNTERS`` entry (events,
    lists, relists, errors, malformed events, the drift checks') and one gauge
    ``<prefix>_<name>`` per ``MIRROR_GAUGES`` entry (store size, queue depth, the
    objects found drifted by the last check), all labelled by ``resource``;
    metrics outside the catalogue are ignored. Thread-safe (prometheus-client is).
    """

    def __init__(self, registry: Any = None, prefix: str = "kubemirror") -> None:
        prometheus_client = import_prometheus()
        kwargs: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self._counters = {
            name: prometheus_client.Counter(f"{prefix}_{name}", doc, ["resource"], **kwargs)
            for name, doc in MIRROR_COUNTERS.items()
        }
        self._gauges = {
            name: prometheus_client.Gauge(f"{prefix}_{name}", doc, ["resource"], **kwargs)
            for name, doc in MIRROR_GAUGES.items()
        }

    def inc(self, metric: str, resource: str, amount: int = 1) -> None:
        counter = self._counters.get(metric)
        if counter is not None:
            counter.labels(resource).inc(amount)

    def set(self, metric: str, resource: str, value: float) -> None:
        gauge = self._gauges.get(metric)
        if gauge is not None:
            gauge.labels(resource).set(value)
