"""``kubemirror serve``: member clusters mirrored into memory behind one Kubernetes API.

Part of the ``cli`` layer. ``load_serve_config`` merges a YAML file and flags
into a checked ``ServeConfig``; ``check_security`` refuses a non-loopback
address without TLS and bearer tokens (unless ``--insecure``). ``run_serve``
resolves every resource on every cluster first (a bad name, an unreachable
cluster or bad credentials stop it with one line), then a ``ClusterSynchro``
keeps a ``MemoryStorage`` equal to the clusters while a ``KubeApiServer``
serves it, read-only by default, with ``/readyz`` answering 200 only once
every (cluster, resource) has synced (``sync_readiness``) and ``/metrics`` in
Prometheus format (``metrics.metrics_handler``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from rich.console import Console

from kubemirror import errors, listwatch, reflector
from kubemirror.cli import failures, ui
from kubemirror.cli.metrics import MirrorCollector, load_prometheus, metrics_handler
from kubemirror.cli.watch import load_client_config
from kubemirror.client import discovery, transport
from kubemirror.multicluster.resources import ALL_VERBS, READ_VERBS, ResourceInfo
from kubemirror.multicluster.server import KubeApiServer, Readiness
from kubemirror.multicluster.storage import ClusterResourceStore, MemoryStorage
from kubemirror.multicluster.synchro import ClusterSynchro, Runnable
from kubemirror.types import GroupVersionResource

__all__ = [
    "DEFAULT_PORT",
    "ClusterSpec",
    "ServeConfig",
    "ServeFlags",
    "check_security",
    "is_loopback",
    "load_serve_config",
    "run_serve",
    "sync_readiness",
]

DEFAULT_PORT = 6443
_CONFIG_KEYS = frozenset(
    {"listen", "tls", "auth", "readOnly", "kubeconfig", "resources", "clusters", "metrics"}
)
_CLUSTER_KEYS = frozenset({"name", "context", "kubeconfig", "resources"})


@dataclass(frozen=True, slots=True)
class ServeFlags:
    """The command-line flags of ``kubemirror serve`` (``None``: not given)."""

    config: str | None = None
    clusters: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    kubeconfig: str | None = None
    host: str | None = None
    port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tokens: tuple[str, ...] = ()
    token_file: str | None = None
    insecure: bool = False
    read_only: bool | None = None
    metrics: bool | None = None
    write_kubeconfig: str | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """One member cluster: its name in the API, kubeconfig context and resources."""

    name: str
    context: str | None = None
    kubeconfig: str | None = None
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """A complete, checked ``serve`` configuration. ``repr`` hides the tokens."""

    clusters: tuple[ClusterSpec, ...] = ()
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_cert: str | None = None
    tls_key: str | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    insecure: bool = False
    read_only: bool = True
    metrics: bool = True
    write_kubeconfig: str | None = None


def _split_names(values: Iterable[str]) -> tuple[str, ...]:
    """``["pods,deployments.apps", "svc"]`` -> ``("pods", "deployments.apps", "svc")``."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(dict.fromkeys(out))


