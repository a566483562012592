"""Which stored resource and which member cluster a request of the served API acts on.

Part of the served API (multicluster layer). ``find_resource`` maps a parsed path to
its ``ResourceStorage`` (404 as kube-apiserver words it); ``locate_cluster`` picks the
cluster a named request acts on: the one in the path (``/clusters/<name>/``), else a
hint (the object's ``CLUSTER_ANNOTATION``), the default cluster if it holds the
object, else the first cluster (by name) that does. Pure reads of the storage.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubemirror import errors, keys
from kubemirror.multicluster import request_info, status
from kubemirror.multicluster.storage_api import ResourceStorageApi, Storage
from kubemirror.types import GroupVersionResource

__all__ = ["find_resource", "locate_cluster", "stored_key", "unknown_cluster"]


def find_resource(storage: Storage, info: request_info.RequestInfo) -> ResourceStorageApi:
    """The storage of the path's resource type; 404 for an unknown type, or for a
    cluster-scoped type asked under a namespace."""
    gvr = GroupVersionResource(info.group, info.version, info.resource)
    try:
        rs = storage.resource_storage(gvr)
    except errors.NotFoundError:
        raise errors.NotFoundError(
            status.make_status(
                404,
                "NotFound",
                f"the server could not find the requested resource ({info.path})",
            )
        ) from None
    if info.namespace and not rs.info.namespaced:
        raise errors.NotFoundError(
            status.make_status(
                404, "NotFound", f"{rs.info.gvr.resource} is not namespaced ({info.path})"
            )
        )
    return rs


def stored_key(rs: ResourceStorageApi, namespace: str, name: str) -> str:
    """The storage key of ``name``: ``keys.object_key``, without the namespace of a
    cluster-scoped type."""
    return keys.object_key(namespace if rs.info.namespaced else "", name)


async def locate_cluster(
    storage: Storage,
    rs: ResourceStorageApi,
    info: request_info.RequestInfo,
    default_cluster: str,
    hint: str | None = None,
) -> str:
    """The cluster a named request acts on (see the module docstring)."""
    if info.cluster is not None:
        return info.cluster
    key = stored_key(rs, info.namespace, info.name)
    if hint and storage.has_cluster(hint):
        return hint
    if await rs.aget_entry(default_cluster, key) is not None:
        return default_cluster
    for cluster in storage.clusters():
        if await rs.aget_entry(cluster, key) is not None:
            return cluster
    return default_cluster


def unknown_cluster(name: str, known: Iterable[str]) -> errors.NotFoundError:
    """The 404 for ``/clusters/<name>/`` of a cluster that is not served, naming those that are."""
    names = ", ".join(sorted(known)) or "none"
    return errors.NotFoundError(
        status.make_status(
            404,
            "NotFound",
            f'cluster "{name}" not found; known clusters: {names}',
            {"name": name, "group": "cluster.clusterpedia.io", "kind": "clusters"},
        )
    )
