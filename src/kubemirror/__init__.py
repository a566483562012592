"""kubemirror: live, indexed, in-memory mirrors of Kubernetes resources and etcd key spaces.

The names below are the ones most programs need; everything else is reached
through its module (``kubemirror.cache``, ``kubemirror.multicluster``,
``kubemirror.kvstore``, ...). Stored objects are plain decoded JSON dicts, shared
with every reader: never mutate what a store hands out (``copy=True`` or
``cache.deep_copy`` give you your own).
"""

from kubemirror.cache import FIFO, DeltaFIFO, Indexer, TTLStore, new_store
from kubemirror.client import ClientConfig, KubeClient, load_config
from kubemirror.drift import DriftReport
from kubemirror.errors import (
    ApiError,
    ConfigError,
    FIFOClosedError,
    GoneError,
    KeyFuncError,
    KubemirrorError,
    MutationError,
    StoreError,
    TransportError,
)
from kubemirror.informer import SharedInformer
from kubemirror.keys import (
    DeletedFinalStateUnknown,
    ExplicitKey,
    meta_namespace_index_func,
    meta_namespace_key,
    split_meta_namespace_key,
)
from kubemirror.kvstore import (
    EtcdBackend,
    KVPair,
    MemoryBackend,
    RestartableWatchStore,
    SharedStore,
    SharedStoreConfig,
    WatchStoreManager,
    WorkqueueSyncStore,
)
from kubemirror.listing import ListOptions, ListPage
from kubemirror.listwatch import ListWatch
from kubemirror.multicluster import ClusterSynchro, KubeApiServer, MemoryStorage
from kubemirror.paths import FieldPath, compile_all, remove_fields
from kubemirror.reflector import Poller, Reflector
from kubemirror.selectors import FieldSelector, LabelSelector
from kubemirror.stores import CachedStore, MemoryStore
from kubemirror.types import GroupVersionResource, Obj, WatchEvent
from kubemirror.watcher import (
    ChangeStats,
    KVSource,
    SingleWatcher,
    SingleWatcherConfig,
    StoreType,
    ValueFormat,
    Watcher,
    WatcherConfig,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "CachedStore",
    "ChangeStats",
    "ClientConfig",
    "ClusterSynchro",
    "ConfigError",
    "DeletedFinalStateUnknown",
    "DeltaFIFO",
    "DriftReport",
    "EtcdBackend",
    "ExplicitKey",
    "FIFO",
    "FIFOClosedError",
    "FieldPath",
    "FieldSelector",
    "GoneError",
    "GroupVersionResource",
    "Indexer",
    "KVPair",
    "KVSource",
    "KeyFuncError",
    "KubeApiServer",
    "KubeClient",
    "KubemirrorError",
    "LabelSelector",
    "ListOptions",
    "ListPage",
    "ListWatch",
    "MemoryBackend",
    "MemoryStorage",
    "MemoryStore",
    "MutationError",
    "Obj",
    "Poller",
    "Reflector",
    "RestartableWatchStore",
    "SharedInformer",
    "SharedStore",
    "SharedStoreConfig",
    "SingleWatcher",
    "SingleWatcherConfig",
    "StoreError",
    "StoreType",
    "TTLStore",
    "TransportError",
    "ValueFormat",
    "WatchEvent",
    "WatchStoreManager",
    "Watcher",
    "WatcherConfig",
    "WorkqueueSyncStore",
    "compile_all",
    "load_config",
    "meta_namespace_index_func",
    "meta_namespace_key",
    "new_store",
    "remove_fields",
    "split_meta_namespace_key",
]
