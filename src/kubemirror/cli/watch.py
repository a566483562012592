"""``kubemirror watch``: mirror one resource of a real cluster and report its changes.

Part of the ``cli`` layer. Everything that can be wrong with the request is
found before the watch starts, and reported as one line with the fix: selectors
and field paths are parsed locally, then the kubeconfig is loaded, discovery
resolves the resource name, and one LIST of a single object checks
reachability, credentials and server-side validation (a WATCH opened and closed
at once checks the right to watch). Then a ``Watcher`` mirrors the collection
and its debounced ``on_change`` reports are shown: a live screen on a terminal,
text lines otherwise, JSON lines with ``-o json``. With ``--check-drift`` the
mirror is compared with the server periodically and drift is reported the same
way (and relisted with ``--repair-drift``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kubemirror import drift, errors, listing, listwatch, paths, selectors, watcher
from kubemirror.cli import failures, ui
from kubemirror.cli.mirror import MirrorStats, ObservedListerWatcher, RateMeter, SyncProgress
from kubemirror.client import config as client_config
from kubemirror.client import discovery, transport
from kubemirror.stores import indexed_store

__all__ = ["WatchOptions", "WatchTarget", "resolve_target", "run_watch"]

_TOP_KEYS = 10
_RECENT = 6
_KEYS_REFRESH = 1.0


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """What ``kubemirror watch`` was asked for (see the command's help)."""

    resource: str
    namespace: str | None = None
    all_namespaces: bool = False
    label_selector: str = ""
    field_selector: str = ""
    index_by: tuple[str, ...] = ()
    ignore_fields: tuple[str, ...] = ()
    context: str | None = None
    kubeconfig: str | None = None
    server: str | None = None
    json: bool = False
    debounce: float = 1.0
    duration: float | None = None
    check_drift: float = 0.0
    repair_drift: bool = False


@dataclass(frozen=True, slots=True)
class WatchTarget:
    """A checked request: the resolved resource, its scope and the compiled paths."""

    resource: discovery.ApiResource
    namespace: str | None
    label_selector: str
    field_selector: str
    index_by: tuple[str, ...]
    ignore_fields: tuple[str, ...]

    @property
    def scope(self) -> str:
        if not self.resource.namespaced:
            return "cluster-scoped"
        return f"namespace {self.namespace}" if self.namespace else "all namespaces"


def check_locally(options: WatchOptions) -> None:
    """Parse selectors and compile field paths; raises ``ConfigError`` subclasses."""
    selectors.LabelSelector.parse(options.label_selector)
    selectors.FieldSelector.parse(options.field_selector)
    paths.compile_all(list(options.index_by), "--index-by")
    paths.compile_all(list(options.ignore_fields), "--ignore-field")
    if options.repair_drift and not options.check_drift:
        raise errors.CommandError("--repair-drift needs --check-drift",
                                  "Add --check-drift SECONDS (e.g. --check-drift 60)")


async def load_client_config(
    kubeconfig: str | None, context: str | None
) -> client_config.ClientConfig:
    """kubeconfig (explicit, ``$KUBECONFIG`` or the home one), else in-cluster credentials."""
    try:
        if kubeconfig is not None or context is not None:
            return await client_config.load_kube_config(kubeconfig, context=context)
        return await client_config.load_config()
    except errors.ConfigError as exc:
        if exc.field == "in-cluster":
            raise errors.CommandError(
                "no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a cluster",
                "Pass --kubeconfig PATH or set KUBECONFIG (or try `kubemirror demo`)",
            ) from exc
        raise


async def resolve_target(
    client: transport.KubeClient, options: WatchOptions
) -> WatchTarget:
    """Resolve the resource name and scope, and check the request with a one-object LIST
    and a WATCH opened and closed at once (list and watch are separate RBAC verbs).

    Raises ``CommandError`` (naming the server) for every problem found.
    """
    server = client.config.server
    try:
        resource = await discovery.Discovery(client).resolve(options.resource)
        if "list" not in resource.verbs or "watch" not in resource.verbs:
            raise errors.CommandError(
                f"{resource.gvr} cannot be listed and watched (verbs: "
                f"{', '.join(resource.verbs) or 'none'})",
                "Pick a resource that supports list and watch (kubectl api-resources -o wide)",
            )
        namespace: str | None = None
        if resource.namespaced and not options.all_namespaces:
            namespace = options.namespace or client.config.namespace
        index_by = options.index_by or (
            ("metadata.namespace",) if resource.namespaced else ("metadata.name",)
        )
        target = WatchTarget(
            resource=resource,
            namespace=namespace,
            label_selector=options.label_selector,
            field_selector=options.field_selector,
            index_by=index_by,
            ignore_fields=options.ignore_fields,
        )
        page = await client.list(
            resource.gvr,
            namespace,
            listing.ListOptions(
                label_selector=options.label_selector,
                field_selector=options.field_selector,
                limit=1,
            ),
        )
        # Permission to list is not permission to watch (RBAC grants verbs one by
        # one): open the watch once too, else a 403 would only be retried forever.
        stream = await client.watch(
            resource.gvr,
            namespace,
            listing.ListOptions(
                label_selector=options.label_selector,
                field_selector=options.field_selector,
                resource_version=page.resource_version,
                timeout_seconds=1,
            ),
        )
        await stream.aclose()
    except errors.KubemirrorError as exc:
        explained = failures.explain(exc, server=server)
        if explained is None:
            raise
        raise explained from exc
    return target


class _WatchSession:
    """One mirror and its reporting (screen, text lines or JSON lines)."""

    def __init__(
        self,
        client: transport.KubeClient,
        target: WatchTarget,
        options: WatchOptions,
        console: Console,
    ) -> None:
        self.client = client
        self.target = target
        self.options = options
        self.console = console
        self.progress = SyncProgress()
        self.stats = MirrorStats()
        self.events_meter = RateMeter()
        self.what = target.resource.gvr.resource
        group = target.resource.gvr.group
        self.title = f"{self.what}.{group}" if group else self.what
        self.sync_bar = ui.SyncBar(self.what)
        self.recent: collections.deque[str] = collections.deque(maxlen=_RECENT)
        self.started = time.monotonic()
        self._keys_cache: tuple[float, list[tuple[str, int]], int] | None = None
        source = ObservedListerWatcher(
            listwatch.ListWatch(
                client,
                target.resource.gvr,
                target.namespace,
                label_selector=target.label_selector,
                field_selector=target.field_selector,
            ),
            self.progress,
        )
        config = watcher.WatcherConfig(
            gvr=target.resource.gvr,
            index_by=list(target.index_by),
            ignore_fields=list(target.ignore_fields),
            debounce_interval=options.debounce,
            on_change=self.on_change,
            on_sync_complete=self.on_sync_complete,
            check_drift_every=options.check_drift,
            on_drift=self.on_drift,
            repair_drift=options.repair_drift,
        )
        self.watcher = watcher.Watcher(config, source)

    # -- reports --------------------------------------------------------------------------

    def emit(self, record: dict[str, Any]) -> None:
        """One JSON line on stdout, flushed."""
        record["time"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        sys.stdout.write(orjson.dumps(record).decode() + "\n")
        sys.stdout.flush()

    async def on_sync_complete(self, store: indexed_store.IndexedStore, count: int) -> None:
        await self.stats.on_sync_complete(store, count)
        seconds = self.progress.seconds
        if self.options.json:
            self.emit(
                {
                    "type": "synced",
                    "resource": str(self.target.resource.gvr),
                    "count": count,
                    "seconds": round(seconds, 6),
                }
            )
        elif not self.console.is_terminal:
            self.console.print(
                f"synced {count:,} {self.what} in {ui.fmt_seconds(seconds)}", highlight=False
            )

    async def on_change(
        self, store: indexed_store.IndexedStore, stats: watcher.ChangeStats
    ) -> None:
        await self.stats.on_change(store, stats)
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        line = (
            f"{stamp}  +{stats.created:,} ~{stats.modified:,} -{stats.deleted:,}  "
            f"({store.size:,} {self.what})"
        )
        if self.options.json:
            self.emit(
                {
                    "type": "change",
                    "created": stats.created,
                    "modified": stats.modified,
                    "deleted": stats.deleted,
                    "size": store.size,
                }
            )
        elif self.console.is_terminal:
            self.recent.appendleft(line)
        else:
            self.console.print(line, highlight=False)

    async def on_drift(self, report: drift.DriftReport) -> None:
        if self.options.json:
            self.emit(
                {
                    "type": "drift",
                    "resource_version": report.mirror_version,
                    "exact": report.exact,
                    "checked": report.checked,
                    **{kind: [dataclasses.asdict(e) for e in entries] for kind, entries in (
                        ("missing", report.missing), ("extra", report.extra),
                        ("stale", report.stale))},
                    "repairing": self.options.repair_drift,
                }
            )
            return
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        line = f"{stamp}  drift: {report}" + ("; relisting" if self.options.repair_drift else "")
        if self.console.is_terminal:
            self.recent.appendleft(line)
        else:
            self.console.print(line, highlight=False, soft_wrap=True)

    def drift_row(self) -> str:
        monitor = self.watcher.drift_monitor
        if monitor is None:
            return ""
        last = monitor.last_report
        latest = "not checked yet" if last is None else (
            f"last: {last.count} drifted of {last.checked}" if last.drifted
            else f"last: none of {last.checked}")
        return (f"{monitor.checks} checks every {ui.fmt_seconds(monitor.every)}, "
                f"{monitor.drifts} found drift, {monitor.repairs} repairs ({latest})")

    # -- screen ---------------------------------------------------------------------------

    def header(self) -> RenderableType:
        target = self.target
        config = self.client.config
        lines = Text.assemble(
            ("Mirroring ", "bold"),
            (self.title, "bold green"),
            f" ({target.scope})",
            "\n",
            f"cluster {config.server}",
            f" (context {config.context_name})" if config.context_name else "",
        )
        extras = []
        if target.label_selector:
            extras.append(f"selector {target.label_selector}")
        if target.field_selector:
            extras.append(f"field selector {target.field_selector}")
        extras.append(f"index_by {', '.join(target.index_by)}")
        if target.ignore_fields:
            extras.append(f"ignoring {', '.join(target.ignore_fields)}")
        lines.append("\n" + "; ".join(extras))
        return Panel(lines, title="kubemirror watch", title_align="left", border_style="blue")

    def top_keys(self) -> tuple[list[tuple[str, int]], int]:
        """The most common index keys and the number of distinct keys (recomputed each second)."""
        now = time.monotonic()
        cached = self._keys_cache
        if cached is not None and now - cached[0] < _KEYS_REFRESH:
            return cached[1], cached[2]
        counts = collections.Counter(" / ".join(ref.keys) for ref in self.watcher.store.refs())
        top = counts.most_common(_TOP_KEYS)
        self._keys_cache = (now, top, len(counts))
        return top, len(counts)

    def render(self) -> RenderableType:
        parts: list[RenderableType] = [self.header()]
        self.sync_bar.update(self.progress, self.stats.synced_count)
        parts.append(self.sync_bar)
        if self.stats.synced:
            stats = self.stats
            reflector_stats = self.watcher.reflector.stats
            rate = self.events_meter.sample(reflector_stats.events)
            rows: list[tuple[str, RenderableType]] = [
                ("store size", f"{self.watcher.store.size:,} {self.what}"),
                (
                    "changes since sync",
                    f"[green]+{stats.created:,}[/]  [yellow]~{stats.modified:,}[/]  "
                    f"[red]-{stats.deleted:,}[/]  in {stats.calls:,} on_change calls "
                    f"(debounced {ui.fmt_seconds(self.options.debounce)})",
                ),
                ("watch events/s", f"[bold]{ui.fmt_count(rate)}[/] (last 3 s)"),
                (
                    "watch",
                    f"{reflector_stats.watches} watches, {reflector_stats.relists} relists, "
                    f"{reflector_stats.errors} errors"
                    + (f" (last: {reflector_stats.last_error})" if reflector_stats.errors else ""),
                ),
                ("memory (RSS)", ui.fmt_bytes(ui.rss_bytes())),
            ]
            if self.watcher.drift_monitor is not None:
                rows.append(("drift", self.drift_row()))
            parts.append(ui.key_value_table(rows))
            top, distinct = self.top_keys()
            if top:
                table = Table(
                    title=f"Index keys ({distinct:,} distinct)",
                    title_justify="left",
                    title_style="bold",
                    box=None,
                    padding=(0, 2),
                    header_style="bold",
                )
                table.add_column(" / ".join(self.target.index_by))
                table.add_column(self.what, justify="right")
                for key, count in top:
                    table.add_row(key or '""', f"{count:,}")
                parts.append(table)
            if self.recent:
                parts.append(Text("Recent changes", style="bold"))
                parts.extend(Text(line) for line in self.recent)
        parts.append(Text(ui.uptime_footer(self.started, self.options.duration), style="dim"))
        return Group(*parts)

    def summary(self) -> str:
        stats = self.stats
        if stats.synced_count is None:
            return (
                f"Stopped before the initial sync completed ({self.progress.listed:,} "
                f"{self.what} listed)."
            )
        took = ui.fmt_seconds(self.progress.seconds)
        return (
            f"Synced {stats.synced_count:,} {self.what} in {took}; "
            f"then +{stats.created:,} ~{stats.modified:,} -{stats.deleted:,}; "
            f"store holds {self.watcher.store.size:,} {self.what}."
        )


async def run_watch(options: WatchOptions, console: Console) -> int:
    """Run ``kubemirror watch`` until Ctrl-C, SIGTERM or ``options.duration``; returns 0.

    Raises ``CommandError`` (or an error ``failures.explain`` knows) before the
    watch starts if the request cannot work.
    """
    check_locally(options)
    if options.server is not None:
        if options.kubeconfig is not None or options.context is not None:
            raise errors.CommandError(
                "--server cannot be combined with --kubeconfig or --context",
                "Use either a kubeconfig (and context) or a bare --server URL",
            )
        config = client_config.ClientConfig.for_server(options.server)
    else:
        config = await load_client_config(options.kubeconfig, options.context)
    async with transport.KubeClient(config) as client:
        target = await resolve_target(client, options)
        session = _WatchSession(client, target, options, console)
        stop = asyncio.Event()
        ui.install_stop_handlers(stop)
        timer = None
        if options.duration is not None:
            timer = asyncio.get_running_loop().call_later(options.duration, stop.set)
        session.watcher.start()
        try:
            if options.json:
                await stop.wait()
            else:
                await ui.run_live(console, session.render, stop)
        finally:
            if timer is not None:
                timer.cancel()
            await session.watcher.stop()
        if options.json:
            session.emit(
                {
                    "type": "stopped",
                    "synced": session.stats.synced_count,
                    "created": session.stats.created,
                    "modified": session.stats.modified,
                    "deleted": session.stats.deleted,
                    "size": session.watcher.store.size,
                    **drift_counts(session.watcher.drift_monitor),
                }
            )
        else:
            console.print(session.summary(), highlight=False, soft_wrap=True)
    return 0


def drift_counts(monitor: drift.DriftMonitor | None) -> dict[str, int]:
    """The drift figures of the final JSON record (none without ``--check-drift``)."""
    if monitor is None:
        return {}
    return {"drift_checks": monitor.checks, "drifts": monitor.drifts,
            "drift_repairs": monitor.repairs}
