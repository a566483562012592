"""What an HTTP request to the multi-cluster API asks for (multicluster layer, sans-I/O).

``parse_request_path`` splits a URL path into a ``RequestInfo`` (optional
``/clusters/<name>`` prefix, discovery or resource request, group, version,
namespace, resource, name, legacy ``/watch/`` form), and ``parse_list_query``
turns query parameters into ``ListOptions`` plus the watch flags, the way the
Kubernetes API server reads them. Pure functions, safe from any thread; bad
parameters raise ``BadRequestError`` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kubemirror.multicluster import status
from kubemirror.multicluster.storage import ListOptions

__all__ = [
    "QueryOptions",
    "RequestInfo",
    "accepts_table",
    "parse_list_query",
    "parse_request_path",
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
    """Query parameters of a LIST/WATCH: the storage ``ListOptions`` plus the watch flags."""

    options: ListOptions
    watch: bool = False
    timeout_seconds: float | None = None


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
        clusters=clusters,
        namespace=namespace or None,
        label_selector=query.get("labelSelector", ""),
        field_selector=query.get("fieldSelector", ""),
        limit=_int(query, "limit") or 0,
        continue_token=query.get("continue", ""),
        resource_version=query.get("resourceVersion", ""),
        resource_version_match=query.get("resourceVersionMatch", ""),
        allow_watch_bookmarks=bool(_bool(query, "allowWatchBookmarks")),
        send_initial_events=_bool(query, "sendInitialEvents"),
    )
    return QueryOptions(opts, watch, float(timeout) if timeout else None)


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
