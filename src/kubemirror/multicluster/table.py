"""Server-side printing: objects as ``meta.k8s.io/v1`` ``Table`` rows (multicluster layer).

kubectl asks for ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1`` and
prints the columns the server chose. This module knows the usual columns of the
built-in kinds (NAME/READY/STATUS/RESTARTS/AGE for pods, ...; a Deployment's are
kube-apiserver's, ``-o wide`` ones included) and falls back to NAME/AGE; every
table also has a ``Cluster`` column shown by ``-o wide``. Pure functions; ``now``
is injectable for tests.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

from kubemirror import errors, selectors
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from kubemirror.types import Obj

__all__ = ["column_definitions", "format_age", "table_row", "to_table"]

_Cell = Callable[[Obj, datetime.datetime], Any]


def format_age(created: str | None, now: datetime.datetime) -> str:
    """kubectl's short age (``5s``, ``3m``, ``2h``, ``4d``), ``<unknown>`` without a timestamp."""
    if not created:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _meta(obj: Obj) -> Any:
    return obj.get("metadata") or {}


def _age(obj: Obj, now: datetime.datetime) -> str:
    return format_age(_meta(obj).get("creationTimestamp"), now)


def _cluster(obj: Obj, now: datetime.datetime) -> str:
    return str((_meta(obj).get("annotations") or {}).get(CLUSTER_ANNOTATION, ""))


def _pod_ready(obj: Obj, now: datetime.datetime) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    containers = (obj.get("spec") or {}).get("containers") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(obj: Obj, now: datetime.datetime) -> str:
    if _meta(obj).get("deletionTimestamp"):
        return "Terminating"
    return str((obj.get("status") or {}).get("phase") or "Pending")


def _pod_restarts(obj: Obj, now: datetime.datetime) -> int:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def _phase(obj: Obj, now: datetime.datetime) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def _data_count(obj: Obj, now: datetime.datetime) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _replicas(obj: Obj, now: datetime.datetime) -> str:
    st = obj.get("status") or {}
    return f"{st.get('readyReplicas') or 0}/{(obj.get('spec') or {}).get('replicas') or 0}"


def _status_count(field: str) -> _Cell:
    def cell(obj: Obj, now: datetime.datetime) -> int:
        return int((obj.get("status") or {}).get(field) or 0)

    return cell


def _template_containers(obj: Obj) -> list[Any]:
    template = (obj.get("spec") or {}).get("template") or {}
    return list((template.get("spec") or {}).get("containers") or [])


def _containers(obj: Obj, now: datetime.datetime) -> str:
    return ",".join(str(c.get("name", "")) for c in _template_containers(obj))


def _images(obj: Obj, now: datetime.datetime) -> str:
    return ",".join(str(c.get("image", "")) for c in _template_containers(obj))


def _selector(obj: Obj, now: datetime.datetime) -> str:
    """kube-apiserver's ``FormatLabelSelector``: ``app=web,tier in (a,b)``, ``<none>``."""
    try:
        text = str(selectors.LabelSelector.from_dict((obj.get("spec") or {}).get("selector")
                                                     or {}))
    except errors.KubemirrorError:
        return "<error>"
    return text or "<none>"


def _svc_type(obj: Obj, now: datetime.datetime) -> str:
    return str((obj.get("spec") or {}).get("type") or "ClusterIP")


def _svc_ip(obj: Obj, now: datetime.datetime) -> str:
    return str((obj.get("spec") or {}).get("clusterIP") or "<none>")


def _node_status(obj: Obj, now: datetime.datetime) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return "Ready" if cond.get("status") == "True" else "NotReady"
    return "Unknown"


_Column = tuple[str, str, str, _Cell]

_NAME: _Column = ("Name", "string", "name", lambda o, n: _meta(o).get("name", ""))
_AGE: _Column = ("Age", "string", "", _age)

_COLUMNS: dict[str, list[_Column]] = {
    "Pod": [
        _NAME,
        ("Ready", "string", "", _pod_ready),
        ("Status", "string", "", _pod_status),
        ("Restarts", "integer", "", _pod_restarts),
        _AGE,
    ],
    "Namespace": [_NAME, ("Status", "string", "", _phase), _AGE],
    "Node": [_NAME, ("Status", "string", "", _node_status), _AGE],
    "ConfigMap": [_NAME, ("Data", "integer", "", _data_count), _AGE],
    "Secret": [_NAME, ("Data", "integer", "", _data_count), _AGE],
    "Service": [
        _NAME,
        ("Type", "string", "", _svc_type),
        ("Cluster-IP", "string", "", _svc_ip),
        _AGE,
    ],
    "Deployment": [
        _NAME,
        ("Ready", "string", "", _replicas),
        ("Up-to-date", "string", "", _status_count("updatedReplicas")),
        ("Available", "string", "", _status_count("availableReplicas")),
        _AGE,
    ],
    "StatefulSet": [_NAME, ("Ready", "string", "", _replicas), _AGE],
}

_CLUSTER: _Column = ("Cluster", "string", "", _cluster)
_WIDE_COLUMNS: dict[str, list[_Column]] = {
    "Deployment": [
        ("Containers", "string", "", _containers),
        ("Images", "string", "", _images),
        ("Selector", "string", "", _selector),
    ],
}
"""Columns of priority 1 (``-o wide``), before ``Cluster``."""


def _columns(kind: str) -> list[_Column]:
    return [*_COLUMNS.get(kind, [_NAME, _AGE]), *_WIDE_COLUMNS.get(kind, ()), _CLUSTER]


def column_definitions(kind: str) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` of a table of ``kind`` objects."""
    cols = _columns(kind)
    wide = {col[0] for col in [*_WIDE_COLUMNS.get(kind, ()), _CLUSTER]}
    return [
        {
            "name": col[0],
            "type": col[1],
            "format": col[2],
            "description": f"{col[0]} of the {kind}",
            "priority": 1 if col[0] in wide else 0,
        }
        for col in cols
    ]


def _partial(obj: Obj) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _meta(obj),
    }


def table_row(
    obj: Obj, kind: str, now: datetime.datetime, *, include_object: str = "Metadata"
) -> dict[str, Any]:
    """One ``Table`` row for ``obj``; ``include_object`` is None, Metadata or Object."""
    row: dict[str, Any] = {"cells": [cell(obj, now) for _, _, _, cell in _columns(kind)]}
    if include_object == "Object":
        row["object"] = obj
    elif include_object != "None":
        row["object"] = _partial(obj)
    return row


def to_table(
    objs: Sequence[Obj],
    kind: str,
    *,
    resource_version: str = "",
    continue_token: str = "",
    include_object: str = "Metadata",
    with_columns: bool = True,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` ``Table`` of ``objs`` (column definitions omitted when asked)."""
    now = now or datetime.datetime.now(datetime.UTC)
    meta: dict[str, Any] = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(kind) if with_columns else [],
        "rows": [table_row(o, kind, now, include_object=include_object) for o in objs],
    }
