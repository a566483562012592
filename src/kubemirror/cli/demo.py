"""``kubemirror demo``: an embedded cluster with a generated workload, mirrored live.

Part of the ``cli`` layer. ``DemoCluster`` runs a ``KubeApiServer`` over a
``MemoryStorage`` filled and churned by a ``Workload``, on its own thread and
event loop (so it behaves like a remote cluster, and kubectl gets answers while
the mirror is busy). ``run_demo`` mirrors its Pods over HTTP with a ``Watcher``
that indexes them by namespace and app, and shows what it measures: the
initial-sync progress, then change counts, store size, events per second and
write-to-mirror latency. On exit it stops the churn, waits for the mirror to
catch up and checks it against the server object by object.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kubemirror import informer, keys, lifecycle, listwatch, watcher
from kubemirror.cli import ui
from kubemirror.cli.mirror import (
    LatencyWindow,
    MirrorStats,
    ObservedListerWatcher,
    RateMeter,
    SyncProgress,
)
from kubemirror.cli.workload import WRITTEN_AT_ANNOTATION, Workload, WorkloadSpec
from kubemirror.client import config as client_config
from kubemirror.client import transport
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.stores import indexed_store
from kubemirror.testing import PODS
from kubemirror.types import WatchEvent

__all__ = [
    "DEMO_INDEX_BY",
    "DemoCluster",
    "DemoOptions",
    "DemoReport",
    "run_demo",
]

DEMO_INDEX_BY = ("metadata.namespace", "metadata.labels['app']")
"""The demo mirror's ``index_by``: ``store.get(ns)`` and ``store.get(ns, app)`` are lookups."""

_CATCH_UP_SECONDS = 10.0
_TOP_NAMESPACES = 8


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``kubemirror demo`` was asked for."""

    pods: int = 5000
    churn: float = 100.0
    port: int = 0
    host: str = "127.0.0.1"
    duration: float | None = None
    seed: int = 0
    write_kubeconfig: Path | None = None


class DemoCluster:
    """The embedded API server and its workload, on a thread with its own event loop.

    ``start()`` returns once the server listens (raising ``OSError`` if it cannot
    bind); the workload is then written (``wait_populated()``) and churned until
    ``stop_churn()`` or ``stop()``. The storage and the workload counters may be
    read from any thread. The thread is a ``lifecycle.ServiceThread``.
    """

    def __init__(self, spec: WorkloadSpec, host: str = "127.0.0.1", port: int = 0) -> None:
        self.spec = spec
        self.storage = MemoryStorage()
        self.server = KubeApiServer(self.storage, host, port, default_cluster=spec.cluster)
        self.workload = Workload(self.storage, spec)
        self.populate_seconds = 0.0
        self._thread = lifecycle.ServiceThread(self._serve, name="kubemirror-demo")
        self._churn_stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self._populated = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def populated(self) -> bool:
        return self._populated.is_set()

    def server_pod_count(self) -> int:
        return self.storage.resource_storage(PODS).count()

    def start(self) -> None:
        """Start the thread; returns once the server listens, or raises its error."""
        self._thread.start()
        self._listening.wait()
        if self._error is not None:
            raise self._error

    async def wait_populated(self) -> None:
        """Wait (without blocking the loop) until the workload is written."""
        await asyncio.to_thread(self._populated.wait)
        if self._error is not None:
            raise self._error

    async def _serve(self, stop: asyncio.Event) -> None:
        churn_stop = self._churn_stop = asyncio.Event()
        try:
            async with self.server:
                self._listening.set()
                started = time.perf_counter()
                self.workload.populate()
                self.populate_seconds = time.perf_counter() - started
                self._populated.set()
                churn = asyncio.ensure_future(self.workload.run(churn_stop))
                try:
                    await stop.wait()
                finally:
                    churn_stop.set()
                    await churn
        except Exception as exc:  # handed to start()/wait_populated()
            self._error = exc
        finally:
            self._listening.set()
            self._populated.set()

    def stop_churn(self) -> None:
        """Stop changing the workload (the server keeps serving)."""
        churn_stop = self._churn_stop
        if churn_stop is not None:
            self._thread.call_soon(churn_stop.set)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the churn and the server and join the thread."""
        self._thread.stop(timeout)


