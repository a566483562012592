"""``kubemirror serve``: member clusters mirrored into memory behind one Kubernetes API.

Part of the ``cli`` layer; its configuration (``ServeFlags`` → ``ServeConfig``, the
security checks) is ``serve_config``. ``run_serve``
resolves every resource on every cluster first (a bad name, an unreachable
cluster or bad credentials stop it with one line), then a ``ClusterSynchro``
keeps a ``MemoryStorage`` equal to the clusters while a ``KubeApiServer``
serves it, read-only by default, with ``/readyz`` answering 200 only once
every (cluster, resource) has synced and no member has been unreachable for
more than ``unready_after`` seconds (``sync_readiness``), and ``/metrics`` in
Prometheus format (``metrics.metrics_handler``), member staleness and drift
(``--check-drift``: each feed compared with a LIST of its member) included.
A member's retries are logged as one line each ("cluster eu: connection
refused to https://...; retrying in 6.4 s", ``RetryLog``). With ``--read-write``
writes go to the member that owns the object (``MemberWriteForwarder``) and are
answered once the mirror holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping

from rich.console import Console

from kubemirror import errors, listing, listwatch, reflector
from kubemirror.cache.raw_object import PartialDecoder
from kubemirror.cli import failures, ui
from kubemirror.cli.metrics import (
    DriftMonitors,
    MirrorCollector,
    load_prometheus,
    metrics_handler,
)
from kubemirror.cli.serve_config import (
    DEFAULT_UNREADY_AFTER,
    ClusterSpec,
    ServeConfig,
    ServeFlags,
    check_security,
    load_serve_config,
)
from kubemirror.cli.watch import load_client_config
from kubemirror.client import discovery, transport
from kubemirror.multicluster.forward import MemberWriteForwarder
from kubemirror.multicluster.resources import ALL_VERBS, READ_VERBS, ResourceInfo
from kubemirror.multicluster.server import KubeApiServer, Readiness
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.multicluster.storage_api import ClusterStoreApi, Storage
from kubemirror.multicluster.synchro import ClusterSynchro, MemberHealth, Runnable
from kubemirror.types import GroupVersionResource

__all__ = [
    "RetryLog",
    "describe_failure",
    "run_serve",
    "sync_readiness",
    "unreachable_members",
]

def open_storage(location: str) -> Storage:
    """The storage ``location`` names (not started): a ``MemoryStorage`` or, for a
    PostgreSQL URL, a ``PostgresStorage`` (``CommandError`` without the extra)."""
    if location == "memory":
        return MemoryStorage()
    try:
        from kubemirror.multicluster.postgres import PostgresStorage
    except ImportError as exc:
        raise errors.CommandError(
            "--storage postgresql:// needs the PostgreSQL driver",
            "pip install 'kubemirror[postgres]'",
        ) from exc
    return PostgresStorage(location)


def sync_readiness(
    waiting: Callable[[], list[str]], unready: Callable[[], list[str]] | None = None
) -> Readiness:
    """The ``/readyz`` check of the mirror: ``waiting()`` lists what is still syncing,
    ``unready()`` (optional) the reasons members make the mirror stale.

    Ready (200 ``ok``) when both lists are empty, else 503 with the reasons
    (``cluster eu: unreachable for 47 s: connection refused``) or what still syncs.
    """

    def check() -> tuple[bool, str]:
        reasons = unready() if unready is not None else []
        if reasons:
            return False, "; ".join(reasons)
        still = waiting()
        if still:
            return False, f"not ready: syncing {', '.join(still)}"
        return True, "ok"

    return check


def _public_url(server: str) -> str:
    """``server`` without any user information (``user:password@``)."""
    parts = urllib.parse.urlsplit(server)
    if "@" not in parts.netloc:
        return server
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _lower_first(text: str) -> str:
    """``Connection refused`` -> ``connection refused`` (``TLS error`` stays)."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def describe_failure(exc: BaseException, server: str | None = None) -> str:
    """One line, without secrets, saying why a member failed: ``connection refused to URL``,
    ``answered 403: ...``. ``server`` (the member's URL) is named for connection errors."""
    if isinstance(exc, errors.TransportError | OSError | TimeoutError):
        text = _lower_first(failures.cause_text(exc))
        if server:
            text = f"{text} to {_public_url(server)}"
    elif isinstance(exc, errors.UnauthorizedError) and exc.code == 401:
        text = "the credentials were rejected (401 Unauthorized)"
    elif isinstance(exc, errors.ApiError):
        message = exc.status.get("message") or exc.reason or "error"
        text = f"answered {exc.code}: {message}"
    else:
        explained = failures.explain(exc)
        text = str(explained) if explained is not None else f"{type(exc).__name__}: {exc}"
    text = failures.one_line(text)
    return text if len(text) <= 300 else text[:297] + "..."


