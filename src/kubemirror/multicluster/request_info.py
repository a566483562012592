"""What an HTTP request to the multi-cluster API asks for (multicluster layer, sans-I/O).

``parse_request_path`` splits a URL path into a ``RequestInfo`` (optional
``/clusters/<name>`` prefix, discovery or resource request, group, version,
namespace, resource, name, legacy ``/watch/`` form), and ``parse_list_query``
turns query parameters into ``ListOptions`` plus the watch flags, the way the
Kubernetes API server reads them. Pure functions, safe from any thread; bad
parameters raise ``BadRequestError`` naming the parameter.

It also holds the request-level safety rules ``KubeApiServer`` applies before
anything else: the ``Host`` allow-list (``host_allowed``, as ``kubectl proxy
--accept-hosts``: DNS-rebinding protection), the browser ``Origin`` check
(``origin_allowed``) and the content types a write may carry
(``check_write_content_type``: a browser form cannot send them, which stops
cross-site request forgery), plus ``parse_dry_run``.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from kubemirror.listing import ListOptions
from kubemirror.multicluster import status
from kubemirror.multicluster.list_request import ListScope

__all__ = [
    "BODY_CONTENT_TYPES",
    "LOOPBACK_HOSTS",
    "PATCH_CONTENT_TYPES",
    "QueryOptions",
    "RequestInfo",
    "accepts_table",
    "check_write_content_type",
    "default_accept_hosts",
    "host_allowed",
    "media_type",
    "origin_allowed",
    "parse_dry_run",
    "parse_list_query",
    "parse_request_path",
    "split_host",
]

RequestKind = Literal["root", "discovery", "resource", "other"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The parts of a request path.

    ``kind`` is ``"discovery"`` for ``/api``, ``/apis``, ``/api/v1``,
    ``/apis/<g>`` and ``/apis/<g>/<v>``; ``"resource"`` when a resource is named;
    ``"other"`` for anything else (``/version``, ``/healthz``...). ``cluster`` is set
    under ``/clusters/<name>/``. ``watch_path`` marks the legacy ``/watch/`` form.
    """

    kind: RequestKind
    path: str
    cluster: str | None = None
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    watch_path: bool = False
    core: bool = True


def parse_request_path(path: str) -> RequestInfo:
    """Parse a URL path (without the query string); never raises.

    Paths are split on ``/``; a trailing slash is ignored. Resource paths:
    ``/api/v1/[watch/][namespaces/<ns>/]<resource>[/<name>[/<subresource>]]`` and the
    same under ``/apis/<group>/<version>``, optionally prefixed by
    ``/clusters/<name>``. ``/api/v1/namespaces/<ns>`` is the namespace object itself.
    """
    parts = [p for p in path.split("/") if p]
    cluster: str | None = None
    if len(parts) >= 2 and parts[0] == "clusters":
        cluster = parts[1]
        parts = parts[2:]
    rest = "/" + "/".join(parts)
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo("root" if not parts else "other", rest, cluster)
    core = parts[0] == "api"
    if core:
        if len(parts) <= 2:
            return RequestInfo("discovery", rest, cluster, "", parts[1] if len(parts) == 2 else "")
        group, version, tail = "", parts[1], parts[2:]
    else:
        if len(parts) <= 3:
            return RequestInfo(
                "discovery",
                rest,
                cluster,
                parts[1] if len(parts) >= 2 else "",
                parts[2] if len(parts) == 3 else "",
                core=False,
            )
        group, version, tail = parts[1], parts[2], parts[3:]
    watch_path = False
    if tail and tail[0] == "watch":
        watch_path = True
        tail = tail[1:]
    namespace = ""
    if len(tail) >= 2 and tail[0] == "namespaces" and (len(tail) > 2):
        namespace = tail[1]
        tail = tail[2:]
    if not tail:
        return RequestInfo("other", rest, cluster, group, version, core=core)
    resource = tail[0]
    name = tail[1] if len(tail) >= 2 else ""
    subresource = "/".join(tail[2:])
    return RequestInfo(
        "resource",
        rest,
        cluster,
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
        watch_path,
        core,
    )


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """One LIST/WATCH request: its ``ListOptions`` (the query), its ``ListScope`` (the
    path's cluster and namespace) and whether it watches."""

    options: ListOptions
    scope: ListScope = ListScope()
    watch: bool = False

    @property
    def timeout_seconds(self) -> float | None:
        """The request's ``timeoutSeconds`` (``None`` when not given)."""
        return float(self.options.timeout_seconds) if self.options.timeout_seconds else None


_TRUE = {"1", "true", "True", "TRUE", "yes"}
_FALSE = {"0", "false", "False", "FALSE", "no", ""}


def _bool(query: Mapping[str, str], name: str) -> bool | None:
    if name not in query:
        return None
    value = query[name]
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise status.bad_request(f"invalid value {value!r} for parameter {name}: expected a boolean")


def _int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise status.bad_request(
            f"invalid value {value!r} for parameter {name}: expected an integer"
        ) from None
    if number < 0:
        raise status.bad_request(f"invalid value {value!r} for parameter {name}: negative")
    return number


