"""kubemirror.cache: client-go ``tools/cache`` parity for Python.

Stores (``Store``, ``Indexer``, ``ThreadSafeStore``, ``ExpirationCache``/``TTLStore``,
``UndeltaStore``), queues (``FIFO``, ``DeltaFIFO``) and listers over plain-dict
Kubernetes objects. Synchronous and thread-safe; blocking pops have ``apop`` twins
that never block an event loop. Stored objects are shared with readers: never
mutate what a read returns (``copy=True`` / ``deep_copy`` give you your own).
"""

from kubemirror.cache.compact import DEFAULT_DECODE_CACHE_SIZE, CompactIndexer
from kubemirror.cache.delta_fifo import Delta, DeltaFIFO, Deltas, DeltaType
from kubemirror.cache.expiration_cache import (
    ExpirationCache,
    ExpirationPolicy,
    TimestampedEntry,
    TTLPolicy,
    TTLStore,
)
from kubemirror.cache.fifo import FIFO
from kubemirror.cache.index import NAMESPACE_INDEX, Indexer, new_store
from kubemirror.cache.listers import (
    ControllerLister,
    GenericLister,
    LabelMatcher,
    NamespaceLister,
    NodeConditionLister,
    NodeLister,
    PodLister,
    ServiceLister,
)
from kubemirror.cache.mutation_detector import (
    MutationCheckingIndexer,
    MutationDetector,
    MutationDetectorOptions,
)
from kubemirror.cache.raw_object import DEFAULT_VIEW_METADATA, PartialDecoder, RawObject
from kubemirror.cache.store import (
    KeyedIndexer,
    KeyGetter,
    KeyLister,
    KeyListerGetter,
    Store,
    deep_copy,
)
from kubemirror.cache.thread_safe_store import Indexers, ThreadSafeStore
from kubemirror.cache.undelta_store import PushFunc, UndeltaStore
from kubemirror.keys import DeletedFinalStateUnknown, ExplicitKey

__all__ = [
    "CompactIndexer",
    "ControllerLister",
    "DEFAULT_DECODE_CACHE_SIZE",
    "DEFAULT_VIEW_METADATA",
    "DeletedFinalStateUnknown",
    "Delta",
    "DeltaFIFO",
    "DeltaType",
    "Deltas",
    "ExpirationCache",
    "ExpirationPolicy",
    "ExplicitKey",
    "FIFO",
    "GenericLister",
    "Indexer",
    "Indexers",
    "KeyGetter",
    "KeyLister",
    "KeyListerGetter",
    "KeyedIndexer",
    "LabelMatcher",
    "MutationCheckingIndexer",
    "MutationDetector",
    "MutationDetectorOptions",
    "NAMESPACE_INDEX",
    "NamespaceLister",
    "NodeConditionLister",
    "NodeLister",
    "PartialDecoder",
    "PodLister",
    "PushFunc",
    "RawObject",
    "ServiceLister",
    "Store",
    "TTLPolicy",
    "TTLStore",
    "ThreadSafeStore",
    "TimestampedEntry",
    "UndeltaStore",
    "deep_copy",
    "new_store",
]
