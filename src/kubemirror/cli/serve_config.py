"""``kubemirror serve``'s configuration: flags and a YAML file merged and checked.

Part of the ``cli`` layer. ``load_serve_config`` merges a YAML file and flags into a
checked ``ServeConfig`` (unknown keys, bad types and missing values are one-line
``CommandError``s naming the key and file); ``check_security`` refuses a
non-loopback address without TLS and bearer tokens (unless ``insecure``), and tokens
without TLS, and returns the server's ``SSLContext``. Pure apart from reading the
files named.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from kubemirror import errors

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_UNREADY_AFTER",
    "ClusterSpec",
    "ServeConfig",
    "ServeFlags",
    "check_security",
    "is_loopback",
    "load_serve_config",
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
        "checkDrift",
        "repairDrift",
        "freezeGc",
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
    check_drift: float | None = None
    repair_drift: bool | None = None
    freeze_gc: bool | None = None
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
    check_drift: float = 0.0
    repair_drift: bool = False
    freeze_gc: bool = True
    """Take each synced (cluster, resource)'s objects out of the cyclic GC's view
    (``Reflector(freeze_gc_after_sync=True)``): no full collection rescans millions of
    mirrored objects, a pause of seconds for every watcher at once."""
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
    check_drift = pick(flags.check_drift, doc.get("checkDrift"), 0.0)
    _expect(check_drift, (int, float), f"{path}: checkDrift")
    if isinstance(check_drift, bool) or check_drift < 0:
        raise errors.ConfigError(
            "must be a number of seconds, 0 for none", field=f"{path}: checkDrift".lstrip(": ")
        )
    repair_drift = _expect(pick(flags.repair_drift, doc.get("repairDrift"), False), bool,
                           f"{path}: repairDrift")
    freeze_gc = _expect(pick(flags.freeze_gc, doc.get("freezeGc"), True), bool,
                        f"{path}: freezeGc")
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
        check_drift=float(check_drift),
        repair_drift=bool(repair_drift),
        freeze_gc=bool(freeze_gc),
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
