"""``WatcherConfig`` and ``SingleWatcherConfig``: what to watch, validated up front.

Part of the ``watcher`` layer (haproxy-template-ic ``k8s/types``): the config
dataclasses with ``set_defaults()``/``validate()``, ``StoreType``, the defaults and
the callback types. Bad field paths and selectors fail at validation with a
``ConfigError`` naming the field, never at the first event. Also the one place
user callbacks are invoked (``invoke``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from kubemirror import drift, errors, paths, selectors
from kubemirror.stores import cached_store, indexed_store
from kubemirror.types import GroupVersionResource, Obj
from kubemirror.watcher.debouncer import ChangeStats
from kubemirror.watcher.kv_source import KVSource

__all__ = [
    "DEFAULT_CACHE_TTL",
    "DEFAULT_DEBOUNCE_INTERVAL",
    "DEFAULT_NAMESPACE_FILE",
    "OnChange",
    "OnResourceChange",
    "OnSyncComplete",
    "SingleWatcherConfig",
    "StoreType",
    "WatcherConfig",
    "compile_paths",
    "invoke",
]

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_INTERVAL = 0.1
"""Seconds between ``on_change`` calls by default. (The seed's ``DebounceInterval``
comment says 500ms, its constant says 100ms; the constant is what is used.)"""

DEFAULT_CACHE_TTL = 132.0
"""``cache_ttl`` default: 2.2 x a 60 s re-render cycle, so one failed cycle keeps objects cached."""

DEFAULT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
"""Where ``namespaced_watch`` reads the pod's own namespace."""


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


class StoreType(enum.Enum):
    """Which ``IndexedStore`` a ``Watcher`` fills."""

    MEMORY = "memory"
    """``MemoryStore``: whole objects in memory; fastest reads (the default)."""
    CACHED = "cached"
    """``CachedStore``: references only; objects fetched from the API on access."""


OnChange: TypeAlias = Callable[
    [indexed_store.IndexedStore, ChangeStats], "Awaitable[None] | None"
]
"""``on_change(store, stats)``: debounced; a plain function or a coroutine function."""

OnSyncComplete: TypeAlias = Callable[[indexed_store.IndexedStore, int], "Awaitable[None] | None"]
"""``on_sync_complete(store, initial_count)``: once, after the initial list is stored."""

OnResourceChange: TypeAlias = Callable[[Obj | None], "Awaitable[None] | None"]
"""``SingleWatcher`` callback: receives the object (``None`` only at sync when absent)."""


def _require_gvr(gvr: object) -> GroupVersionResource:
    if not isinstance(gvr, GroupVersionResource):
        raise errors.ConfigError(
            f"must be a GroupVersionResource, got {type(gvr).__name__}", field="gvr"
        )
    if not gvr.resource:
        raise errors.ConfigError("resource is required", field="gvr.resource")
    if not gvr.version:
        raise errors.ConfigError("version is required", field="gvr.version")
    return gvr


def _check_namespace(namespace: object, field_name: str, *, required: bool) -> str:
    if not isinstance(namespace, str):
        raise errors.ConfigError(
            f"must be a string, got {type(namespace).__name__}", field=field_name
        )
    if not namespace:
        if required:
            raise errors.ConfigError("namespace is required", field=field_name)
        return namespace
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise errors.ConfigError(
            "must be a DNS-1123 label (lowercase alphanumerics and '-')",
            field=field_name,
            expression=namespace,
        )
    return namespace


def _check_key_namespace(namespace: object, field_name: str) -> str:
    """A ``KVSource`` namespace: key parts between the prefix and the name (``""``: all)."""
    if not isinstance(namespace, str):
        raise errors.ConfigError(
            f"must be a string, got {type(namespace).__name__}", field=field_name
        )
    if namespace and (namespace != namespace.strip("/") or "//" in namespace):
        raise errors.ConfigError(
            "must be key parts joined by '/', without empty parts or edge slashes",
            field=field_name,
            expression=namespace,
        )
    return namespace


