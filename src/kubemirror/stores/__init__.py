"""Multi-key indexed stores: ``MemoryStore`` (whole objects) and ``CachedStore`` (references
plus an API-backed LRU cache), both implementing ``IndexedStore``.

Synchronous and thread-safe; see DESIGN.md "stores/".
"""

from kubemirror.stores.cached_store import CachedStore, Fetch
from kubemirror.stores.indexed_store import IndexedStore, ObjectRef, deep_copy
from kubemirror.stores.memory_store import MemoryStore

__all__ = [
    "CachedStore",
    "Fetch",
    "IndexedStore",
    "MemoryStore",
    "ObjectRef",
    "deep_copy",
]