def _read_tokens(path: str) -> tuple[str, ...]:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise errors.CommandError(
            f"cannot read the token file {path!r}: {exc.strerror or exc}",
            "Pass --token-file with a readable file of tokens, one a line",
        ) from exc
    tokens = tuple(t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#"))
    if not tokens:
        raise errors.CommandError(f"the token file {path!r} holds no token", "Add one per line")
    return tokens


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise errors.ConfigError(f"must be a {names}, got {type(value).__name__}", field=where)
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return _split_names([value])
    items = _expect(value, list, where)
    return _split_names(str(_expect(v, str, f"{where}[{i}]")) for i, v in enumerate(items))


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise errors.CommandError(
            f"cannot read the config file {path!r}: {exc.strerror or exc}",
            "Pass --config with a readable YAML file",
        ) from exc
    except yaml.YAMLError as exc:
        raise errors.CommandError(
            f"the config file {path!r} is not valid YAML: {exc}", "Fix the YAML syntax"
        ) from exc
    if doc is None:
        return {}
    doc = _expect(doc, dict, "config")
    unknown = sorted(set(doc) - _CONFIG_KEYS)
    if unknown:
        raise errors.ConfigError(
            f"unknown key (known: {', '.join(sorted(_CONFIG_KEYS))})",
            field=f"{path}: {unknown[0]}",
        )
    return dict(doc)


def _cluster_from_flag(text: str) -> ClusterSpec:
    name, sep, context = text.partition("=")
    name = name.strip()
    if not name or "/" in name:
        raise errors.ConfigError(
            "expected NAME=CONTEXT with a name without '/'", field="--cluster", expression=text
        )
    return ClusterSpec(name=name, context=context.strip() or None if sep else None)


def _clusters_from_file(value: Any, path: str) -> list[ClusterSpec]:
    specs = []
    for i, item in enumerate(_expect(value, list, f"{path}: clusters")):
        where = f"{path}: clusters[{i}]"
        entry = _expect(item, dict, where)
        unknown = sorted(set(entry) - _CLUSTER_KEYS)
        if unknown:
            raise errors.ConfigError(
                f"unknown key (known: {', '.join(sorted(_CLUSTER_KEYS))})",
                field=f"{where}.{unknown[0]}",
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise errors.ConfigError("a name without '/' is required", field=f"{where}.name")
        context = entry.get("context")
        kubeconfig = entry.get("kubeconfig")
        specs.append(
            ClusterSpec(
                name=name,
                context=str(_expect(context, str, f"{where}.context")) if context else None,
                kubeconfig=(
                    str(_expect(kubeconfig, str, f"{where}.kubeconfig")) if kubeconfig else None
                ),
                resources=_names(entry.get("resources") or [], f"{where}.resources"),
            )
        )
    return specs


def load_serve_config(flags: ServeFlags) -> ServeConfig:
    """The configuration from ``flags.config`` (YAML) overridden by the other flags.

    Raises ``ConfigError``/``CommandError`` naming the bad key or flag.
    """
    doc = _read_config_file(flags.config) if flags.config else {}
    path = flags.config or ""
    listen = _expect(doc.get("listen") or {}, dict, f"{path}: listen")
    tls = _expect(doc.get("tls") or {}, dict, f"{path}: tls")
    auth = _expect(doc.get("auth") or {}, dict, f"{path}: auth")

    kubeconfig = flags.kubeconfig or doc.get("kubeconfig")
    resources = _split_names(flags.resources) or _names(
        doc.get("resources") or [], f"{path}: resources"
    )
    if flags.clusters:
        clusters = [_cluster_from_flag(text) for text in flags.clusters]
    else:
        clusters = _clusters_from_file(doc.get("clusters") or [], path)
    names = [c.name for c in clusters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise errors.ConfigError(
            "cluster names must be unique", field="cluster", expression=duplicates[0]
        )
    resolved = []
    for spec in clusters:
        wanted = spec.resources or resources
        if not wanted:
            raise errors.CommandError(
                f"no resources to mirror for cluster {spec.name!r}",
                "Pass --resource pods,deployments.apps (or list resources in the config file)",
            )
        resolved.append(
            ClusterSpec(
                name=spec.name,
                context=spec.context,
                kubeconfig=spec.kubeconfig or kubeconfig,
                resources=wanted,
            )
        )

    tokens = list(flags.tokens)
    token_file = flags.token_file or auth.get("tokenFile")
    if token_file:
        tokens.extend(_read_tokens(str(token_file)))
    tokens.extend(_names(auth.get("tokens") or [], f"{path}: auth.tokens"))

    def pick(flag: Any, value: Any, default: Any) -> Any:
        return flag if flag is not None else value if value is not None else default

    port = pick(flags.port, listen.get("port"), DEFAULT_PORT)
    return ServeConfig(
        clusters=tuple(resolved),
        host=str(pick(flags.host, listen.get("host"), "127.0.0.1")),
        port=int(_expect(port, int, f"{path}: listen.port")),
        tls_cert=pick(flags.tls_cert, tls.get("cert"), None),
        tls_key=pick(flags.tls_key, tls.get("key"), None),
        tokens=tuple(dict.fromkeys(tokens)),
        insecure=flags.insecure,
        read_only=bool(pick(flags.read_only, doc.get("readOnly"), True)),
        metrics=bool(pick(flags.metrics, doc.get("metrics"), True)),
        write_kubeconfig=flags.write_kubeconfig,
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_security(config: ServeConfig) -> ssl.SSLContext | None:
    """The server's ``SSLContext`` (or ``None``); refuses unsafe settings.

    A non-loopback address needs TLS and at least one token unless ``insecure``;
    tokens always need TLS (kubectl sends them only over HTTPS).
    Raises ``CommandError`` with the flags to pass.
    """
    if bool(config.tls_cert) != bool(config.tls_key):
        raise errors.CommandError(
            "TLS needs both a certificate and its key", "Pass both --tls-cert and --tls-key"
        )
    if config.tokens and not config.tls_cert:
        raise errors.CommandError(
            "bearer tokens need TLS: kubectl and client-go send them only over HTTPS, and "
            "a token sent over plain HTTP can be read on the way",
            "Pass --tls-cert and --tls-key too",
        )
    if not is_loopback(config.host) and not config.insecure:
        missing = []
        if not config.tls_cert:
            missing.append("TLS (--tls-cert/--tls-key)")
        if not config.tokens:
            missing.append("bearer tokens (--token-file or --token)")
        if missing:
            raise errors.CommandError(
                f"refusing to listen on {config.host}, reachable from other machines, without "
                f"{' and '.join(missing)}",
                "Pass them, listen on 127.0.0.1, or add --insecure to accept the risk",
            )
    if not config.tls_cert:
        return None
    assert config.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(
            os.path.expanduser(config.tls_cert), os.path.expanduser(config.tls_key)
        )
    except (OSError, ssl.SSLError) as exc:
        raise errors.CommandError(
            f"cannot load the TLS certificate/key ({config.tls_cert}, {config.tls_key}): "
            f"{getattr(exc, 'strerror', None) or exc}",
            "Pass a PEM certificate and its unencrypted PEM key",
        ) from exc
    return context


def sync_readiness(waiting: Callable[[], list[str]]) -> Readiness:
    """The ``/readyz`` check of the mirror: ``waiting()`` lists what is still syncing.

    Ready (200 ``ok``) when that list is empty, else 503 naming what it holds.
    """

    def check() -> tuple[bool, str]:
        still = waiting()
        if still:
            return False, f"not ready: syncing {', '.join(still)}"
        return True, "ok"

    return check


class _Mirror:
    """Member clusters' clients, resolved resources and the reflectors the synchro made."""

    def __init__(self) -> None:
        self.clients: dict[str, transport.KubeClient] = {}
        self.resources: dict[str, list[ResourceInfo]] = {}
        self.feeds: dict[tuple[str, GroupVersionResource], reflector.Reflector] = {}
        self._pending: dict[int, tuple[str, GroupVersionResource]] = {}
        self.reported: set[tuple[str, GroupVersionResource]] = set()

    @property
    def expected(self) -> int:
        return sum(len(infos) for infos in self.resources.values())

    def lister_watcher_for(self, cluster: str, gvr: GroupVersionResource) -> Any:
        lw = listwatch.ListWatch(self.clients[cluster], gvr)
        self._pending[id(lw)] = (cluster, gvr)
        return lw

    def reflector_factory(
        self,
        lister_watcher: Any,
        store: ClusterResourceStore,
        *,
        resync_period: float = 0.0,
        page_size: int = 500,
        name: str = "",
    ) -> Runnable:
        feed = reflector.Reflector(
            lister_watcher, store, resync_period=resync_period, page_size=page_size, name=name
        )
        self.feeds[self._pending.pop(id(lister_watcher))] = feed
        return feed

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
        found = await discovery.Discovery(client).resolve_all(spec.resources)
        for resource in found:
            if "list" not in resource.verbs or "watch" not in resource.verbs:
                raise errors.CommandError(
                    f"{resource.gvr} cannot be listed and watched",
                    "Mirror only resources that support list and watch",
                )
            await client.list(resource.gvr, None, transport.ListOptions(limit=1))
        mirror.resources[spec.name] = [_resource_info(r, read_only) for r in found]
    except (errors.KubemirrorError, OSError) as exc:
        explained = failures.explain(exc, server=server)
        if explained is None:
            raise
        raise errors.CommandError(
            f"cluster {spec.name}: {explained.message}", explained.hint
        ) from exc


def _log(console: Console, text: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    console.print(f"{stamp} {text}", highlight=False, soft_wrap=True)


def _describe(config: ServeConfig, server: KubeApiServer) -> list[str]:
    features = ["TLS" if server.ssl_context else "plain HTTP"]
    features.append("bearer tokens" if config.tokens else "no authentication")
    features.append("read-only" if config.read_only else "read-write")
    lines = [f"kubemirror serve: {server.url} ({', '.join(features)})"]
    if config.clusters:
        for spec in config.clusters:
            where = f"context {spec.context}" if spec.context else "current context"
            lines.append(f"  cluster {spec.name} ({where}): {', '.join(spec.resources)}")
    else:
        lines.append("  no member clusters: an empty in-memory API server")
    return lines


async def _report_progress(
    mirror: _Mirror, storage: MemoryStorage, console: Console, stop: asyncio.Event
) -> None:
    """Log each (cluster, resource) as it syncs, and readiness once all have."""
    ready_logged = not mirror.expected
    while not stop.is_set():
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
    try:
        for spec in config.clusters:
            await _connect(mirror, spec, config.read_only)
        storage = MemoryStorage()
        default_cluster = config.clusters[0].name if config.clusters else "default"
        collector = None
        if prometheus is not None:
            collector = MirrorCollector(
                prometheus, storage, lambda: mirror.feeds, lambda: not mirror.waiting()
            )
        server = KubeApiServer(
            storage,
            config.host,
            config.port,
            ssl_context,
            config.tokens or None,
            config.read_only,
            default_cluster,
            ca_data=_read_bytes(config.tls_cert) if config.tls_cert else None,
            builtin_resources=not config.clusters,
            readiness=sync_readiness(mirror.waiting),
            extra_routes=(
                {"/metrics": metrics_handler(prometheus, collector)}
                if prometheus is not None and collector is not None
                else None
            ),
        )
        for infos in mirror.resources.values():
            for info in infos:
                server.register_resource(info)
        synchro = ClusterSynchro(
            storage,
            mirror.lister_watcher_for,
            reflector_factory=mirror.reflector_factory,
        )
        stop = asyncio.Event()
        ui.install_stop_handlers(stop)
        await server.start()
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
                await _report_progress(mirror, storage, console, stop)
        finally:
            await server.stop()
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