def _check_source(source: object, gvr: object) -> KVSource | None:
    """``None`` (Kubernetes: ``gvr`` required) or a valid ``KVSource`` (``gvr`` unset)."""
    if source is None:
        _require_gvr(gvr)
        return None
    if not isinstance(source, KVSource):
        raise errors.ConfigError(
            f"must be None (the Kubernetes resource gvr) or a KVSource, got "
            f"{type(source).__name__}",
            field="source",
        )
    source.validate("source")
    if gvr is not None:
        raise errors.ConfigError(
            "a KVSource mirrors a kvstore key prefix, not a resource type: leave gvr unset",
            field="gvr",
            expression=str(gvr),
        )
    return source


def _check_callback(value: object, field_name: str, *, required: bool) -> None:
    if value is None:
        if required:
            raise errors.ConfigError("callback is required", field=field_name)
    elif not callable(value):
        raise errors.ConfigError(
            f"must be callable, got {type(value).__name__}", field=field_name
        )


def _check_seconds(value: object, field_name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(
            f"must be a number of seconds, got {value!r}", field=field_name
        )
    if value < 0 or (positive and value == 0):
        raise errors.ConfigError(
            f"must be {'> 0' if positive else '>= 0'} seconds, got {value!r}", field=field_name
        )
    return float(value)


def compile_paths(exprs: object, field_name: str) -> tuple[paths.FieldPath, ...]:
    if isinstance(exprs, str) or not isinstance(exprs, Sequence):
        raise errors.ConfigError(
            f"must be a list of field paths, got {type(exprs).__name__}",
            field=field_name,
            expression=exprs if isinstance(exprs, str) else None,
        )
    for i, expr in enumerate(exprs):
        if not isinstance(expr, str):
            raise errors.ConfigError(
                f"must be a string, got {type(expr).__name__}", field=f"{field_name}[{i}]"
            )
    return paths.compile_all(list(exprs), field_name)


@dataclass(slots=True)
class WatcherConfig:
    """What a ``Watcher`` mirrors and how it reports changes.

    Call ``set_defaults()`` then ``validate()`` (``Watcher`` does both);
    ``validate`` raises ``ConfigError`` naming the first bad field, and rejects
    bad field paths and selectors up front, not at the first event.

    * ``source``: where the objects come from. ``None`` (the default): the
      Kubernetes resource ``gvr``, read through the ``KubeClient`` (or
      ``ListerWatcher``) handed to the ``Watcher``. A ``KVSource(prefix)``: the
      values under a kvstore key prefix (JSON objects, or raw bytes), read
      through the ``kvstore.Backend`` handed to the ``Watcher`` (etcd, or the
      embedded memory keyspace); a key's parts are its namespace and name, its
      mod revision its resourceVersion (see ``KVSource``). Everything below means
      the same for both sources.
    * ``gvr``: the resource type (required for the Kubernetes source, unset for a
      ``KVSource``).
    * ``namespace``: watch one namespace; ``""`` watches all. For a ``KVSource``,
      the key parts after the prefix (``"eu/zone-a"`` watches ``<prefix>/eu/zone-a/``).
    * ``namespaced_watch``: watch the pod's own namespace, read from
      ``namespace_file`` (the service-account mount); takes precedence over
      ``namespace``.
    * ``label_selector``: string form (``"app=web,tier!=db"``), ``metav1.LabelSelector``
      dict form (``{"matchLabels": ..., "matchExpressions": ...}``), a
      ``selectors.LabelSelector``, or ``None`` for everything. Sent to the API
      server; applied to ``metadata.labels`` of the values by a ``KVSource``.
    * ``index_by``: field paths whose values are the store keys, in order
      (required, at least one). An object lacking a path is stored under ``""``.
      ``["metadata.labels['kubernetes.io/service-name']"]`` gives an O(1)
      service-to-endpoints lookup; ``["metadata.namespace", "metadata.name"]``
      a namespace/name index.
    * ``ignore_fields``: field paths removed before storing
      (``["metadata.managedFields"]`` saves about a third of a Pod's memory).
    * ``store_type``: ``StoreType.MEMORY`` (default) or ``StoreType.CACHED``.
    * ``cache_ttl``: seconds a ``CACHED`` store keeps an object after its last
      access (default ``DEFAULT_CACHE_TTL``); ``cache_max_size`` bounds its LRU.
    * ``debounce_interval``: minimum seconds between ``on_change`` calls (default
      ``DEFAULT_DEBOUNCE_INTERVAL`` = 0.1; 0 reports every batch at once).
    * ``on_change(store, stats)`` (required), ``on_sync_complete(store,
      initial_count)`` (optional): plain or ``async`` functions.
    * ``call_on_change_during_sync``: also report the initial bulk load through
      ``on_change`` (with ``is_initial_sync=True``), before ``on_sync_complete``.
    * ``check_drift_every``: seconds between drift checks (``Watcher.check_drift``;
      0, the default: none); drift is logged and passed to ``on_drift(report)``;
      ``repair_drift`` relists when drift is found.

    The seed's ``Context`` field has no counterpart: cancellation is
    ``Watcher.run(stop)`` / ``await watcher.stop()``.
    """

    gvr: GroupVersionResource | None = None
    source: KVSource | None = None
    namespace: str = ""
    namespaced_watch: bool = False
    label_selector: str | Mapping[str, Any] | selectors.LabelSelector | None = None
    index_by: Sequence[str] = ()
    ignore_fields: Sequence[str] = ()
    store_type: StoreType = StoreType.MEMORY
    cache_ttl: float | None = None
    cache_max_size: int = cached_store.DEFAULT_MAX_CACHE_SIZE
    debounce_interval: float | None = None
    on_change: OnChange | None = None
    on_sync_complete: OnSyncComplete | None = None
    call_on_change_during_sync: bool = False
    namespace_file: str | os.PathLike[str] = DEFAULT_NAMESPACE_FILE
    check_drift_every: float = 0.0
    on_drift: drift.OnDrift | None = None
    repair_drift: bool = False

    def set_defaults(self) -> None:
        """Fill unset fields: ``cache_ttl``, ``debounce_interval``, ``store_type`` by name."""
        if self.cache_ttl is None:
            self.cache_ttl = DEFAULT_CACHE_TTL
        if self.debounce_interval is None:
            self.debounce_interval = DEFAULT_DEBOUNCE_INTERVAL
        if isinstance(self.store_type, str):
            with contextlib.suppress(ValueError):  # validate() names the field
                self.store_type = StoreType(self.store_type.lower())

    def validate(self) -> None:
        """Raise ``ConfigError`` (``SelectorError``, ``FieldPathError``) naming a bad field."""
        if _check_source(self.source, self.gvr) is None:
            _check_namespace(self.namespace, "namespace", required=False)
        else:
            _check_key_namespace(self.namespace, "namespace")
        if not isinstance(self.namespaced_watch, bool):
            raise errors.ConfigError("must be a bool", field="namespaced_watch")
        if self.namespaced_watch:
            self.watch_namespace()
        self.selector()
        if not self.index_by:
            raise errors.ConfigError("at least one index key is required", field="index_by")
        compile_paths(self.index_by, "index_by")
        compile_paths(self.ignore_fields, "ignore_fields")
        if not isinstance(self.store_type, StoreType):
            raise errors.ConfigError(
                f"must be StoreType.MEMORY or StoreType.CACHED, got {self.store_type!r}",
                field="store_type",
            )
        if self.cache_ttl is None or self.debounce_interval is None:
            raise errors.ConfigError(
                "unset; call set_defaults() first",
                field="cache_ttl" if self.cache_ttl is None else "debounce_interval",
            )
        _check_seconds(self.cache_ttl, "cache_ttl", positive=True)
        if isinstance(self.cache_max_size, bool) or not isinstance(self.cache_max_size, int) or (
            self.cache_max_size < 1
        ):
            raise errors.ConfigError("must be a positive integer", field="cache_max_size")
        _check_seconds(self.debounce_interval, "debounce_interval", positive=False)
        _check_callback(self.on_change, "on_change", required=True)
        _check_callback(self.on_sync_complete, "on_sync_complete", required=False)
        if not isinstance(self.call_on_change_during_sync, bool):
            raise errors.ConfigError("must be a bool", field="call_on_change_during_sync")
        _check_seconds(self.check_drift_every, "check_drift_every", positive=False)
        _check_callback(self.on_drift, "on_drift", required=False)
        if not isinstance(self.repair_drift, bool):
            raise errors.ConfigError("must be a bool", field="repair_drift")

    def watch_namespace(self) -> str:
        """The namespace to watch (``""``: all), reading ``namespace_file`` if asked to.

        Raises ``ConfigError`` naming ``namespaced_watch`` if the file cannot be read
        or holds no valid namespace.
        """
        if not self.namespaced_watch:
            return self.namespace
        try:
            with open(self.namespace_file, encoding="utf-8") as f:
                namespace = f.read().strip()
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot read the pod namespace from {os.fspath(self.namespace_file)!r}: "
                f"{exc.strerror or exc}",
                field="namespaced_watch",
            ) from exc
        if not namespace:
            raise errors.ConfigError(
                f"{os.fspath(self.namespace_file)!r} is empty", field="namespaced_watch"
            )
        return _check_namespace(namespace, "namespaced_watch", required=True)

    def selector(self) -> selectors.LabelSelector:
        """``label_selector`` parsed; raises ``SelectorError`` naming ``label_selector``."""
        value = self.label_selector
        if isinstance(value, selectors.LabelSelector):
            return value
        try:
            if value is None or isinstance(value, str):
                return selectors.LabelSelector.parse(value or "")
            if isinstance(value, Mapping):
                return selectors.LabelSelector.from_dict(value)
        except errors.SelectorError as exc:
            raise errors.SelectorError(
                exc.message,
                field="label_selector" + (f".{exc.field}" if exc.field else ""),
                expression=exc.expression,
                position=exc.position,
            ) from None
        raise errors.SelectorError(
            f"must be a string, a dict or a LabelSelector, got {type(value).__name__}",
            field="label_selector",
        )