def unreachable_members(
    health: Mapping[str, MemberHealth], threshold: float
) -> list[str]:
    """``cluster eu: unreachable for 47 s: connection refused`` for every member failing
    for more than ``threshold`` seconds (``failing for`` when it answers with errors)."""
    out = []
    for cluster, member in sorted(health.items()):
        down_for = member.down_for()
        error = member.last_error
        if error is None or down_for <= threshold:
            continue
        word = "failing" if isinstance(error, errors.ApiError) else "unreachable"
        out.append(f"cluster {cluster}: {word} for {down_for:.0f} s: {describe_failure(error)}")
    return out


class _PeekBackoff(reflector.Backoff):
    """A ``Backoff`` whose next delay can be read before it is taken (for the retry line)."""

    __slots__ = ("_peeked",)

    def __init__(self) -> None:
        super().__init__()
        self._peeked: float | None = None

    def peek(self) -> float:
        """The delay the next ``next()`` returns."""
        if self._peeked is None:
            self._peeked = super().next()
        return self._peeked

    def next(self) -> float:
        peeked, self._peeked = self._peeked, None
        return peeked if peeked is not None else super().next()

    def reset(self) -> None:
        self._peeked = None
        super().reset()


class RetryLog(logging.Filter):
    """Turns the reflectors' retry warnings into one line per member failure.

    Installed on the ``kubemirror.reflector`` logger: a record ``"<cluster>/<resource>:
    <error> ...; retrying"`` of a feed in ``feeds`` is replaced by
    ``emit("cluster eu: connection refused to https://...; retrying in 6.4 s")``
    (the error worded by ``describe_failure``, never an exception's repr); the same
    line for the same cluster is not repeated within ``quiet`` seconds. Other
    records pass unchanged.
    """

    def __init__(
        self,
        feeds: Mapping[str, tuple[str, reflector.Reflector]],
        servers: Mapping[str, str],
        emit: Callable[[str], None],
        *,
        quiet: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.feeds = feeds
        self.servers = servers
        self.emit = emit
        self.quiet = quiet
        self.clock = clock
        self._last: dict[str, tuple[str, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.levelno < logging.WARNING or not isinstance(args, tuple) or len(args) < 2:
            return True
        name, exc = args[0], args[1]
        if not isinstance(exc, BaseException) or not isinstance(name, str):
            return True
        found = self.feeds.get(name)
        if found is None:
            return True
        cluster, feed = found
        text = describe_failure(exc, self.servers.get(cluster))
        now = self.clock()
        last = self._last.get(cluster)
        if last is not None and last[0] == text and now - last[1] < self.quiet:
            return False
        self._last[cluster] = (text, now)
        line = f"cluster {cluster}: {text}"
        backoff = feed.backoff
        if "retrying" in str(record.msg) and isinstance(backoff, _PeekBackoff):
            line += f"; retrying in {_seconds(backoff.peek())}"
        self.emit(line)
        return False


def _seconds(delay: float) -> str:
    return f"{delay:.1f} s" if delay < 10 else f"{delay:.0f} s"


class _Mirror:
    """Member clusters' clients, resolved resources and the reflectors the synchro made."""

    def __init__(self) -> None:
        self.clients: dict[str, transport.KubeClient] = {}
        self.servers: dict[str, str] = {}
        self.resources: dict[str, list[ResourceInfo]] = {}
        self.feeds: dict[tuple[str, GroupVersionResource], reflector.Reflector] = {}
        self.by_name: dict[str, tuple[str, reflector.Reflector]] = {}
        self.health: Mapping[str, MemberHealth] = {}
        self.drift_monitors: DriftMonitors = dict
        self._pending: dict[str, tuple[str, GroupVersionResource]] = {}
        self.reported: set[tuple[str, GroupVersionResource]] = set()
        self.freeze_gc = True
        """Reflectors take what they mirrored out of the cyclic GC after their first
        sync (``ServeConfig.freeze_gc``)."""
        self.decoder: PartialDecoder | None = None
        """Decodes members' LIST and WATCH bodies into ``RawObject``s for a storage that
        keeps the bytes received (``MemoryStorage``); ``None``: plain dicts."""

    @property
    def expected(self) -> int:
        return sum(len(infos) for infos in self.resources.values())

    def lister_watcher_for(self, cluster: str, gvr: GroupVersionResource) -> listwatch.ListWatch:
        self._pending[f"{cluster}/{gvr}"] = (cluster, gvr)
        return listwatch.ListWatch(self.clients[cluster], gvr, decoder=self.decoder)

    def reflector_factory(
        self,
        lister_watcher: listwatch.ListerWatcher,
        store: ClusterStoreApi,
        *,
        resync_period: float = 0.0,
        page_size: int = 500,
        name: str = "",
    ) -> Runnable:
        feed = reflector.Reflector(
            lister_watcher,
            store,
            resync_period=resync_period,
            page_size=page_size,
            name=name,
            backoff=_PeekBackoff(),
            freeze_gc_after_sync=self.freeze_gc,
        )
        key = self._pending.pop(name)
        self.feeds[key] = feed
        self.by_name[name] = (key[0], feed)
        return feed

    def mirrors(self, cluster: str, gvr: GroupVersionResource) -> bool:
        return (cluster, gvr) in self.feeds

    def waiting(self) -> list[str]:
        """``cluster/resource`` of every feed that has not synced yet (empty: ready)."""
        waiting = [
            f"{cluster}/{gvr}"
            for (cluster, gvr), feed in self.feeds.items()
            if not feed.has_synced()
        ]
        if len(self.feeds) < self.expected:
            waiting.append(f"{self.expected - len(self.feeds)} more")
        return sorted(waiting)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()))


def _resource_info(resource: discovery.ApiResource, read_only: bool) -> ResourceInfo:
    return ResourceInfo(
        resource.gvr,
        kind=resource.kind,
        namespaced=resource.namespaced,
        singular=resource.singular,
        short_names=resource.short_names,
        verbs=READ_VERBS if read_only else ALL_VERBS,
    )


async def _connect(mirror: _Mirror, spec: ClusterSpec, read_only: bool) -> None:
    """Load the cluster's credentials and resolve its resources; ``CommandError`` names it."""
    server: str | None = None
    try:
        config = await load_client_config(spec.kubeconfig, spec.context)
        server = config.server
        client = transport.KubeClient(config)
        mirror.clients[spec.name] = client
        mirror.servers[spec.name] = config.server
        found = await discovery.Discovery(client).resolve_all(spec.resources)
        for resource in found:
            if "list" not in resource.verbs or "watch" not in resource.verbs:
                raise errors.CommandError(
                    f"{resource.gvr} cannot be listed and watched",
                    "Mirror only resources that support list and watch",
                )
            await client.list(resource.gvr, None, listing.ListOptions(limit=1))
        mirror.resources[spec.name] = [_resource_info(r, read_only) for r in found]
    except (errors.KubemirrorError, OSError) as exc:
        explained = failures.explain(exc, server=server)
        if explained is None:
            raise
        raise errors.CommandError(
            f"cluster {spec.name}: {explained.message}", explained.hint
        ) from exc


def _stamp() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def _log(console: Console, text: str) -> None:
    console.print(f"{_stamp()} {text}", highlight=False, soft_wrap=True, markup=False)


def _describe(config: ServeConfig, server: KubeApiServer) -> list[str]:
    features = ["TLS" if server.ssl_context else "plain HTTP"]
    features.append("bearer tokens" if config.tokens else "no authentication")
    if config.read_only:
        features.append("read-only")
    elif config.clusters:
        features.append("read-write: writes go to the member clusters")
    else:
        features.append("read-write")
    lines = [f"kubemirror serve: {server.url} ({', '.join(features)})"]
    if config.clusters:
        for spec in config.clusters:
            where = f"context {spec.context}" if spec.context else "current context"
            lines.append(f"  cluster {spec.name} ({where}): {', '.join(spec.resources)}")
    else:
        lines.append("  no member clusters: an empty in-memory API server")
    return lines


def _report_health(
    mirror: _Mirror, console: Console, unready_after: float, down: dict[str, bool]
) -> None:
    """Log members going unready (past ``unready_after``) and coming back."""
    for cluster, member in sorted(mirror.health.items()):
        error = member.last_error
        if error is not None and member.down_for() > unready_after:
            if not down.get(cluster):
                down[cluster] = True
                reason = unreachable_members({cluster: member}, unready_after)
                _log(console, f"{reason[0] if reason else cluster}; /readyz answers 503")
        elif member.up and down.pop(cluster, False):
            _log(console, f"cluster {cluster}: reachable again; /readyz answers ok")


async def _report_progress(
    mirror: _Mirror,
    storage: Storage,
    console: Console,
    stop: asyncio.Event,
    unready_after: float = DEFAULT_UNREADY_AFTER,
) -> None:
    """Log each (cluster, resource) as it syncs, readiness once all have, and members
    that become unreachable or reachable again."""
    ready_logged = not mirror.expected
    down: dict[str, bool] = {}
    while not stop.is_set():
        _report_health(mirror, console, unready_after, down)
        for key, feed in sorted(mirror.feeds.items(), key=lambda kv: str(kv[0])):
            if key in mirror.reported or not feed.has_synced():
                continue
            mirror.reported.add(key)
            cluster, gvr = key
            count = storage.resource_storage(gvr).count(cluster)
            _log(console, f"{cluster}: {gvr} synced ({count:,} objects)")
        if not ready_logged and not mirror.waiting():
            ready_logged = True
            _log(console, "ready: every cluster synced (/readyz answers ok)")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def run_serve(flags: ServeFlags, console: Console) -> int:
    """Run ``kubemirror serve`` until Ctrl-C, SIGTERM or ``flags.duration``; returns 0."""
    config = load_serve_config(flags)
    ssl_context = check_security(config)
    prometheus = load_prometheus() if config.metrics else None
    mirror = _Mirror()
    mirror.freeze_gc = config.freeze_gc
    try:
        for spec in config.clusters:
            await _connect(mirror, spec, config.read_only)
        storage = open_storage(config.storage)
        if isinstance(storage, MemoryStorage) and storage.compact:
            mirror.decoder = PartialDecoder()
        # Replicas sharing a database serve what it holds: ready without syncing themselves
        # (each member is synced by whichever replica holds its lease).
        shared = not isinstance(storage, MemoryStorage)
        default_cluster = config.clusters[0].name if config.clusters else "default"
        collector = None
        if prometheus is not None:
            collector = MirrorCollector(
                prometheus,
                storage,
                lambda: mirror.feeds,
                lambda: not mirror.waiting(),
                health=lambda: mirror.health,
                drift=lambda: mirror.drift_monitors(),
            )
        forwarder = None
        if not config.read_only and config.clusters:
            forwarder = MemberWriteForwarder(
                storage,
                mirror.clients,
                mirrored=mirror.mirrors,
                describe=lambda exc: describe_failure(exc),
            )
        server = KubeApiServer(
            storage,
            config.host,
            config.port,
            ssl_context=ssl_context,
            tokens=config.tokens or None,
            read_only=config.read_only,
            default_cluster=default_cluster,
            ca_data=_read_bytes(config.tls_cert) if config.tls_cert else None,
            builtin_resources=not config.clusters,
            accept_hosts=config.accept_hosts,
            allowed_origins=config.allowed_origins,
            readiness=sync_readiness(
                (lambda: []) if shared else mirror.waiting,
                lambda: unreachable_members(mirror.health, config.unready_after),
            ),
            extra_routes=(
                {"/metrics": metrics_handler(prometheus, collector)}
                if prometheus is not None and collector is not None
                else None
            ),
            write_forwarder=forwarder,
        )
        for infos in mirror.resources.values():
            for info in infos:
                server.register_resource(info)
        synchro = ClusterSynchro(
            storage,
            mirror.lister_watcher_for,
            reflector_factory=mirror.reflector_factory,
            check_drift_every=config.check_drift,
            repair_drift=config.repair_drift,
        )
        mirror.health = synchro.health
        mirror.drift_monitors = synchro.drift_monitors
        stop = asyncio.Event()
        ui.install_stop_handlers(stop)
        await storage.start()
        await server.start()
        warnings = Console(stderr=True, highlight=False)
        retry_log = RetryLog(
            mirror.by_name,
            mirror.servers,
            lambda text: warnings.print(
                f"{_stamp()} warning: {text}", markup=False, soft_wrap=True
            ),
        )
        reflector_log = logging.getLogger(reflector.__name__)
        reflector_log.addFilter(retry_log)
        try:
            async with synchro:
                for spec in config.clusters:
                    await synchro.add_cluster(spec.name, mirror.resources[spec.name])
                for line in _describe(config, server):
                    console.print(line, highlight=False, soft_wrap=True)
                example = config.clusters[0].resources[0] if config.clusters else "pods"
                if config.write_kubeconfig:
                    _write_private_kubeconfig(server, config)
                    console.print(
                        f"  kubectl --kubeconfig {config.write_kubeconfig} get {example} -A",
                        highlight=False,
                        soft_wrap=True,
                    )
                elif not server.ssl_context and not config.tokens:
                    console.print(
                        f"  kubectl --server {server.url} get {example} -A", highlight=False
                    )
                if flags.duration is not None:
                    asyncio.get_running_loop().call_later(flags.duration, stop.set)
                await _report_progress(mirror, storage, console, stop, config.unready_after)
        finally:
            reflector_log.removeFilter(retry_log)
            await server.stop()
            await storage.stop()
    finally:
        await mirror.close()
    _log(console, "stopped")
    return 0


def _write_private_kubeconfig(server: KubeApiServer, config: ServeConfig) -> None:
    """Write the kubeconfig readable by its owner only (it may hold a token)."""
    assert config.write_kubeconfig is not None
    path = os.path.expanduser(config.write_kubeconfig)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    server.write_kubeconfig(path, token=config.tokens[0] if config.tokens else None)


def _read_bytes(path: str) -> bytes:
    with open(os.path.expanduser(path), "rb") as fh:
        return fh.read()

