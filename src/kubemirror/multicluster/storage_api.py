"""The storage interface the API server and the cluster synchro use (multicluster layer).

Two implementations: ``storage.MemoryStorage`` (one process, in memory) and
``postgres.PostgresStorage`` (PostgreSQL, shared by replicas). ``Storage`` and
``ResourceStorageApi`` are the Protocols they both satisfy: synchronous
bookkeeping that never blocks (clusters, resource types, the current index)
and coroutines for everything that may do I/O (reads, writes, watches). The
contracts are the memory storage's, described on its methods. What does not
depend on where objects live, both implement once, in ``storage_base``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kubemirror.listing import ListOptions
from kubemirror.multicluster import paging, sync_lease, watch_cache
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import GroupVersionResource, Obj

__all__ = ["ClusterStoreApi", "ResourceStorageApi", "Storage"]


class ClusterStoreApi(Protocol):
    """One cluster's objects of one type, as the reflector writes them (``ReflectorStore``)."""

    def add(self, obj: Any) -> None: ...

    def update(self, obj: Any) -> None: ...

    def delete(self, obj: Any) -> None: ...

    def replace(self, objs: Sequence[Any], resource_version: str = "") -> None: ...

    def resync(self) -> None: ...


class ResourceStorageApi(Protocol):
    """The objects of one resource type across clusters (``ResourceStorage``'s contract)."""

    info: ResourceInfo

    @property
    def gvr(self) -> GroupVersionResource: ...

    @property
    def watcher_count(self) -> int: ...

    def count(self, cluster: str | None = None) -> int: ...

    def clusters(self) -> list[str]: ...

    async def aget_entry(self, cluster: str, key: str) -> watch_cache.StoredObject | None: ...

    async def aget(self, cluster: str, namespace: str, name: str) -> Obj | None: ...

    async def alist(
        self, opts: ListOptions = ..., *, scope: ListScope = ...
    ) -> paging.EntryPage: ...

    async def awatch(
        self, opts: ListOptions = ..., *, scope: ListScope = ...
    ) -> watch_cache.Watch: ...

    async def acreate(self, cluster: str, obj: Obj) -> Obj: ...

    async def aupdate(
        self,
        cluster: str,
        obj: Obj,
        *,
        expected_resource_version: str | None = None,
        original_rv: str | None = None,
    ) -> Obj: ...

    async def aupsert(self, cluster: str, obj: Obj) -> Obj: ...

    async def adelete(self, cluster: str, obj: Obj) -> Obj: ...

    async def adelete_by_key(
        self,
        cluster: str,
        key: str,
        *,
        final_state: Obj | None = None,
        expected_resource_version: str | None = None,
    ) -> Obj: ...

    def cluster_store(self, cluster: str) -> ClusterStoreApi: ...


class Storage(Protocol):
    """Every resource type of every cluster, one storage-wide event order."""

    prefix: str

    @property
    def index(self) -> int: ...

    @property
    def resource_version(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def prepare_cluster(self, cluster: str) -> None: ...

    def clusters(self) -> list[str]: ...

    def has_cluster(self, cluster: str) -> bool: ...

    async def aclean_cluster(self, cluster: str) -> None: ...

    async def aclean_cluster_resource(self, cluster: str, gvr: GroupVersionResource) -> None: ...

    async def flush(self) -> None: ...

    def sync_lease(self, cluster: str) -> sync_lease.SyncLease: ...

    def new_resource_storage(self, info: ResourceInfo, /) -> ResourceStorageApi:
        """Register a resource type (or return the one already registered); both
        storages also take a bare ``GroupVersionResource`` with the info's fields as
        keywords (``storage_base.StorageBase.new_resource_storage``)."""

    def resource_storage(self, gvr: GroupVersionResource) -> ResourceStorageApi: ...

    def resource_storages(self) -> Sequence[ResourceStorageApi]: ...
