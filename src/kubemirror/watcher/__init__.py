"""Watchers: collections mirrored into indexed stores, with debounced change callbacks.

The ``watcher`` layer, above ``reflector`` (haproxy-template-ic ``k8s/types`` and
``k8s/watcher``): ``WatcherConfig``/``Watcher`` for a collection,
``SingleWatcherConfig``/``SingleWatcher`` for one named object, ``KVSource``
(with ``ValueFormat``, ``KVReflector``, ``KVLister``) to mirror a kvstore prefix
instead of a Kubernetes resource, ``ChangeStats`` and the sans-I/O
``Debouncer``, and ``WatcherThread`` for plain scripts.
"""

from kubemirror.watcher.config import (
    DEFAULT_CACHE_TTL,
    DEFAULT_DEBOUNCE_INTERVAL,
    DEFAULT_NAMESPACE_FILE,
    OnChange,
    OnResourceChange,
    OnSyncComplete,
    SingleWatcherConfig,
    StoreType,
    WatcherConfig,
)
from kubemirror.watcher.debouncer import ChangeStats, Debouncer
from kubemirror.watcher.kv_source import KVLister, KVReflector, KVSource, ValueFormat
from kubemirror.watcher.single import SingleWatcher
from kubemirror.watcher.thread import WatcherThread
from kubemirror.watcher.watcher import Watcher

__all__ = [
    "ChangeStats",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_DEBOUNCE_INTERVAL",
    "DEFAULT_NAMESPACE_FILE",
    "Debouncer",
    "KVLister",
    "KVReflector",
    "KVSource",
    "OnChange",
    "OnResourceChange",
    "OnSyncComplete",
    "SingleWatcher",
    "SingleWatcherConfig",
    "StoreType",
    "ValueFormat",
    "Watcher",
    "WatcherConfig",
    "WatcherThread",
]
