"""Multi-cluster in-memory resource storage with LIST and WATCH.

The Clusterpedia memory storage v2 (multicluster layer). ``MemoryStorage`` holds
one ``ResourceStorage`` per resource type; each keeps the objects of every
cluster, stamped with the cluster name (annotation ``CLUSTER_ANNOTATION``) and a
``<prefix>.<index>.<original rv>`` resourceVersion. One storage-wide counter
orders every write of every cluster and resource; writers (a cluster synchro
through ``ClusterResourceStore``, API writes through ``create``/``update``/
``delete``) may interleave from many tasks or threads: each write is atomic
under one lock, so no event is lost or reordered. Every write is recorded in
the resource type's ``watch_cache.WatchCache``, the bounded event window that
watches read. A LIST page is the state at one version after one key: the
current entries in key order (``key_order``; with a label equality, only those
carrying the label: ``label_orders``) with the events written since undone
from the watch cache, so a continue token is just (version, last key) and a
page costs what it holds (``paging.cut_page``). The type registry, the watch
cache and the LIST/WATCH request checks are ``storage_base``'s, shared with
``postgres.PostgresStorage``.

Objects are kept compactly by default (``compact_objects``): the stamped
object's JSON plus the parts selectors read; a write given a ``RawObject`` (a
synchro's ``ListWatch`` with a ``PartialDecoder``) keeps the bytes received.
Reads never copy what is stored: do not mutate what ``get``, ``list`` or a watch
hand out. With ``compact=False`` writes copy the top-level dict and ``metadata``
of the object they are given and share everything below; do not mutate an
object after handing it to the storage.
"""

from __future__ import annotations

import builtins
import functools
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from kubemirror import errors, keys
from kubemirror.cache.raw_object import RawObject
from kubemirror.listing import ListOptions
from kubemirror.multicluster import (
    compact_objects,
    key_order,
    label_orders,
    paging,
    status,
    storage_base,
    sync_lease,
    watch_cache,
)
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.compact_objects import (
    CLUSTER_ANNOTATION,
    selectable_skeleton,
    stamp_object,
)
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import GroupVersionResource, MutableObj, Obj

__all__ = [
    "CLUSTER_ANNOTATION",
    "ClusterResourceStore",
    "MemoryStorage",
    "ResourceStorage",
    "check_cluster_name",
    "deleted_state",
    "key_and_namespace",
    "original_resource_version",
    "selectable_skeleton",
    "stamp_object",
]

LABEL_ORDERS_PER_CLUSTER = 16
"""Label equalities (``app=api``) each cluster keeps a ``label_orders`` order of."""

P = ParamSpec("P")
T = TypeVar("T")
SelfT = TypeVar("SelfT")