def parse_list_query(
    query: Mapping[str, str],
    *,
    namespace: str = "",
    clusters: tuple[str, ...] = (),
    watch_path: bool = False,
) -> QueryOptions:
    """Read ``labelSelector``, ``fieldSelector``, ``limit``, ``continue``,
    ``resourceVersion``, ``resourceVersionMatch``, ``watch``, ``allowWatchBookmarks``,
    ``sendInitialEvents`` and ``timeoutSeconds``. Raises ``BadRequestError``.
    """
    watch = bool(_bool(query, "watch")) or watch_path
    timeout = _int(query, "timeoutSeconds")
    opts = ListOptions(
        label_selector=query.get("labelSelector", ""),
        field_selector=query.get("fieldSelector", ""),
        limit=_int(query, "limit") or 0,
        continue_token=query.get("continue", ""),
        resource_version=query.get("resourceVersion", ""),
        resource_version_match=query.get("resourceVersionMatch", ""),
        allow_watch_bookmarks=bool(_bool(query, "allowWatchBookmarks")),
        send_initial_events=_bool(query, "sendInitialEvents"),
        timeout_seconds=timeout or 0,
    )
    return QueryOptions(opts, ListScope(clusters, namespace or None), watch)


def accepts_table(accept: str) -> bool:
    """Whether an ``Accept`` header asks for ``meta.k8s.io`` ``Table`` output first."""
    for media in accept.split(","):
        params = {
            p.strip().split("=", 1)[0]: p.strip().partition("=")[2] for p in media.split(";")[1:]
        }
        if params.get("as") == "Table":
            return True
        if media.strip().startswith(("application/json", "*/*")):
            return False
    return False


# -- request safety: Host allow-list, Origin, write content types ------------------------------

LOOPBACK_HOSTS: tuple[str, ...] = (
    r"^localhost$",
    r"^127(\.[0-9]{1,3}){3}$",
    r"^\[::1\]$",
)
"""The ``Host`` names accepted by default (``localhost``, ``127.x.y.z``, ``[::1]``)."""

_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})

BODY_CONTENT_TYPES: frozenset[str] = frozenset(
    {"application/json", "application/yaml", "application/apply-patch+yaml"}
)
"""Content types a POST/PUT/DELETE body may have."""

PATCH_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    }
)
"""Content types a PATCH body may have."""

UNKNOWN_BODY_FORMAT = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json, application/yaml"
)


def split_host(host: str) -> str:
    """The host name of a ``Host`` header value, without the port (``[::1]`` stays
    bracketed); lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    if host.count(":") == 1:
        return host.partition(":")[0]
    if host.count(":") > 1:  # a bare IPv6 address
        return f"[{host}]"
    return host


def default_accept_hosts(bind_host: str) -> tuple[str, ...]:
    """The loopback names, plus ``bind_host`` when it names one address (not a wildcard)."""
    if bind_host.strip().lower() in _WILDCARD_HOSTS:
        return LOOPBACK_HOSTS
    own = split_host(bind_host)
    try:
        if ipaddress.ip_address(own.strip("[]")).version == 6:
            own = f"[{own.strip('[]')}]"
    except ValueError:
        pass
    return (*LOOPBACK_HOSTS, "^" + re.escape(own) + "$")


def host_allowed(host_header: str | None, patterns: Iterable[re.Pattern[str]]) -> bool:
    """Whether a request's ``Host`` (port ignored) matches one of ``patterns``
    (searched, as ``kubectl proxy --accept-hosts`` does). A missing Host is refused."""
    if not host_header:
        return False
    host = split_host(host_header)
    return any(p.search(host) for p in patterns)


def _is_loopback(host: str) -> bool:
    return any(re.search(p, host) for p in LOOPBACK_HOSTS)


def origin_allowed(
    origin: str | None, host_header: str | None, scheme: str, allowed: Iterable[str]
) -> bool:
    """Whether a request's browser ``Origin`` may use the API: no Origin (not a
    browser), an origin listed in ``allowed`` (exact ``scheme://host[:port]``, or
    ``*``), or the same origin as the request when that is a loopback host."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/")
    allowed = set(allowed)
    if "*" in allowed or origin in allowed:
        return True
    parsed = urllib.parse.urlsplit(origin)
    if not parsed.scheme or not parsed.netloc or not host_header:
        return False
    same = parsed.scheme == scheme and parsed.netloc.lower() == host_header.strip().lower()
    return same and _is_loopback(split_host(parsed.netloc))


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, without parameters, lower case."""
    return (content_type or "").split(";")[0].strip().lower()


def check_write_content_type(method: str, content_type: str | None, has_body: bool) -> None:
    """Raise 415 ``UnsupportedMediaType`` unless a write's body has a JSON/YAML (or, for
    PATCH, a patch) content type. Bodies without ``Content-Type`` are refused too: a
    browser can send those (and ``text/plain``, form encodings) to any site."""
    if not has_body or method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    media = media_type(content_type)
    if method == "PATCH":
        if media not in PATCH_CONTENT_TYPES:
            raise status.unsupported_media_type("415: Unsupported Media Type", {})
        return
    if media not in BODY_CONTENT_TYPES or media == "application/apply-patch+yaml":
        raise status.unsupported_media_type(UNKNOWN_BODY_FORMAT)


_OPTIONS_KINDS = {
    "POST": "CreateOptions",
    "PUT": "UpdateOptions",
    "PATCH": "PatchOptions",
    "DELETE": "DeleteOptions",
}


def parse_dry_run(values: Iterable[str], method: str) -> bool:
    """Whether a write is a dry run (``dryRun=All``); any other value is a 422 Invalid
    ``<Verb>Options`` as kube-apiserver answers. ``values`` are every ``dryRun`` given."""
    given = list(values)
    if not given:
        return False
    if all(v == "All" for v in given):
        return True
    raise status.invalid_fields(
        _OPTIONS_KINDS.get(method, "CreateOptions"),
        "",
        [status.FieldError("NotSupported", "dryRun", 'supported values: "All"', given)],
        "meta.k8s.io",
    )