@dataclass(frozen=True, slots=True)
class DemoReport:
    """How the demo went: what was synced, mirrored, and whether it matched the server."""

    synced_count: int | None
    sync_seconds: float
    changes: int
    events: int
    seconds: float
    latency_p50: float | None
    latency_p99: float | None
    server_count: int
    store_count: int
    missing: int
    stale: int
    extra: int

    @property
    def matches(self) -> bool:
        return self.missing == 0 and self.stale == 0 and self.extra == 0

    def lines(self) -> list[str]:
        """The final summary, as printed."""
        if self.synced_count is None:
            return ["Stopped before the initial sync completed."]
        rate = self.synced_count / self.sync_seconds if self.sync_seconds > 0 else 0.0
        first = (
            f"Synced {self.synced_count:,} pods in {ui.fmt_seconds(self.sync_seconds)} "
            f"({ui.fmt_count(rate)} pods/s), then mirrored {self.events:,} watch events "
            f"({self.changes:,} changes) in {self.seconds:.1f} s "
            f"({ui.fmt_count(self.events / self.seconds if self.seconds else 0.0)} events/s"
        )
        if self.latency_p50 is not None:
            first += (
                f"; write→mirror latency p50 {ui.fmt_seconds(self.latency_p50)}, "
                f"p99 {ui.fmt_seconds(self.latency_p99)}"
            )
        first += ")."
        if self.matches:
            second = (
                f"The mirror matches the server: {self.store_count:,} of {self.server_count:,} "
                "pods at the same resourceVersion."
            )
        else:
            second = (
                f"The mirror DIFFERS from the server ({self.server_count:,} pods): "
                f"{self.missing:,} missing, {self.stale:,} stale, {self.extra:,} extra."
            )
        return [first, second]


