"""Drift: whether a mirror still equals the collection it mirrors, checked against a LIST.

The ``drift`` layer, between ``informer`` and ``reflector``: the seam both mirrors
(``SharedInformer``, ``Watcher``) share. A mirror's snapshot ``{key:
resourceVersion}`` taken at its last-synced resourceVersion is compared with a LIST
from the server. Where the server can list *at that version*
(``resourceVersionMatch=Exact``: kube-apiserver within its compaction window,
kubemirror's own server within its event window) the comparison is exact; else a
fresh LIST is compared with an allowance for events still in flight. ``compare``
is the pure comparison; ``list_versions`` does the I/O; ``DriftMonitor`` runs a
check periodically, logs, counts (``MetricsSink``), calls back and may repair.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from kubemirror import errors, reflector
from kubemirror.listwatch import Lister, ListOptions
from kubemirror.types import KeyFunc

__all__ = [
    "DriftEntry",
    "DriftMonitor",
    "DriftReport",
    "OnDrift",
    "ServerVersions",
    "compare",
    "list_versions",
    "version_order",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriftEntry:
    """One object that differs: its key and both versions (``""`` where it is absent)."""

    key: str
    mirror_version: str
    server_version: str


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The outcome of one drift check (immutable; entries sorted by key).

    * ``missing``: on the server, not in the mirror (a missed ADDED, or a lost object).
    * ``extra``: in the mirror, not on the server (a missed delete).
    * ``stale``: in both, at different resourceVersions (a missed update).
    * ``exact``: the server listed at ``mirror_version`` itself, so every
      difference is drift. Otherwise ``server_version`` is newer, and differences
      that events after ``mirror_version`` may explain are counted in
      ``in_flight``, not reported.
    * ``checked``: objects the server listed.
    """

    name: str
    mirror_version: str
    server_version: str
    exact: bool
    missing: tuple[DriftEntry, ...] = ()
    extra: tuple[DriftEntry, ...] = ()
    stale: tuple[DriftEntry, ...] = ()
    in_flight: int = 0
    checked: int = 0

    @property
    def drifted(self) -> bool:
        """True when at least one object differs."""
        return bool(self.missing or self.extra or self.stale)

    @property
    def count(self) -> int:
        """How many objects differ."""
        return len(self.missing) + len(self.extra) + len(self.stale)

    def keys(self) -> list[str]:
        """The keys of every object that differs, sorted."""
        return sorted(e.key for e in (*self.missing, *self.extra, *self.stale))

    def __str__(self) -> str:
        how = "exact" if self.exact else f"fresh list at {self.server_version}"
        parts = []
        for label, entries in (("missing", self.missing), ("extra", self.extra),
                               ("stale", self.stale)):
            if entries:
                shown = ", ".join(e.key for e in entries[:5])
                more = f", +{len(entries) - 5}" if len(entries) > 5 else ""
                parts.append(f"{len(entries)} {label} ({shown}{more})")
        found = "; ".join(parts) or "no drift"
        return (f"{self.name}: {found} among {self.checked} objects at resourceVersion "
                f"{self.mirror_version or '-'} ({how})")


def version_order(resource_version: str) -> int | None:
    """An integer ordering resourceVersions of one server, or ``None`` if unknown.

    etcd revisions (kube-apiserver) are integers; kubemirror's served API writes
    ``<prefix>.<index>[.<member rv>]`` and is ordered by ``index``. Versions are
    opaque to clients by contract; this is used only to allow for in-flight events.
    """
    if resource_version.isdigit():
        return int(resource_version)
    parts = resource_version.split(".")
    if len(parts) in (2, 3) and parts[1].isdigit():
        return int(parts[1])
    return None


def compare(
    mirror: Mapping[str, str],
    server: Mapping[str, str],
    *,
    mirror_version: str = "",
    server_version: str = "",
    exact: bool = True,
    name: str = "",
) -> DriftReport:
    """Compare a mirror's ``{key: resourceVersion}`` with the server's (pure).

    ``exact``: ``server`` was listed at ``mirror_version`` (every difference is
    drift). Otherwise ``server`` was listed later, at ``server_version``: a
    missing or stale object whose server version is newer than
    ``mirror_version`` may be on its way, and so may any delete when
    ``server_version`` is newer than ``mirror_version``; those count as
    ``in_flight``. Unordered versions (see ``version_order``) get no allowance.
    """
    since = version_order(mirror_version) if not exact else None
    listed_later = False
    if since is not None:
        listed = version_order(server_version)
        listed_later = listed is None or listed > since

    def may_be_in_flight(server_rv: str) -> bool:
        if since is None:
            return False
        order = version_order(server_rv)
        return order is None or order > since

    missing: list[DriftEntry] = []
    stale: list[DriftEntry] = []
    extra: list[DriftEntry] = []
    in_flight = 0
    for key, server_rv in server.items():
        mirror_rv = mirror.get(key)
        if mirror_rv == server_rv:
            continue
        if may_be_in_flight(server_rv):
            in_flight += 1
        elif mirror_rv is None:
            missing.append(DriftEntry(key, "", server_rv))
        else:
            stale.append(DriftEntry(key, mirror_rv, server_rv))
    for key, mirror_rv in mirror.items():
        if key in server:
            continue
        if listed_later:
            in_flight += 1
        else:
            extra.append(DriftEntry(key, mirror_rv, ""))

    def by_key(entries: list[DriftEntry]) -> tuple[DriftEntry, ...]:
        return tuple(sorted(entries, key=lambda e: e.key))

    return DriftReport(
        name=name, mirror_version=mirror_version,
        server_version=server_version, exact=exact,
        missing=by_key(missing), extra=by_key(extra), stale=by_key(stale),
        in_flight=in_flight, checked=len(server),
    )


