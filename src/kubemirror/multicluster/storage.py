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
watches read. LIST pages are cut from a consistent snapshot kept for the
continue token.

Objects are kept compactly by default (``compact_objects``): the stamped
object's JSON plus the parts selectors read; a write given a ``RawObject`` (a
synchro's ``ListWatch`` with a ``PartialDecoder``) keeps the bytes received.
Reads never copy what is stored: do not mutate what ``get``, ``list`` or a watch
hand out. With ``compact=False`` writes copy the top-level dict and ``metadata``
of the object they are given and share everything below; do not mutate an
object after handing it to the storage.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import collections
import hashlib
import secrets
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kubemirror import errors, keys
from kubemirror.cache.raw_object import RawObject
from kubemirror.multicluster import compact_objects, key_order, status, sync_lease, watch_cache
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.compact_objects import (
    CLUSTER_ANNOTATION,
    selectable_skeleton,
    stamp_object,
)
from kubemirror.multicluster.filters import ObjectFilter, field_spec
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import GroupVersionResource, MutableObj, Obj

__all__ = [
    "CLUSTER_ANNOTATION",
    "ClusterResourceStore",
    "ListOptions",
    "ListResult",
    "MemoryStorage",
    "ResourceStorage",
    "bad_continue",
    "check_cluster_name",
    "deleted_state",
    "foreign_continue",
    "key_and_namespace",
    "original_resource_version",
    "selectable_skeleton",
    "stamp_object",
]