class _DemoSession:
    """The mirror side of the demo: a ``Watcher`` over HTTP, its measurements, the screen."""

    def __init__(self, cluster: DemoCluster, options: DemoOptions) -> None:
        self.cluster = cluster
        self.options = options
        self.progress = SyncProgress()
        self.stats = MirrorStats()
        self.latency = LatencyWindow()
        self.events_meter = RateMeter()
        self.churn_meter = RateMeter()
        self.sync_bar = ui.SyncBar("pods")
        self.started = time.monotonic()
        self.client = transport.KubeClient(client_config.ClientConfig.for_server(cluster.url))
        source = ObservedListerWatcher(
            listwatch.ListWatch(self.client, PODS), self.progress, self._observe
        )
        config = watcher.WatcherConfig(
            gvr=PODS,
            index_by=list(DEMO_INDEX_BY),
            ignore_fields=list(informer.MIRROR_IGNORE_FIELDS),  # a third of a Pod's bytes
            on_change=self.stats.on_change,
            on_sync_complete=self._on_sync_complete,
        )
        self.watcher = watcher.Watcher(config, source)
        self._events_at_sync = 0
        self._synced_wall: float | None = None

    # -- measurements ---------------------------------------------------------------------

    def _observe(self, event: WatchEvent) -> None:
        """Latency of each write made after the initial sync (a deletion carries the last
        written state, so it has no write time of its own)."""
        if event["type"] == "DELETED" or self._synced_wall is None:
            return
        annotations = event["object"].get("metadata", {}).get("annotations")
        written = annotations.get(WRITTEN_AT_ANNOTATION) if annotations else None
        if written:
            with contextlib.suppress(ValueError):
                at = float(written)
                if at >= self._synced_wall:
                    self.latency.add(max(0.0, time.time() - at))

    async def _on_sync_complete(self, store: indexed_store.IndexedStore, count: int) -> None:
        self._events_at_sync = self.watcher.reflector.stats.events
        self._synced_wall = time.time()
        self.events_meter.sample(0)  # rates count from here
        await self.stats.on_sync_complete(store, count)

    @property
    def events(self) -> int:
        """Watch events applied to the mirror since the initial sync."""
        return self.watcher.reflector.stats.events - self._events_at_sync

    # -- screen ---------------------------------------------------------------------------

    def header(self) -> RenderableType:
        spec = self.cluster.spec
        url = self.cluster.url
        text = Text.assemble(
            ("Embedded Kubernetes API server ", "bold"),
            (url, "bold green"),
            "\n",
            f"{spec.pods:,} pods in {spec.namespaces} namespaces on {spec.nodes} nodes, "
            f"churn {ui.fmt_count(spec.churn)} writes/s\n",
            ("Try:  ", "bold"),
            (f"kubectl --server {url} get pods -A", "bold yellow"),
        )
        if self.options.write_kubeconfig is not None:
            text.append(f"\n      export KUBECONFIG={self.options.write_kubeconfig}", "yellow")
        return Panel(text, title="kubemirror demo", title_align="left", border_style="blue")

    def render(self) -> RenderableType:
        parts: list[RenderableType] = [self.header()]
        if not self.cluster.populated:
            count = self.cluster.workload.pod_count
            parts.append(
                Text(f"Generating the workload: {count:,} of {self.cluster.spec.pods:,} pods…")
            )
        else:
            self.sync_bar.update(self.progress, self.stats.synced_count)
            parts.append(self.sync_bar)
        if self.stats.synced:
            parts.append(self.stats_table())
            parts.append(self.namespace_table())
        parts.append(Text(ui.uptime_footer(self.started, self.options.duration), style="dim"))
        return Group(*parts)

    def stats_table(self) -> RenderableType:
        stats = self.stats
        store = self.watcher.store
        events_rate = self.events_meter.sample(self.events)
        churn_rate = self.churn_meter.sample(self.cluster.workload.stats.total)
        p50, p99 = self.latency.percentile(50), self.latency.percentile(99)
        reflector_stats = self.watcher.reflector.stats
        rows: list[tuple[str, RenderableType]] = [
            ("mirror", f"Watcher over HTTP, index_by {', '.join(DEMO_INDEX_BY)}"),
            (
                "store size",
                f"{store.size:,} pods (server: {self.cluster.server_pod_count():,})",
            ),
            (
                "changes since sync",
                f"[green]+{stats.created:,}[/]  [yellow]~{stats.modified:,}[/]  "
                f"[red]-{stats.deleted:,}[/]  in {stats.calls:,} on_change calls "
                f"(debounced {watcher.DEFAULT_DEBOUNCE_INTERVAL * 1000:.0f} ms)",
            ),
            ("watch events/s", f"[bold]{ui.fmt_count(events_rate)}[/] (last 3 s)"),
            (
                "write→mirror latency",
                f"p50 {ui.fmt_seconds(p50)}   p99 {ui.fmt_seconds(p99)}"
                f"   ({self.latency.count:,} events)",
            ),
            ("churn written", f"{ui.fmt_count(churn_rate)} writes/s (last 3 s)"),
            ("memory (RSS)", f"{ui.fmt_bytes(ui.rss_bytes())} (server + mirror, one process)"),
        ]
        if reflector_stats.relists or reflector_stats.errors:
            rows.append(
                (
                    "watch",
                    f"{reflector_stats.relists} relists, {reflector_stats.errors} errors "
                    f"{reflector_stats.last_error}",
                )
            )
        return ui.key_value_table(rows)

    def namespace_table(self) -> RenderableType:
        store = self.watcher.store
        namespaces = self.cluster.workload.namespaces
        started = time.perf_counter()
        buckets = {ns: store.get(ns) for ns in namespaces}
        lookup = time.perf_counter() - started
        table = Table(
            title=(
                f"Pods per namespace ({len(namespaces)} index lookups "
                f"in {ui.fmt_seconds(lookup)})"
            ),
            title_justify="left",
            title_style="bold",
            box=None,
            padding=(0, 2),
            header_style="bold",
        )
        for column in ("namespace", "pods", "running", "pending", "restarts"):
            table.add_column(column, justify="left" if column == "namespace" else "right")
        ranked = sorted(buckets.items(), key=lambda item: (-len(item[1]), item[0]))
        for ns, pods in ranked[:_TOP_NAMESPACES]:
            running = pending = restarts = 0
            for pod in pods:
                status: Mapping[str, Any] = pod.get("status") or {}
                phase = status.get("phase")
                running += phase == "Running"
                pending += phase == "Pending"
                for container in status.get("containerStatuses") or ():
                    restarts += int(container.get("restartCount") or 0)
            table.add_row(ns, f"{len(pods):,}", f"{running:,}", f"{pending:,}", f"{restarts:,}")
        if len(ranked) > _TOP_NAMESPACES:
            rest = sum(len(pods) for _, pods in ranked[_TOP_NAMESPACES:])
            table.add_row(f"({len(ranked) - _TOP_NAMESPACES} more)", f"{rest:,}", "", "", "")
        return table

    def plain(self) -> str | None:
        if not self.stats.synced:
            return f"listing pods: {self.progress.listed:,} so far"
        p99 = self.latency.percentile(99)
        return (
            f"mirror: {self.watcher.store.size:,} pods, +{self.stats.created:,} "
            f"~{self.stats.modified:,} -{self.stats.deleted:,} since sync, "
            f"{ui.fmt_count(self.events_meter.sample(self.events))} events/s, "
            f"p99 latency {ui.fmt_seconds(p99)}"
        )

    # -- end ------------------------------------------------------------------------------

    def compare(self) -> tuple[int, int, int]:
        """``(missing, stale, extra)`` of the mirror against the server, by resourceVersion."""
        result = self.cluster.storage.resource_storage(PODS).list()
        server = {
            entry.key: entry.object["metadata"]["resourceVersion"] for entry in result.entries
        }
        mirror = {
            keys.object_key(ref.namespace, ref.name): ref.resource_version
            for ref in self.watcher.store.refs()
        }
        missing = len(server.keys() - mirror.keys())
        extra = len(mirror.keys() - server.keys())
        stale = sum(1 for key in server.keys() & mirror.keys() if server[key] != mirror[key])
        return missing, stale, extra

    async def catch_up(self) -> tuple[int, int, int]:
        """Poll ``compare`` until it is clean or ``_CATCH_UP_SECONDS`` pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CATCH_UP_SECONDS
        while True:
            diff = self.compare()
            if diff == (0, 0, 0) or loop.time() > deadline:
                return diff
            await asyncio.sleep(0.05)

    def report(self, diff: tuple[int, int, int], seconds: float) -> DemoReport:
        missing, stale, extra = diff
        return DemoReport(
            synced_count=self.stats.synced_count,
            sync_seconds=self.progress.seconds,
            changes=self.stats.total,
            events=self.events,
            seconds=seconds,
            latency_p50=self.latency.percentile(50),
            latency_p99=self.latency.percentile(99),
            server_count=self.cluster.server_pod_count(),
            store_count=self.watcher.store.size,
            missing=missing,
            stale=stale,
            extra=extra,
        )


async def run_demo(options: DemoOptions, console: Console) -> DemoReport:
    """Run the demo until Ctrl-C, SIGTERM or ``options.duration``; returns the report
    (already printed). Raises ``OSError`` if the port cannot be bound.
    """
    spec = WorkloadSpec(pods=options.pods, churn=options.churn, seed=options.seed)
    cluster = DemoCluster(spec, options.host, options.port)
    await asyncio.to_thread(cluster.start)
    stop = asyncio.Event()
    ui.install_stop_handlers(stop)
    session = _DemoSession(cluster, options)
    timer = None
    if options.duration is not None:
        timer = asyncio.get_running_loop().call_later(options.duration, stop.set)
    if not console.is_terminal:
        console.print(f"Embedded Kubernetes API server at {cluster.url}", highlight=False)
        console.print(f"Try: kubectl --server {cluster.url} get pods -A", highlight=False)
    live = asyncio.ensure_future(ui.run_live(console, session.render, stop, plain=session.plain))
    mirror_started = time.monotonic()
    try:
        await lifecycle.run_until_stopped(cluster.wait_populated(), stop)
        if options.write_kubeconfig is not None and not stop.is_set():
            cluster.server.write_kubeconfig(options.write_kubeconfig)
            if not console.is_terminal:
                console.print(f"export KUBECONFIG={options.write_kubeconfig}", highlight=False)
        if not stop.is_set():
            session.watcher.start()
            await lifecycle.run_until_stopped(session.watcher.wait_for_sync(), stop)
            if session.stats.synced_at is not None:
                mirror_started = session.stats.synced_at
                if not console.is_terminal:
                    console.print(
                        f"synced {session.stats.synced_count:,} pods in "
                        f"{ui.fmt_seconds(session.progress.seconds)}",
                        highlight=False,
                    )
        await stop.wait()
        await live
        seconds = time.monotonic() - mirror_started
        diff = (0, 0, 0)
        if session.stats.synced:
            cluster.stop_churn()
            with console.status("Stopping the churn; waiting for the mirror to catch up…"):
                diff = await session.catch_up()
        report = session.report(diff, seconds)
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        await asyncio.gather(live, return_exceptions=True)
        await session.watcher.stop()
        await session.client.close()
        await asyncio.to_thread(cluster.stop)
        if options.write_kubeconfig is not None:
            with contextlib.suppress(OSError):
                options.write_kubeconfig.unlink()
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)
    return report