@dataclass(frozen=True, slots=True)
class ServerVersions:
    """What ``list_versions`` got: ``{key: resourceVersion}``, the list's version, and
    whether it was listed exactly at the version asked for."""

    versions: dict[str, str]
    resource_version: str
    exact: bool


async def list_versions(
    lw: Lister, key_func: KeyFunc, resource_version: str, *, page_size: int = 500
) -> ServerVersions:
    """LIST the collection at ``resource_version`` (``Exact``), else its current state.

    A server that has compacted the version (410) or does not support ``Exact``
    (400/422) is asked for a fresh consistent LIST instead. Items without a
    usable key are skipped (logged). Raises ``ApiError``/``TransportError`` for
    other failures. Pages of ``page_size`` at one version.
    """
    if resource_version:
        try:
            versions, _ = await _list_all(lw, key_func, ListOptions(
                resource_version=resource_version, resource_version_match="Exact",
                limit=page_size))
            return ServerVersions(versions, resource_version, True)
        except (errors.GoneError, errors.BadRequestError, errors.InvalidError) as exc:
            log.debug("no LIST at resourceVersion %s (%s); listing the current state",
                      resource_version, exc)
    versions, listed = await _list_all(lw, key_func, ListOptions(limit=page_size))
    return ServerVersions(versions, listed, False)


async def _list_all(
    lw: Lister, key_func: KeyFunc, opts: ListOptions
) -> tuple[dict[str, str], str]:
    versions: dict[str, str] = {}
    while True:
        page = await lw.list(opts)
        for obj in page.items:
            try:
                key = key_func(obj)
                rv = obj["metadata"]["resourceVersion"]
            except (errors.KubemirrorError, KeyError, TypeError) as exc:
                log.warning("drift check: skipping a listed item without key or version: %s",
                            exc)
                continue
            versions[key] = str(rv)
        if not page.continue_token:
            return versions, page.resource_version
        # The token carries the version: servers refuse a resourceVersion beside it.
        opts = dataclasses.replace(opts, continue_token=page.continue_token,
                                   resource_version="", resource_version_match="")


OnDrift: TypeAlias = Callable[[DriftReport], "Awaitable[None] | None"]
"""``on_drift(report)``: called when a check finds drift; plain or coroutine function."""


class DriftMonitor:
    """Runs ``check`` every ``every`` seconds, on the loop of whoever awaits ``run()``.

    Each report is kept in ``last_report``; drift is logged (a warning when it
    differs from the previous check's, else at debug level), counted
    through ``metrics`` (counters ``drift_checks``, ``drift_detected`` (checks
    that found drift), ``drift_objects``, ``drift_repairs``,
    ``drift_check_errors``; gauges ``drift_missing``, ``drift_extra``,
    ``drift_stale``, all labelled ``name``), handed to
    ``on_drift`` (plain callbacks run on the loop; exceptions are logged), and,
    with ``repair``, repaired by calling it (a reflector's ``request_relist``).
    A failing check is logged and counted; the next period retries. ``run``
    never returns; cancel it. Not thread-safe (one loop).
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[DriftReport]],
        every: float,
        *,
        name: str,
        on_drift: OnDrift | None = None,
        repair: Callable[[], None] | None = None,
        metrics: reflector.MetricsSink | None = None,
    ) -> None:
        if every <= 0:
            raise errors.ConfigError("must be > 0 seconds", field="check_drift_every",
                                     expression=str(every))
        self.check = check
        self.every = every
        self.name = name
        self.on_drift = on_drift
        self.repair = repair
        self.metrics = metrics
        self.last_report: DriftReport | None = None
        self.checks = 0
        self.drifts = 0
        self.repairs = 0
        self.failures = 0

    async def run(self) -> None:
        """Check every ``every`` seconds, forever."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check_once()
            except Exception as exc:
                self.failures += 1
                self._inc("drift_check_errors")
                log.warning("%s: drift check failed: %s", self.name, exc)

    async def check_once(self) -> DriftReport:
        """One check, with everything a periodic one does; returns the report."""
        report = await self.check()
        self.checks += 1
        self._inc("drift_checks")
        metrics = self.metrics
        if metrics is not None:
            metrics.set("drift_missing", self.name, len(report.missing))
            metrics.set("drift_extra", self.name, len(report.extra))
            metrics.set("drift_stale", self.name, len(report.stale))
        previous, self.last_report = self.last_report, report
        if not report.drifted:
            return report
        self.drifts += 1
        self._inc("drift_detected")
        self._inc("drift_objects", report.count)
        same = previous is not None and _differences(previous) == _differences(report)
        log.log(logging.DEBUG if same else logging.WARNING, "drift: %s%s", report,
                "; relisting" if self.repair else "")
        if self.on_drift is not None:
            try:
                result: Any = self.on_drift(report)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s: on_drift failed", self.name)
        if self.repair is not None:
            self.repairs += 1
            self._inc("drift_repairs")
            self.repair()
        return report

    def _inc(self, metric: str, amount: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.inc(metric, self.name, amount)


def _differences(report: DriftReport) -> tuple[tuple[DriftEntry, ...], ...]:
    return report.missing, report.extra, report.stale