@dataclass(frozen=True, slots=True)
class ListOptions:
    """The parameters of a LIST or WATCH request.

    ``clusters`` empty means all clusters. ``resource_version`` and
    ``resource_version_match`` (``""``, ``"NotOlderThan"``, ``"Exact"``) follow the
    Kubernetes semantics described on ``ResourceStorage.list`` and ``.watch``.
    """

    clusters: tuple[str, ...] = ()
    namespace: str | None = None
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    allow_watch_bookmarks: bool = False
    send_initial_events: bool | None = None

    def object_filter(self, info: ResourceInfo | None = None) -> ObjectFilter:
        """The parsed selectors; raises ``BadRequestError`` for a bad selector (or, with
        the resource type's ``info``, a field selector the type does not support)."""
        return ObjectFilter.build(
            clusters=self.clusters,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            fields=field_spec(info.gvr.group, info.kind) if info is not None else None,
        )

    def scope_key(self) -> str:
        """What a continue token is bound to: clusters, namespace and selectors."""
        parts = (",".join(self.clusters), self.namespace or "")
        text = "\x00".join((*parts, self.label_selector, self.field_selector))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def validate(self, *, watch: bool) -> None:
        """Check the resourceVersion and streaming parameters as kube-apiserver's
        ``ValidateListOptions``; raises ``InvalidError`` (422, ``ListOptions``)."""
        problems: list[status.FieldError] = []
        match = self.resource_version_match
        if watch:
            if self.send_initial_events is not None and match != "NotOlderThan":
                problems.append(
                    status.FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    )
                )
            if match:
                if self.send_initial_events is None:
                    problems.append(
                        status.FieldError(
                            "Forbidden",
                            "resourceVersionMatch",
                            "resourceVersionMatch is forbidden for watch unless "
                            "sendInitialEvents is provided",
                        )
                    )
                if match != "NotOlderThan":
                    problems.append(
                        status.FieldError(
                            "NotSupported",
                            "resourceVersionMatch",
                            'supported values: "NotOlderThan"',
                            match,
                        )
                    )
        else:
            if match:
                if not self.resource_version:
                    problems.append(
                        status.FieldError(
                            "Forbidden",
                            "resourceVersionMatch",
                            "resourceVersionMatch is forbidden unless resourceVersion is provided",
                        )
                    )
                if self.continue_token:
                    problems.append(
                        status.FieldError(
                            "Forbidden",
                            "resourceVersionMatch",
                            "resourceVersionMatch is forbidden when continue is provided",
                        )
                    )
                if match not in ("Exact", "NotOlderThan"):
                    problems.append(
                        status.FieldError(
                            "NotSupported",
                            "resourceVersionMatch",
                            'supported values: "Exact", "NotOlderThan", ""',
                            match,
                        )
                    )
                if match == "Exact" and self.resource_version == "0":
                    problems.append(
                        status.FieldError(
                            "Forbidden",
                            "resourceVersionMatch",
                            'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                        )
                    )
            if self.send_initial_events is not None:
                problems.append(
                    status.FieldError(
                        "Forbidden", "sendInitialEvents", "sendInitialEvents is forbidden for list"
                    )
                )
        if problems:
            raise status.invalid_fields("ListOptions", "", problems, "meta.k8s.io")


@dataclass(frozen=True, slots=True)
class ListResult:
    """One LIST page: stored entries, the list resourceVersion and the continue token.

    ``remaining_item_count`` is set only for a paged list without selectors.
    """

    entries: Sequence[watch_cache.StoredObject]
    resource_version: str
    continue_token: str = ""
    remaining_item_count: int | None = None

    @property
    def items(self) -> list[Obj]:
        """The objects of the page (shared; do not mutate)."""
        return [entry.object for entry in self.entries]


@dataclass(slots=True)
class _Snapshot:
    entries: list[watch_cache.StoredObject]
    index: int
    scope: str = ""


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


class ResourceStorage:
    """The objects of one resource type across all clusters, with LIST and WATCH.

    Thread-safe: every method may be called from any thread (writes take the
    owning storage's lock; watchers must all iterate on one event loop). Reads
    return shared objects. ``get`` is O(1); ``list`` is O(n) over the requested
    clusters (plus a sort after membership changes); a write is O(1) plus the
    wake-up of waiting watchers.
    """

    def __init__(self, storage: MemoryStorage, info: ResourceInfo) -> None:
        self.info = info
        self._storage = storage
        self._lock = storage._lock
        self._clusters: dict[str, dict[str, watch_cache.StoredObject]] = {}
        self._sorted: dict[str, key_order.KeyOrder] = {}
        self._snapshots: collections.OrderedDict[str, _Snapshot] = collections.OrderedDict()
        self._compact = compact_objects.CompactEncoder(info)
        self._watch_cache = watch_cache.WatchCache(
            storage,
            storage._lock,
            capacity=storage.event_window,
            kind=info.kind,
            api_version=info.api_version,
        )

    # -- identity --------------------------------------------------------------------------

    @property
    def gvr(self) -> GroupVersionResource:
        """The resource type stored here."""
        return self.info.gvr

    @property
    def watcher_count(self) -> int:
        """Number of open watches."""
        return self._watch_cache.watcher_count

    def __repr__(self) -> str:
        return f"ResourceStorage({self.info.gvr})"

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
        if type_ == "DELETED":
            del objects[key]
            if order is not None:
                order.remove(key)
        else:
            objects[key] = entry
            if order is not None:
                order.put(key, entry)
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
            return count

    # -- reads ----------------------------------------------------------------------------

    def get(self, cluster: str, namespace: str, name: str) -> Obj | None:
        """The stored object, or ``None`` (shared; do not mutate)."""
        key = f"{namespace}/{name}" if namespace and self.info.namespaced else name
        entry = self._clusters.get(cluster, {}).get(key)
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
            objects = self._clusters[cluster]
            order = self._sorted.get(cluster)
            if order is None:
                order = self._sorted[cluster] = key_order.KeyOrder(objects)
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

    def _entries_at(self, flt: ObjectFilter, index: int) -> list[watch_cache.StoredObject]:
        """The in-scope entries as they were at ``index`` (``Exact`` lists), in (cluster,
        key) order: the current ones with the later events of the ring undone. Raises
        ``GoneError`` when those events already left the ring. Lock held."""
        state = {(e.cluster, e.key): e for e in self._snapshot_entries(flt)}
        namespace = flt.namespace if self.info.namespaced else ""
        for event in reversed(self._watch_cache.events_after(index)):
            entry = event.entry
            if (flt.clusters and entry.cluster not in flt.clusters) or (
                namespace and entry.namespace != namespace
            ):
                continue
            if event.previous is None:  # ADDED: it did not exist yet
                state.pop((entry.cluster, entry.key), None)
            else:  # MODIFIED, DELETED: it was the previous version
                state[(entry.cluster, entry.key)] = event.previous
        return [state[k] for k in sorted(state)]

    def list(self, opts: ListOptions = ListOptions()) -> ListResult:
        """One page of the objects selected by ``opts`` (shared; do not mutate).

        Without ``continue_token`` the page is cut from a snapshot of the current
        state (``resource_version`` ``""``/``"0"``/any version not newer than the
        storage), or of the state at that version with ``Exact``: the current one
        with the later events of the watch cache undone (410 once they left it). With
        ``limit`` the rest of the snapshot is kept for the continue token, so
        pages are stable and consistent; a token whose snapshot was evicted or
        that another instance issued raises ``GoneError`` (410 Expired). Bad
        parameters raise ``BadRequestError``.
        """
        opts.validate(watch=False)
        flt = opts.object_filter(self.info)
        if opts.limit < 0:
            raise status.bad_request(f"invalid limit {opts.limit}: must not be negative")
        snapshot_id: str | None = None
        scope = opts.scope_key()
        if opts.continue_token:
            if opts.resource_version not in ("", "0"):
                raise status.bad_request(
                    "specifying resource version is not allowed when using continue"
                )
            snapshot_id, offset = self._decode_continue(opts.continue_token, scope)
            with self._lock:
                snap = self._snapshots.get(snapshot_id)
                if snap is not None and snap.scope != scope:
                    raise foreign_continue()
                if snap is None:
                    raise status.expired(
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter."
                    )
                self._snapshots.move_to_end(snapshot_id)
        else:
            offset = 0
            with self._lock:
                pinned = self._check_list_rv(opts)
                if pinned is None:
                    snap = _Snapshot(self._snapshot_entries(flt), self._storage._index, scope)
                elif pinned < self._watch_cache.latest_index:
                    snap = _Snapshot(self._entries_at(flt, pinned), pinned, scope)
                else:
                    snap = _Snapshot(self._snapshot_entries(flt), pinned, scope)
        entries = snap.entries
        if flt.selects_everything_in_scope:
            page = (
                entries
                if not opts.limit and not offset
                else entries[offset : (offset + opts.limit if opts.limit else None)]
            )
            end = offset + len(page)
        else:
            page = []
            end = offset
            total = len(entries)
            while end < total and (not opts.limit or len(page) < opts.limit):
                entry = entries[end]
                end += 1
                if flt.in_scope(entry.cluster, entry.namespace) and flt.matches_object(
                    entry.selectable
                ):
                    page.append(entry)
        token = ""
        remaining: int | None = None
        if end < len(entries) and opts.limit:
            with self._lock:
                if snapshot_id is None:
                    snapshot_id = secrets.token_hex(8)
                    self._snapshots[snapshot_id] = snap
                    while len(self._snapshots) > self._storage.max_snapshots:
                        self._snapshots.popitem(last=False)
            token = self._encode_continue(snapshot_id, end, scope)
            if flt.selects_everything_in_scope:
                remaining = len(entries) - end
        elif snapshot_id is not None:
            with self._lock:
                self._snapshots.pop(snapshot_id, None)
        return ListResult(
            page, rvs.to_list_resource_version(self._storage.prefix, snap.index), token, remaining
        )

    def _encode_continue(self, snapshot_id: str, offset: int, scope: str) -> str:
        raw = orjson.dumps(
            {
                "p": self._storage.prefix,
                "r": self.info.gvr.api_version + "/" + self.info.gvr.resource,
                "q": scope,
                "s": snapshot_id,
                "o": offset,
            }
        )
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_continue(self, token: str, scope: str) -> tuple[str, int]:
        """The snapshot and offset of ``token``; 400 when it is malformed or was issued
        for another resource type, cluster, namespace or selector (``scope``)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise bad_continue("illegal base64 data") from None
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise bad_continue("not a JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_continue("not a JSON object")
        prefix, snapshot_id, offset = decoded.get("p"), decoded.get("s"), decoded.get("o")
        if (
            not isinstance(snapshot_id, str)
            or not isinstance(offset, int)
            or isinstance(offset, bool)
            or offset < 0
        ):
            raise bad_continue("incorrect encoded start position")
        if prefix != self._storage.prefix:
            raise status.expired(
                "The provided continue parameter was issued by another storage instance; "
                "start a new list without the continue parameter."
            )
        resource = self.info.gvr.api_version + "/" + self.info.gvr.resource
        if decoded.get("r") != resource or decoded.get("q") != scope:
            raise foreign_continue()
        return snapshot_id, offset

    # -- watch ----------------------------------------------------------------------------

    def watch(self, opts: ListOptions = ListOptions()) -> watch_cache.Watch:
        """Start a watch; iterate the returned ``Watch`` for ``StorageEvent``s.

        ``resource_version``: ``""`` or ``"0"`` first replays the current state as
        ADDED events (unless ``send_initial_events`` is False); a list or object
        version streams the events after it (``GoneError`` when they left the
        window, a ``504`` ApiError when it is newer than the storage); JSON
        ``{"cluster": "original rv"}`` resumes per cluster. ``send_initial_events``
        ends the replay with a bookmark annotated ``INITIAL_EVENTS_END_ANNOTATION``.
        Raises before returning, so callers can answer with an error status.
        """
        opts.validate(watch=True)
        flt = opts.object_filter(self.info)
        start = rvs.parse_watch_resource_version(opts.resource_version, self._storage.prefix)
        replay = bool(opts.send_initial_events) or (
            opts.send_initial_events is None
            and start.index is None
            and start.cluster_versions is None
        )
        with self._lock:
            return self._watch_cache.watch(
                flt,
                start,
                resource_version=opts.resource_version,
                initial=self._snapshot_entries(flt) if replay else None,
                initial_end_bookmark=bool(opts.send_initial_events)
                and opts.allow_watch_bookmarks,
                allow_bookmarks=opts.allow_watch_bookmarks,
            )

    # -- async twins: the interface shared with PostgresStorage's resource storages ------

    async def aget_entry(self, cluster: str, key: str) -> watch_cache.StoredObject | None:
        """``get_entry``; never blocks."""
        return self.get_entry(cluster, key)

    async def aget(self, cluster: str, namespace: str, name: str) -> Obj | None:
        """``get``; never blocks."""
        return self.get(cluster, namespace, name)

    async def alist(self, opts: ListOptions = ListOptions()) -> ListResult:
        """``list``; never blocks for long (O(n) in memory)."""
        return self.list(opts)

    async def awatch(self, opts: ListOptions = ListOptions()) -> watch_cache.Watch:
        """``watch``."""
        return self.watch(opts)

    async def acreate(self, cluster: str, obj: Obj) -> Obj:
        """``create``."""
        return self.create(cluster, obj)

    async def aupdate(
        self,
        cluster: str,
        obj: Obj,
        *,
        expected_resource_version: str | None = None,
        original_rv: str | None = None,
    ) -> Obj:
        """``update``."""
        return self.update(
            cluster, obj, expected_resource_version=expected_resource_version,
            original_rv=original_rv,
        )

    async def aupsert(self, cluster: str, obj: Obj) -> Obj:
        """``upsert``."""
        return self.upsert(cluster, obj)

    async def adelete(self, cluster: str, obj: Obj) -> Obj:
        """``delete``."""
        return self.delete(cluster, obj)

    async def adelete_by_key(
        self,
        cluster: str,
        key: str,
        *,
        final_state: Obj | None = None,
        expected_resource_version: str | None = None,
    ) -> Obj:
        """``delete_by_key``."""
        return self.delete_by_key(
            cluster, key, final_state=final_state,
            expected_resource_version=expected_resource_version,
        )

    def cluster_store(self, cluster: str) -> ClusterResourceStore:
        """A cache ``Store`` over ``cluster``'s objects of this type (a synchro's target)."""
        return ClusterResourceStore(self, cluster)


def bad_continue(reason: str) -> errors.BadRequestError:
    """The 400 for a continue token that does not decode (``reason`` says why)."""
    return status.bad_request(f"invalid continue token: continue key is not valid: {reason}")


def foreign_continue() -> errors.BadRequestError:
    """The 400 for a continue token issued for another resource, scope or selector."""
    return bad_continue(
        "it was issued for another request (a different resource, cluster, namespace, "
        "label selector or field selector)"
    )


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


class MemoryStorage:
    """Every resource type of every cluster, with one storage-wide event order.

    ``prefix`` (random by default) names this instance in resourceVersions;
    ``event_window`` events per resource type are kept for watches resuming from
    an older version; ``max_watch_lag`` bounds how far a watcher may fall behind
    before it is cut off; ``max_snapshots`` bounds LIST snapshots kept for
    continue tokens; ``bookmark_interval`` (seconds) spaces watch bookmarks.
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
        max_snapshots: int = 64,
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
        self.max_snapshots = max_snapshots
        self.bookmark_interval = bookmark_interval
        self.compact = compact
        self._lock = threading.RLock()
        self._index = 0
        self._clusters: set[str] = set()
        self._resources: dict[GroupVersionResource, ResourceStorage] = {}

    def _next_index(self) -> int:
        self._index += 1
        return self._index

    @property
    def index(self) -> int:
        """The newest index issued (0 before the first write)."""
        return self._index

    @property
    def resource_version(self) -> str:
        """The current list resourceVersion of the whole storage."""
        return rvs.to_list_resource_version(self.prefix, self._index)

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
    ) -> ResourceStorage:
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
            rs = self._resources.get(info.gvr)
            if rs is None:
                rs = self._resources[info.gvr] = ResourceStorage(self, info)
            return rs

    def resource_storage(self, gvr: GroupVersionResource) -> ResourceStorage:
        """The storage of a registered type; raises ``NotFoundError`` otherwise."""
        rs = self._resources.get(gvr)
        if rs is None:
            raise status.not_found(gvr.resource, "", gvr.group)
        return rs

    def resource_storages(self) -> list[ResourceStorage]:
        """Every registered type, in registration order."""
        with self._lock:
            return list(self._resources.values())

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
