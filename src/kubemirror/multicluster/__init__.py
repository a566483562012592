"""Clusterpedia-style multi-cluster storage and a Kubernetes-compatible API (see DESIGN.md).

``MemoryStorage`` keeps every cluster's objects with one global event order;
``KubeApiServer`` serves it over HTTP so kubectl and Kubernetes clients work
unchanged; ``ClusterSynchro`` feeds it from member clusters. ``Storage`` is the
interface both use, which ``kubemirror.multicluster.postgres.PostgresStorage``
(the ``postgres`` extra, not imported here) implements too.
"""

from kubemirror.listing import ListOptions
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.paging import EntryPage
from kubemirror.multicluster.resource_version import (
    WatchStart,
    new_prefix,
    parse_list_resource_version,
    parse_memory_resource_version,
    parse_watch_resource_version,
    to_list_resource_version,
    to_memory_resource_version,
)
from kubemirror.multicluster.resources import BUILTIN_RESOURCES, ResourceInfo
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import (
    CLUSTER_ANNOTATION,
    ClusterResourceStore,
    MemoryStorage,
    ResourceStorage,
)
from kubemirror.multicluster.storage_api import ClusterStoreApi, ResourceStorageApi, Storage
from kubemirror.multicluster.sync_lease import LocalSyncLease, SyncLease
from kubemirror.multicluster.synchro import ClusterSynchro, StorageListerWatcher
from kubemirror.multicluster.watch_cache import (
    INITIAL_EVENTS_END_ANNOTATION,
    StorageEvent,
    StoredObject,
    Watch,
)

__all__ = [
    "BUILTIN_RESOURCES",
    "CLUSTER_ANNOTATION",
    "ClusterResourceStore",
    "ClusterStoreApi",
    "ClusterSynchro",
    "EntryPage",
    "INITIAL_EVENTS_END_ANNOTATION",
    "KubeApiServer",
    "ListOptions",
    "ListScope",
    "LocalSyncLease",
    "MemoryStorage",
    "ResourceInfo",
    "ResourceStorage",
    "ResourceStorageApi",
    "Storage",
    "StorageEvent",
    "StorageListerWatcher",
    "StoredObject",
    "SyncLease",
    "Watch",
    "WatchStart",
    "new_prefix",
    "parse_list_resource_version",
    "parse_memory_resource_version",
    "parse_watch_resource_version",
    "to_list_resource_version",
    "to_memory_resource_version",
]