@dataclass(slots=True)
class SingleWatcherConfig:
    """What a ``SingleWatcher`` follows: one object by ``namespace`` and ``name``.

    All fields but ``on_sync_complete`` and ``source`` are required. ``source``
    is as in ``WatcherConfig``: ``None`` for the Kubernetes resource ``gvr``, or a
    ``KVSource``, whose object ``namespace``/``name`` is the key
    ``<prefix>/<namespace>/<name>`` (``namespace`` may then be ``""``: the key
    ``<prefix>/<name>``). ``on_change(obj)`` is called
    at once (no debounce) for every change after the initial sync — on deletion
    with the last known state of the object (check ``SingleWatcher.current``,
    then ``None``). ``on_sync_complete(obj)`` gets the state after the initial
    list (``None`` if the object does not exist). Cancellation (the seed's
    ``Context``) is ``SingleWatcher.run(stop)`` / ``await watcher.stop()``.
    """

    gvr: GroupVersionResource | None = None
    source: KVSource | None = None
    namespace: str = ""
    name: str = ""
    on_change: OnResourceChange | None = None
    on_sync_complete: OnResourceChange | None = None

    def set_defaults(self) -> None:
        """Nothing to default (kept for symmetry with ``WatcherConfig``)."""

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first missing or invalid field."""
        if _check_source(self.source, self.gvr) is None:
            _check_namespace(self.namespace, "namespace", required=True)
        else:
            _check_key_namespace(self.namespace, "namespace")
        if not isinstance(self.name, str) or not self.name:
            raise errors.ConfigError("resource name is required", field="name")
        if "/" in self.name or "," in self.name:
            raise errors.ConfigError("not a valid object name", field="name", expression=self.name)
        _check_callback(self.on_change, "on_change", required=True)
        _check_callback(self.on_sync_complete, "on_sync_complete", required=False)


async def invoke(callback: Callable[..., Any], what: str, *args: Any) -> None:
    """Run a user callback; sync ones in a worker thread. Errors are logged, never raised.

    Sync callbacks run off the loop so they may block, and may call a
    ``CachedStore``'s sync ``get`` (whose fetches need the loop).
    """
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(*args)
            return
        result = await asyncio.to_thread(callback, *args)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s callback %r failed", what, callback)
