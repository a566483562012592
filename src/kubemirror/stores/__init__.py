"""Multi-key indexed stores: ``MemoryStore`` (whole objects) and ``CachedStore`` (references
plus an API-backed LRU cache), both implementing ``IndexedStore``.

Synchronous and thread-safe; see DESIGN.md "stores/".
"""

from kubemirror.stores.cached_store import DEFAULT_MAX_CACHE_SIZE, CachedStore, Fetch
from kubemirror.stores.indexed_store import IndexedStore, ObjectRef
from kubemirror.stores.memory_store import MemoryStore
from kubemirror.stores.mutation_checking_store import MutationCheckingMemoryStore

__all__ = [
    "CachedStore",
    "DEFAULT_MAX_CACHE_SIZE",
    "Fetch",
    "IndexedStore",
    "MemoryStore",
    "MutationCheckingMemoryStore",
    "ObjectRef",
]
