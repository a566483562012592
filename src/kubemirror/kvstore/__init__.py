"""kubemirror.kvstore: Cilium's kvstore shared store in asyncio (see DESIGN.md).

Backends (``MemoryBackend``, ``EtcdBackend``) implement the ``Backend`` protocol;
``SharedStore``, ``WorkqueueSyncStore``, ``RestartableWatchStore`` and
``WatchStoreManager`` are written against it. ``EtcdClientConfig`` says how to reach
an etcd cluster (endpoints, TLS, auth). ``EtcdServer`` and ``EtcdCluster`` run
throw-away etcd members.
"""

from kubemirror.kvstore.backend import (
    Backend,
    KVEvent,
    KVEventType,
    LeaseExpiredObserver,
    join_key,
    synced_key,
)
from kubemirror.kvstore.connection import connect, list_prefix, watch_prefix
from kubemirror.kvstore.etcd import EtcdBackend
from kubemirror.kvstore.etcd_cluster import EtcdCluster
from kubemirror.kvstore.etcd_config import EtcdClientConfig, EtcdEndpoint
from kubemirror.kvstore.etcd_server import EtcdServer, EtcdServerTLS, find_etcd_binary
from kubemirror.kvstore.key import (
    Key,
    KeyCreator,
    KVPair,
    LocalKey,
    NamedKey,
    Observer,
    kv_pair_creator,
)
from kubemirror.kvstore.memory import MemoryBackend, MemoryKVServer, default_server
from kubemirror.kvstore.shared_store import SharedStore, SharedStoreConfig
from kubemirror.kvstore.sync_store import SyncedCallback, WorkqueueSyncStore
from kubemirror.kvstore.watch_store import GaugeLike, OnSyncCallback, RestartableWatchStore
from kubemirror.kvstore.watch_store_manager import WatchStoreManager, WSMFunc
from kubemirror.kvstore.workqueue import (
    BucketRateLimiter,
    ExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    WorkQueue,
    default_controller_rate_limiter,
)

__all__ = [
    "Backend",
    "BucketRateLimiter",
    "EtcdBackend",
    "EtcdClientConfig",
    "EtcdCluster",
    "EtcdEndpoint",
    "EtcdServer",
    "EtcdServerTLS",
    "ExponentialFailureRateLimiter",
    "GaugeLike",
    "KVEvent",
    "KVEventType",
    "KVPair",
    "Key",
    "KeyCreator",
    "LeaseExpiredObserver",
    "LocalKey",
    "MaxOfRateLimiter",
    "MemoryBackend",
    "MemoryKVServer",
    "NamedKey",
    "Observer",
    "OnSyncCallback",
    "RateLimiter",
    "RestartableWatchStore",
    "SharedStore",
    "SharedStoreConfig",
    "SyncedCallback",
    "WSMFunc",
    "WatchStoreManager",
    "WorkQueue",
    "WorkqueueSyncStore",
    "connect",
    "default_controller_rate_limiter",
    "default_server",
    "find_etcd_binary",
    "join_key",
    "kv_pair_creator",
    "list_prefix",
    "synced_key",
    "watch_prefix",
]
