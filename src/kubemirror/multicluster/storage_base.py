"""What the memory and the PostgreSQL storages share (multicluster layer).

Both storages keep a registry of resource types (``StorageBase``: register,
look up, list them) and, per type, serve watches from a replica-local
``watch_cache.WatchCache`` and LIST and WATCH requests with the same checks
(``ResourceStorageBase``: the request checks and parsing, continue tokens bound
to the storage, the type and the request, the watch opened on the watch cache).
Where the data lives, how a page is read and how writes are applied is each
storage's own (``storage.MemoryStorage``, ``postgres.PostgresStorage``).
"""

from __future__ import annotations

import abc
import builtins
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from kubemirror import keys
from kubemirror.listing import ListOptions
from kubemirror.multicluster import paging, status, watch_cache
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.multicluster.list_request import ListScope, object_filter, validate_list_options
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import GroupVersionResource

__all__ = ["ResourceStorageBase", "StorageBase"]

StateT = TypeVar("StateT", bound=watch_cache.StorageState)
ResourceStorageT = TypeVar("ResourceStorageT", bound="ResourceStorageBase[Any]")
PositionT = TypeVar("PositionT")


class ResourceStorageBase(Generic[StateT]):
    """The part of a resource type's storage that does not depend on where objects live.

    ``storage`` is the owning storage (read live by the watch cache), ``lock`` the
    storage's lock (the watch cache's too), ``event_window`` the number of events
    kept for watches resuming from an older version. Thread safety and blocking
    are the subclass's (see ``storage.ResourceStorage``).
    """

    def __init__(
        self, storage: StateT, info: ResourceInfo, *, lock: threading.RLock, event_window: int
    ) -> None:
        self.info = info
        self._storage = storage
        self._watch_cache = watch_cache.WatchCache(
            storage, lock, capacity=event_window, kind=info.kind, api_version=info.api_version
        )

    @property
    def gvr(self) -> GroupVersionResource:
        """The resource type stored here."""
        return self.info.gvr

    @property
    def watcher_count(self) -> int:
        """Number of open watches (on this replica)."""
        return self._watch_cache.watcher_count

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.gvr})"

    def _key(self, namespace: str, name: str) -> str:
        """The storage key of ``name`` in ``namespace`` (ignored for cluster-scoped types)."""
        return keys.object_key(namespace if self.info.namespaced else "", name)

    # -- LIST -----------------------------------------------------------------------------

    def _list_request(self, opts: ListOptions, scope: ListScope) -> tuple[ObjectFilter, str]:
        """The checked LIST request: its filter and the ``paging.scope_key`` its continue
        tokens are bound to. Raises ``InvalidError`` or ``BadRequestError``."""
        validate_list_options(opts, watch=False)
        flt = object_filter(scope, opts, self.info)
        paging.check_paging(opts)
        return flt, paging.scope_key(scope, opts)

    def _encode_continue(self, bound_to: str, position: Mapping[str, object]) -> str:
        """The continue token of a page of this type of this storage (``paging``)."""
        return paging.encode_continue(self._storage.prefix, self.info, bound_to, position)

    def _decode_continue(
        self,
        token: str,
        bound_to: str,
        position: Callable[[Mapping[str, Any]], PositionT | None],
    ) -> PositionT:
        """The position of a token ``_encode_continue`` issued (``paging.decode_continue``)."""
        return paging.decode_continue(token, self._storage.prefix, self.info, bound_to, position)

    # -- WATCH ----------------------------------------------------------------------------

    def _watch_request(
        self, opts: ListOptions, scope: ListScope
    ) -> tuple[ObjectFilter, rvs.WatchStart, bool]:
        """The checked WATCH request: its filter, where it starts, and whether it first
        replays the current state (``""``/``"0"`` unless ``send_initial_events`` is
        False, or ``send_initial_events``). Raises ``InvalidError``, ``BadRequestError``."""
        validate_list_options(opts, watch=True)
        flt = object_filter(scope, opts, self.info)
        start = rvs.parse_watch_resource_version(opts.resource_version, self._storage.prefix)
        replay = bool(opts.send_initial_events) or (
            opts.send_initial_events is None
            and start.index is None
            and start.cluster_versions is None
        )
        return flt, start, replay

    def _open_watch(
        self,
        flt: ObjectFilter,
        start: rvs.WatchStart,
        opts: ListOptions,
        initial: builtins.list[watch_cache.StoredObject] | None,
        initial_index: int | None = None,
    ) -> watch_cache.Watch:
        """The watch of ``_watch_request``'s request on the watch cache, replaying
        ``initial`` (the state at ``initial_index``) first when given. Lock held."""
        return self._watch_cache.watch(
            flt,
            start,
            resource_version=opts.resource_version,
            initial=initial,
            initial_index=initial_index,
            initial_end_bookmark=bool(opts.send_initial_events) and opts.allow_watch_bookmarks,
            allow_bookmarks=opts.allow_watch_bookmarks,
        )


class StorageBase(abc.ABC, Generic[ResourceStorageT]):
    """The registry of resource types of a storage (one resource storage per type) and
    its storage-wide index.

    Subclasses set ``prefix``, ``_index`` (the newest index the storage knows: the
    last issued in memory, the last read from the event log on a PostgreSQL
    replica), ``_lock`` (the storage's lock) and ``_resources`` (empty), and build
    a type's storage in ``_add_resource_storage``. Thread-safe.
    """

    prefix: str
    _index: int
    _lock: threading.RLock
    _resources: dict[GroupVersionResource, ResourceStorageT]

    @property
    def index(self) -> int:
        """The newest index this storage (replica) knows (0 before the first write)."""
        return self._index

    @property
    def resource_version(self) -> str:
        """The list resourceVersion of the whole storage, as of ``index``."""
        return rvs.to_list_resource_version(self.prefix, self._index)

    def new_resource_storage(
        self,
        gvr: GroupVersionResource | ResourceInfo,
        *,
        namespaced: bool = True,
        kind: str = "",
        list_kind: str = "",
        singular: str = "",
        short_names: tuple[str, ...] = (),
        categories: tuple[str, ...] = (),
    ) -> ResourceStorageT:
        """Register a resource type (or return the one already registered)."""
        info = (
            gvr
            if isinstance(gvr, ResourceInfo)
            else ResourceInfo(
                gvr,
                kind=kind,
                namespaced=namespaced,
                list_kind=list_kind,
                singular=singular,
                short_names=short_names,
                categories=categories,
            )
        )
        with self._lock:
            found = self._resources.get(info.gvr)
            if found is None:
                found = self._resources[info.gvr] = self._add_resource_storage(info)
            return found

    @abc.abstractmethod
    def _add_resource_storage(self, info: ResourceInfo) -> ResourceStorageT:
        """The storage of a newly registered type. Lock held."""

    def resource_storage(self, gvr: GroupVersionResource) -> ResourceStorageT:
        """The storage of a registered type; raises ``NotFoundError`` otherwise."""
        rs = self._resources.get(gvr)
        if rs is None:
            raise status.not_found(gvr.resource, "", gvr.group)
        return rs

    def resource_storages(self) -> builtins.list[ResourceStorageT]:
        """Every registered type, in registration order."""
        with self._lock:
            return list(self._resources.values())
