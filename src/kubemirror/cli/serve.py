"""``kubemirror serve``: member clusters mirrored into memory behind one Kubernetes API.

Part of the ``cli`` layer. ``load_serve_config`` merges a YAML file and flags
into a checked ``ServeConfig``; ``check_security`` refuses a non-loopback
address without TLS and bearer tokens (unless ``--insecure``). ``run_serve``
resolves every resource on every cluster first (a bad name, an unreachable
cluster or bad credentials stop it with one line), then a ``ClusterSynchro``
keeps a ``MemoryStorage`` equal to the clusters while a ``KubeApiServer``
serves it, read-only by default, with ``/readyz`` answering 200 only once
every (cluster, resource) has synced and no member has been unreachable for
more than ``unready_after`` seconds (``sync_readiness``), and ``/metrics`` in
Prometheus format (``metrics.metrics_handler``), member staleness included.
A member's retries are logged as one line each ("cluster eu: connection
refused to https://...; retrying in 6.4 s", ``RetryLog``). With ``--read-write``
writes go to the member that owns the object (``MemberWriteForwarder``) and are
answered once the mirror holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from rich.console import Console

from kubemirror import errors, listwatch, reflector
from kubemirror.cli import failures, ui
from kubemirror.cli.metrics import MirrorCollector, load_prometheus, metrics_handler
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
    "DEFAULT_PORT",
    "DEFAULT_UNREADY_AFTER",
    "ClusterSpec",
    "RetryLog",
    "ServeConfig",
    "ServeFlags",
    "check_security",
    "describe_failure",
    "is_loopback",
    "load_serve_config",
    "run_serve",
    "sync_readiness",
    "unreachable_members",
]

DEFAULT_PORT = 6443
DEFAULT_UNREADY_AFTER = 60.0
"""Seconds a member may be unreachable before ``/readyz`` answers 503."""
_CONFIG_KEYS = frozenset(
    {
        "listen",
        "tls",
        "auth",
        "readOnly",
        "kubeconfig",
        "resources",
        "clusters",
        "metrics",
        "unreadyAfter",
        "storage",
    }
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
    unready_after: float | None = None
    accept_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    storage: str | None = None


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
    unready_after: float = DEFAULT_UNREADY_AFTER
    accept_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    storage: str = field(default="memory", repr=False)
    """``memory`` or a PostgreSQL URL (hidden from ``repr``: it may hold a password)."""


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
    unready_after = pick(flags.unready_after, doc.get("unreadyAfter"), DEFAULT_UNREADY_AFTER)
    _expect(unready_after, (int, float), f"{path}: unreadyAfter")
    if isinstance(unready_after, bool) or unready_after <= 0:
        raise errors.ConfigError(
            "must be a number of seconds above 0", field=f"{path}: unreadyAfter".lstrip(": ")
        )
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
        unready_after=float(unready_after),
        accept_hosts=_host_patterns(
            flags.accept_hosts
            or _names(listen.get("acceptHosts") or [], f"{path}: listen.acceptHosts")
        ),
        allowed_origins=flags.allowed_origins
        or _names(listen.get("allowedOrigins") or [], f"{path}: listen.allowedOrigins"),
        storage=_storage_location(pick(flags.storage, doc.get("storage"), "memory"), path),
    )


def _storage_location(value: object, path: str) -> str:
    """``memory`` or a ``postgresql://`` / ``postgres://`` URL; else a ``ConfigError``."""
    text = str(_expect(value, str, f"{path}: storage"))
    if text == "memory" or text.startswith(("postgresql://", "postgres://")):
        return text
    raise errors.ConfigError(
        "must be memory or a postgresql:// URL",
        field=f"{path}: storage".lstrip(": "),
        expression=text.split("@")[-1],
    )


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


def _host_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """``--accept-hosts`` regular expressions, checked; one bad pattern is a
    ``ConfigError`` naming it (``kubectl proxy --accept-hosts`` semantics)."""
    out = []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise errors.ConfigError(
                f"not a regular expression: {exc}", field="accept-hosts", expression=pattern
            ) from None
        out.append(pattern)
    return tuple(out)


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
        self._pending: dict[str, tuple[str, GroupVersionResource]] = {}
        self.reported: set[tuple[str, GroupVersionResource]] = set()

    @property
    def expected(self) -> int:
        return sum(len(infos) for infos in self.resources.values())

    def lister_watcher_for(self, cluster: str, gvr: GroupVersionResource) -> Any:
        self._pending[f"{cluster}/{gvr}"] = (cluster, gvr)
        return listwatch.ListWatch(self.clients[cluster], gvr)

    def reflector_factory(
        self,
        lister_watcher: Any,
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
            await client.list(resource.gvr, None, transport.ListOptions(limit=1))
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
    try:
        for spec in config.clusters:
            await _connect(mirror, spec, config.read_only)
        storage = open_storage(config.storage)
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
            ssl_context,
            config.tokens or None,
            config.read_only,
            default_cluster,
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
        )
        mirror.health = synchro.health
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