def _async_twin(
    sync: Callable[Concatenate[SelfT, P], T],
) -> Callable[Concatenate[SelfT, P], Coroutine[Any, Any, T]]:
    """A coroutine method calling the synchronous method ``sync`` (same parameters):
    the async interface the memory storage shares with ``PostgresStorage``."""

    async def twin(self: SelfT, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return sync(self, *args, **kwargs)

    twin.__name__ = twin.__qualname__ = "a" + sync.__name__
    twin.__doc__ = f"``{sync.__name__}``, as a coroutine."
    return twin


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise errors.KeyFuncError(obj, "object has no metadata")
    return meta


def key_and_namespace(info: ResourceInfo, obj: Obj) -> tuple[str, str]:
    """``(key, namespace)`` of ``obj`` in a storage of ``info``'s type; raises
    ``InvalidError`` (422) naming the missing or malformed ``metadata`` field."""
    meta = _meta(obj)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise status.invalid(info.kind, "", "metadata.name", "name is required")
    namespace = meta.get("namespace") or ""
    if not isinstance(namespace, str):
        raise status.invalid(info.kind, name, "metadata.namespace", "must be a string")
    if info.namespaced and not namespace:
        raise status.invalid(info.kind, name, "metadata.namespace", "namespace is required")
    if not info.namespaced and namespace:
        namespace = ""
    return keys.object_key(namespace, name), namespace


def original_resource_version(obj: Obj) -> str:
    """The member cluster's ``metadata.resourceVersion`` of ``obj`` (``""`` if none)."""
    rv = _meta(obj).get("resourceVersion")
    return rv if isinstance(rv, str) else ""


def deleted_state(previous: Obj, given: Obj | None) -> Obj:
    """What a DELETED event carries: ``given`` when it is a full object (a synchro's
    final state: a ``RawObject`` as received, or a dict with ``spec``, ``status`` or
    ``data``), else the last stored state."""
    return given if given is not None and _is_final_state(given) else previous


def _is_final_state(given: Obj) -> bool:
    """Whether ``given`` is a full object a DELETED event may carry (``deleted_state``)."""
    return bool(given.get("metadata")) and (
        isinstance(given, RawObject) or "spec" in given or "status" in given or "data" in given
    )


class ResourceStorage(storage_base.ResourceStorageBase["MemoryStorage"]):
    """The objects of one resource type across all clusters, with LIST and WATCH.

    Thread-safe: every method may be called from any thread (writes take the
    owning storage's lock; watchers must all iterate on one event loop). Reads
    return shared objects. ``get`` is O(1); a ``list`` page is O(page + entries its
    selectors skip + events since its version + clusters * log n) under the lock
    (the first LIST of a type in a cluster sorts its keys once); a write is
    O(log n) plus the wake-up of waiting watchers.
    """

    def __init__(self, storage: MemoryStorage, info: ResourceInfo) -> None:
        super().__init__(storage, info, lock=storage._lock, event_window=storage.event_window)
        self._lock = storage._lock
        self._clusters: dict[str, dict[str, watch_cache.StoredObject]] = {}
        self._sorted: dict[str, key_order.KeyOrder] = {}
        self._labelled: dict[str, label_orders.LabelOrders] = {}
        self._compact = compact_objects.CompactEncoder(info)

    # -- writes ---------------------------------------------------------------------------

    def _objects(self, cluster: str) -> dict[str, watch_cache.StoredObject]:
        objects = self._clusters.get(cluster)
        if objects is None:
            if cluster not in self._storage._clusters:
                raise status.not_found("clusters", cluster, "cluster.clusterpedia.io")
            objects = self._clusters[cluster] = {}
        return objects

    def _stamp(self, cluster: str, obj: Obj, index: int, original_rv: str) -> MutableObj:
        return stamp_object(self.info, self._storage.prefix, cluster, obj, index, original_rv)

    def _key_of(self, obj: Obj) -> tuple[str, str]:
        return key_and_namespace(self.info, obj)

    def _commit(
        self,
        cluster: str,
        key: str,
        namespace: str,
        type_: watch_cache.EventType,
        obj: Obj,
        original_rv: str | None,
        previous: watch_cache.StoredObject | None,
    ) -> watch_cache.StoredObject:
        """Assign the next index, store or remove the object, record the event. Lock held."""
        objects = self._objects(cluster)
        index = self._storage._next_index()
        orig = original_rv if original_rv else str(index)
        if self._storage.compact:
            encoded, skeleton = self._compact.encode(
                obj, self._storage.prefix, cluster, index, orig
            )
            entry = watch_cache.StoredObject(
                None,
                cluster=cluster,
                key=key,
                namespace=sys.intern(namespace),
                index=index,
                original_rv=orig,
                encoded=encoded,
                selectable=skeleton,
            )
        else:
            if isinstance(obj, RawObject):
                obj = obj.decode()
            entry = watch_cache.StoredObject(
                self._stamp(cluster, obj, index, orig), cluster=cluster, key=key,
                namespace=namespace, index=index, original_rv=orig,
            )
        order = self._sorted.get(cluster)
        labelled = self._labelled.get(cluster)
        if type_ == "DELETED":
            del objects[key]
            if order is not None:
                order.remove(key)
            if labelled is not None:
                labelled.write(key, None)
        else:
            objects[key] = entry
            if order is not None:
                order.put(key, entry)
            if labelled is not None:
                labelled.write(key, entry)
        self._watch_cache.append(watch_cache.StorageEvent(type_, entry, index, previous))
        return entry

    @staticmethod
    def _original_rv(obj: Obj) -> str:
        return original_resource_version(obj)

    def create(self, cluster: str, obj: Obj) -> Obj:
        """Store a new object of ``cluster``; returns the stored version.

        ``metadata.resourceVersion`` of ``obj`` is kept as the original version
        (the storage index is used when it is empty). Raises ``ConflictError``
        (AlreadyExists) if the name is taken, ``InvalidError`` without a name,
        ``NotFoundError`` for a cluster that was not prepared.
        """
        key, namespace = self._key_of(obj)
        with self._lock:
            objects = self._objects(cluster)
            if key in objects:
                raise status.already_exists(self.info.gvr.resource, key, self.info.gvr.group)
            return self._commit(
                cluster, key, namespace, "ADDED", obj, self._original_rv(obj), None
            ).object

    def update(
        self,
        cluster: str,
        obj: Obj,
        *,
        expected_resource_version: str | None = None,
        original_rv: str | None = None,
    ) -> Obj:
        """Replace an existing object of ``cluster``; returns the stored version.

        With ``expected_resource_version`` (the memory version a client read), a
        mismatch raises ``ConflictError``. ``original_rv`` overrides the original
        version recorded (default: ``obj``'s ``metadata.resourceVersion``).
        Raises ``NotFoundError`` if the object does not exist.
        """
        key, namespace = self._key_of(obj)
        with self._lock:
            previous = self._existing(
                cluster,
                key,
                expected_resource_version,
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
            )
            orig = self._original_rv(obj) if original_rv is None else original_rv
            return self._commit(cluster, key, namespace, "MODIFIED", obj, orig, previous).object

    def _existing(
        self, cluster: str, key: str, expected_resource_version: str | None, conflict: str
    ) -> watch_cache.StoredObject:
        """The stored entry of ``key``; ``NotFoundError`` if absent, ``ConflictError``
        (with the ``conflict`` message) if it is not at ``expected_resource_version``.
        Lock held."""
        previous = self._objects(cluster).get(key)
        if previous is None:
            raise status.not_found(self.info.gvr.resource, key, self.info.gvr.group)
        current_rv = rvs.to_memory_resource_version(
            self._storage.prefix, previous.index, previous.original_rv
        )
        if expected_resource_version and expected_resource_version != current_rv:
            raise status.conflict(self.info.gvr.resource, key, conflict, self.info.gvr.group)
        return previous

    def delete(self, cluster: str, obj: Obj) -> Obj:
        """Remove the object named by ``obj`` from ``cluster``; returns its final version.

        The DELETED event carries the last stored state (or ``obj`` when it has a
        ``spec``/``status``, as a synchro's final state) under a new version.
        Raises ``NotFoundError`` if absent.
        """
        key, _ = self._key_of(obj)
        return self.delete_by_key(cluster, key, final_state=obj)

    def delete_by_key(
        self,
        cluster: str,
        key: str,
        *,
        final_state: Obj | None = None,
        expected_resource_version: str | None = None,
    ) -> Obj:
        """Remove ``key`` (``"ns/name"`` or ``"name"``) from ``cluster``; see ``delete``."""
        return self._delete_entry(
            cluster, key, final_state=final_state,
            expected_resource_version=expected_resource_version,
        ).object

    def _delete_entry(
        self,
        cluster: str,
        key: str,
        *,
        final_state: Obj | None = None,
        expected_resource_version: str | None = None,
    ) -> watch_cache.StoredObject:
        """``delete_by_key``, returning the DELETED entry (nothing decoded)."""
        with self._lock:
            previous = self._existing(
                cluster, key, expected_resource_version, "the resourceVersion precondition failed"
            )
            if final_state is not None and _is_final_state(final_state):
                state = final_state
                orig = self._original_rv(state) or previous.original_rv
            else:
                state, orig = self._state_of(previous), previous.original_rv
            return self._commit(cluster, key, previous.namespace, "DELETED", state, orig, previous)

    def _state_of(self, entry: watch_cache.StoredObject) -> Obj:
        """``entry``'s object for a new write: compact, its bytes (re-stamped by splicing,
        never decoded whole), else the stored dict."""
        if self._storage.compact:
            return RawObject({}, entry.encoded())
        return entry.object

    def upsert(self, cluster: str, obj: Obj) -> Obj:
        """Create or update ``obj`` in ``cluster`` (the synchro's add/update)."""
        return self._upsert_entry(cluster, obj).object

    def _upsert_entry(self, cluster: str, obj: Obj) -> watch_cache.StoredObject:
        """``upsert``, returning the stored entry (nothing decoded)."""
        key, namespace = self._key_of(obj)
        with self._lock:
            previous = self._objects(cluster).get(key)
            return self._commit(
                cluster,
                key,
                namespace,
                "ADDED" if previous is None else "MODIFIED",
                obj,
                self._original_rv(obj),
                previous,
            )

    def clean_cluster(self, cluster: str) -> int:
        """Delete every object of ``cluster`` (a DELETED event each); returns how many."""
        with self._lock:
            objects = self._clusters.get(cluster)
            if not objects:
                self._clusters.pop(cluster, None)
                return 0
            count = 0
            self._sorted.pop(cluster, None)  # not kept in step with every delete: O(n^2)
            self._labelled.pop(cluster, None)
            for key in sorted(objects):
                previous = objects[key]
                self._commit(
                    cluster,
                    key,
                    previous.namespace,
                    "DELETED",
                    self._state_of(previous),
                    previous.original_rv,
                    previous,
                )
                count += 1
            del self._clusters[cluster]
            self._sorted.pop(cluster, None)
            self._labelled.pop(cluster, None)
            return count

    # -- reads ----------------------------------------------------------------------------

    def get(self, cluster: str, namespace: str, name: str) -> Obj | None:
        """The stored object, or ``None`` (shared; do not mutate)."""
        entry = self._clusters.get(cluster, {}).get(self._key(namespace, name))
        return None if entry is None else entry.object

    def get_entry(self, cluster: str, key: str) -> watch_cache.StoredObject | None:
        """The stored entry for ``key`` in ``cluster``, or ``None``."""
        return self._clusters.get(cluster, {}).get(key)

    def clusters(self) -> list[str]:
        """Clusters that currently hold objects of this type, sorted."""
        return sorted(c for c, objects in self._clusters.items() if objects)

    def count(self, cluster: str | None = None) -> int:
        """Number of stored objects (of one cluster, or all)."""
        if cluster is not None:
            return len(self._clusters.get(cluster, {}))
        return sum(len(objects) for objects in self._clusters.values())

    def resource_versions(self, cluster: str) -> dict[str, str]:
        """``{key: original resourceVersion}`` of every object of ``cluster``."""
        with self._lock:
            return {k: e.original_rv for k, e in self._clusters.get(cluster, {}).items()}

    def _snapshot_entries(self, flt: ObjectFilter) -> list[watch_cache.StoredObject]:
        """Every in-scope entry in (cluster, key) order. Lock held."""
        out: list[watch_cache.StoredObject] = []
        for cluster in sorted(self._clusters):
            if flt.clusters and cluster not in flt.clusters:
                continue
            order = self._key_order(cluster)
            if order is not None:
                order.copy_into(out, flt.namespace if self.info.namespaced else "")
        return out

    def _check_list_rv(self, opts: ListOptions) -> int | None:
        """Validate the resourceVersion parameters of a LIST; returns a pinned index or None."""
        rv, match = opts.resource_version, opts.resource_version_match
        if rv in ("", "0"):
            return None
        index = rvs.parse_list_resource_version(rv, self._storage.prefix)
        if index > self._storage._index:
            raise status.too_large_resource_version(
                rv, rvs.to_list_resource_version(self._storage.prefix, self._storage._index)
            )
        if match == "Exact":
            return index
        return None

    def _at_version(
        self, flt: ObjectFilter, index: int
    ) -> builtins.list[paging.ClusterAtVersion]:
        """The in-scope clusters at ``index``, sorted: each one's current entries and
        its keys written since with their states at ``index`` (undone from the watch
        cache's events). Raises ``GoneError`` when those events already left the
        ring. Lock held."""
        undone: dict[str, builtins.list[tuple[str, watch_cache.StoredObject | None]]] = {}
        if index < self._watch_cache.latest_index:
            for (cluster, key), state in self._watch_cache.states_at(index).items():
                if not flt.clusters or cluster in flt.clusters:
                    undone.setdefault(cluster, []).append((key, state))
        label = flt.label_equality
        load = self._key_order if label is None else functools.partial(self._label_order, label)
        parts = []
        for cluster in sorted(undone.keys() | self._clusters.keys()):
            if flt.clusters and cluster not in flt.clusters:
                continue
            changed = undone.get(cluster, [])
            changed.sort(key=lambda item: item[0])
            objects = self._clusters.get(cluster, {})
            parts.append(paging.ClusterAtVersion(cluster, objects, load, changed))
        return parts

    def _key_order(self, cluster: str) -> key_order.KeyOrder | None:
        """``cluster``'s entries in key order (sorted on first use, then kept in step
        with writes); ``None`` when it holds nothing of this type. Lock held."""
        objects = self._clusters.get(cluster)
        if objects is None:
            return None
        order = self._sorted.get(cluster)
        if order is None:
            order = self._sorted[cluster] = key_order.KeyOrder(objects)
        return order

    def _label_order(self, label: tuple[str, str], cluster: str) -> key_order.KeyOrder | None:
        """``cluster``'s entries carrying ``label`` in key order (``label_orders``).
        Lock held."""
        order = self._key_order(cluster)
        if order is None:
            return None
        labelled = self._labelled.get(cluster)
        if labelled is None:
            labelled = self._labelled[cluster] = label_orders.LabelOrders(
                LABEL_ORDERS_PER_CLUSTER
            )
        return labelled.order(label, order)

    def list(
        self, opts: ListOptions = ListOptions(), *, scope: ListScope = ListScope()
    ) -> paging.EntryPage:
        """One page of the objects of ``scope`` that ``opts`` selects (shared; do not mutate).

        A LIST without ``continue_token`` reads the current state
        (``resource_version`` ``""``/``"0"``/any version not newer than the storage),
        or with ``Exact`` the state at that version: the current one with the later
        events of the watch cache undone (410 once they left it). With ``limit`` the
        continue token carries the page's version and its last (cluster, key); the
        next page is the state at that version after that key, read the same way, so
        the pages of one LIST are consistent and each costs what it holds (plus the
        entries a selector skips and the events written since the first page). A
        token whose version left the watch cache raises ``GoneError`` (410 Expired)
        carrying a fresh token that reads the rest at the current version, as
        kube-apiserver does; one another instance issued raises ``GoneError``; bad
        parameters raise ``BadRequestError``.
        """
        flt, bound_to = self._list_request(opts, scope)
        after: tuple[str, str] | None = None
        namespace = flt.namespace if self.info.namespaced else ""
        with self._lock:
            if opts.continue_token:
                index, after = self._decode_continue(
                    opts.continue_token, bound_to, paging.key_position
                )
                if index > self._storage._index:
                    raise paging.bad_continue(paging.FUTURE_POSITION)
            else:
                pinned = self._check_list_rv(opts)
                index = self._storage._index if pinned is None else pinned
            try:
                parts = self._at_version(flt, index)
            except errors.GoneError:
                if after is None:
                    raise
                fresh = paging.key_token_position(self._storage._index, after)
                raise paging.continue_too_old(self._encode_continue(bound_to, fresh)) from None
            page, more = paging.cut_page(parts, namespace, after, opts.limit, flt)
            token = ""
            remaining: int | None = None
            if more and page:
                position = (page[-1].cluster, page[-1].key)
                token = self._encode_continue(bound_to, paging.key_token_position(index, position))
                if flt.selects_everything_in_scope:
                    remaining = paging.count_after(parts, namespace, position)
        return paging.EntryPage(
            page, rvs.to_list_resource_version(self._storage.prefix, index), token, remaining
        )

    # -- watch ----------------------------------------------------------------------------

    def watch(
        self, opts: ListOptions = ListOptions(), *, scope: ListScope = ListScope()
    ) -> watch_cache.Watch:
        """Start a watch of ``scope``; iterate the returned ``Watch`` for ``StorageEvent``s.

        ``resource_version``: ``""`` or ``"0"`` first replays the current state as
        ADDED events (unless ``send_initial_events`` is False); a list or object
        version streams the events after it (``GoneError`` when they left the
        window, a ``504`` ApiError when it is newer than the storage); JSON
        ``{"cluster": "original rv"}`` resumes per cluster. ``send_initial_events``
        ends the replay with a bookmark annotated ``INITIAL_EVENTS_END_ANNOTATION``.
        Raises before returning, so callers can answer with an error status.
        """
        flt, start, replay = self._watch_request(opts, scope)
        with self._lock:
            return self._open_watch(
                flt, start, opts, self._snapshot_entries(flt) if replay else None
            )

    # -- async twins: the interface shared with PostgresStorage's resource storages ------
    # Each never blocks for long (in-memory work under the lock; an unlimited ``list``
    # is O(n)).

    aget_entry = _async_twin(get_entry)
    aget = _async_twin(get)
    alist = _async_twin(list)
    awatch = _async_twin(watch)
    acreate = _async_twin(create)
    aupdate = _async_twin(update)
    aupsert = _async_twin(upsert)
    adelete = _async_twin(delete)
    adelete_by_key = _async_twin(delete_by_key)

    def cluster_store(self, cluster: str) -> ClusterResourceStore:
        """A cache ``Store`` over ``cluster``'s objects of this type (a synchro's target)."""
        return ClusterResourceStore(self, cluster)


class ClusterResourceStore:
    """One cluster's objects of one resource type, as a cache ``Store``.

    Lets a Reflector write a member cluster's objects straight into the storage.
    Keys are ``namespace/name``. ``replace`` applies a relist as a diff: ADDED or
    MODIFIED only for objects whose original resourceVersion changed, DELETED for
    keys that vanished, all in one atomic step. Reads return stored (stamped)
    objects, shared. Thread-safe.
    """

    def __init__(self, resource_storage: ResourceStorage, cluster: str) -> None:
        self.resource_storage = resource_storage
        self.cluster = cluster

    def add(self, obj: Obj) -> None:
        """Create or update ``obj``."""
        self.resource_storage._upsert_entry(self.cluster, obj)

    def update(self, obj: Obj) -> None:
        """Create or update ``obj``."""
        self.resource_storage._upsert_entry(self.cluster, obj)

    def delete(self, obj: Any) -> None:
        """Delete the object (or tombstone / explicit key); absent keys are ignored."""
        key = keys.meta_namespace_key(obj)
        final = obj if isinstance(obj, Mapping) else None
        if isinstance(obj, keys.DeletedFinalStateUnknown) and isinstance(obj.obj, Mapping):
            final = obj.obj
        with self.resource_storage._lock:
            if self.resource_storage.get_entry(self.cluster, key) is None:
                return
            self.resource_storage._delete_entry(self.cluster, key, final_state=final)

    def list(self) -> builtins.list[Obj]:
        """Every stored object of the cluster (shared)."""
        rs = self.resource_storage
        with rs._lock:
            return [e.object for e in rs._clusters.get(self.cluster, {}).values()]

    def list_keys(self) -> builtins.list[str]:
        """Every key of the cluster."""
        rs = self.resource_storage
        with rs._lock:
            return list(rs._clusters.get(self.cluster, {}))

    def get(self, obj: Any) -> Obj | None:
        """The stored object with ``obj``'s key, or ``None``."""
        return self.get_by_key(keys.meta_namespace_key(obj))

    def get_by_key(self, key: str) -> Obj | None:
        """The stored object with ``key``, or ``None``."""
        entry = self.resource_storage.get_entry(self.cluster, key)
        return None if entry is None else entry.object

    def replace(self, objs: Iterable[Obj], resource_version: str = "") -> None:
        """Make the cluster's content exactly ``objs``, emitting only real changes."""
        rs = self.resource_storage
        with rs._lock:
            current = rs._objects(self.cluster)
            seen: set[str] = set()
            for obj in objs:
                key, _ = rs._key_of(obj)
                seen.add(key)
                entry = current.get(key)
                original = ResourceStorage._original_rv(obj)
                if entry is not None and original and entry.original_rv == original:
                    continue
                rs._upsert_entry(self.cluster, obj)
            for key in [k for k in current if k not in seen]:
                rs._delete_entry(self.cluster, key)

    def resync(self) -> None:
        """Nothing to do: the storage is the source of truth."""


def check_cluster_name(cluster: str) -> None:
    """Raise ``ConfigError`` unless ``cluster`` can name a member (non-empty, no ``/``:
    it is a path segment of ``/clusters/<name>/`` and of storage keys)."""
    if not cluster or "/" in cluster:
        raise errors.ConfigError(
            "cluster names must be non-empty without '/'", field="cluster", expression=cluster
        )


class MemoryStorage(storage_base.StorageBase[ResourceStorage]):
    """Every resource type of every cluster, with one storage-wide event order.

    ``prefix`` (random by default) names this instance in resourceVersions;
    ``event_window`` events per resource type are kept for watches resuming from
    an older version, for ``Exact`` LISTs and for the continue tokens of paged LISTs
    (a token reads its first page's version while the events since are kept);
    ``max_watch_lag`` bounds how far a watcher may fall behind before it is cut
    off; ``bookmark_interval`` (seconds) spaces watch bookmarks.
    ``compact`` (the default) keeps each object as its JSON bytes plus the parts
    selectors read (``compact_objects``): LIST, GET and WATCH send the bytes as
    they are, selectors never decode, and the dict reads (``get``, a watch event's
    ``object``) decode a fresh copy each time, so ``get(...) is get(...)`` does not
    hold. The bytes are those of the dict layout (``compact=False``, which keeps the
    stamped dicts and ~3x the memory), so clients see no difference. Thread-safe.
    """

    def __init__(
        self,
        *,
        prefix: str | None = None,
        event_window: int = 100_000,
        max_watch_lag: int | None = None,
        bookmark_interval: float = 60.0,
        compact: bool = True,
    ) -> None:
        if event_window < 1:
            raise errors.ConfigError("must be at least 1", field="event_window")
        self.prefix = prefix or rvs.new_prefix()
        if "." in self.prefix or not self.prefix:
            raise errors.ConfigError(
                "must be non-empty without '.'", field="prefix", expression=self.prefix
            )
        self.event_window = event_window
        self.max_watch_lag = (
            max_watch_lag if max_watch_lag is not None else (max(1, event_window * 3 // 4))
        )
        self.bookmark_interval = bookmark_interval
        self.compact = compact
        self._lock = threading.RLock()
        self._index = 0
        self._clusters: set[str] = set()
        self._resources: dict[GroupVersionResource, ResourceStorage] = {}

    def _next_index(self) -> int:
        self._index += 1
        return self._index

    # -- clusters -------------------------------------------------------------------------

    def prepare_cluster(self, cluster: str) -> None:
        """Allow writes for ``cluster`` (idempotent)."""
        check_cluster_name(cluster)
        with self._lock:
            self._clusters.add(cluster)

    def clusters(self) -> list[str]:
        """Prepared clusters, sorted."""
        with self._lock:
            return sorted(self._clusters)

    def has_cluster(self, cluster: str) -> bool:
        """Whether ``cluster`` was prepared and not cleaned."""
        return cluster in self._clusters

    def clean_cluster(self, cluster: str) -> None:
        """Delete every object of ``cluster`` (DELETED events) and forget the cluster."""
        with self._lock:
            for rs in self._resources.values():
                rs.clean_cluster(cluster)
            self._clusters.discard(cluster)

    def clean_cluster_resource(self, cluster: str, gvr: GroupVersionResource) -> None:
        """Delete every object of one resource type of ``cluster``."""
        with self._lock:
            rs = self._resources.get(gvr)
            if rs is not None:
                rs.clean_cluster(cluster)

    def get_resource_versions(self, cluster: str) -> dict[GroupVersionResource, dict[str, str]]:
        """``{gvr: {key: original resourceVersion}}`` of everything ``cluster`` holds."""
        with self._lock:
            return {
                gvr: versions
                for gvr, rs in self._resources.items()
                if (versions := rs.resource_versions(cluster))
            }

    # -- resource types -------------------------------------------------------------------

    def _add_resource_storage(self, info: ResourceInfo) -> ResourceStorage:
        return ResourceStorage(self, info)

    def cluster_store(self, cluster: str, gvr: GroupVersionResource) -> ClusterResourceStore:
        """A cache ``Store`` over one cluster's objects of ``gvr``."""
        return ClusterResourceStore(self.resource_storage(gvr), cluster)

    # -- async twins and replicas: the interface shared with PostgresStorage ---------------

    async def start(self) -> None:
        """Nothing to connect to (the interface shared with ``PostgresStorage``)."""

    async def stop(self) -> None:
        """Nothing to close; the objects stay."""

    async def flush(self) -> None:
        """Nothing to wait for: every write is applied before it returns."""

    async def aclean_cluster(self, cluster: str) -> None:
        """``clean_cluster``."""
        self.clean_cluster(cluster)

    async def aclean_cluster_resource(self, cluster: str, gvr: GroupVersionResource) -> None:
        """``clean_cluster_resource``."""
        self.clean_cluster_resource(cluster, gvr)

    def sync_lease(self, cluster: str) -> sync_lease.SyncLease:
        """The right to sync ``cluster`` into this storage: always granted (one process)."""
        return sync_lease.LocalSyncLease(cluster)
