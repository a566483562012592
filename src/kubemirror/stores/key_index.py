"""The multi-key trie behind ``MemoryStore`` and ``CachedStore``.

A ``KeyIndex`` maps a composite key (one string per configured ``IndexBy`` path)
to a bucket of values, each value identified by its object's ``(namespace,
name)``. Levels of the trie are nested dicts, so an exact lookup costs one dict
probe per key and a prefix lookup visits only the buckets under the prefix.
This is the stores/ layer (the haproxy-template-ic ``store`` package's nested
maps); it is *not* thread-safe — the owning store holds its lock around every call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar, cast

from kubemirror import errors

__all__ = ["KeyIndex", "NamespacedName", "check_keys"]

V = TypeVar("V")

NamespacedName = tuple[str, str]
"""``(namespace, name)``; namespace is ``""`` for cluster-scoped objects."""

_EMPTY: tuple[()] = ()


def check_keys(keys: Sequence[object], num_keys: int, *, partial: bool) -> tuple[str, ...]:
    """Return ``keys`` as a tuple of strings, or raise ``StoreError`` naming them.

    With ``partial`` any count from 1 to ``num_keys`` is accepted (a prefix);
    otherwise exactly ``num_keys`` are required.
    """
    count = len(keys)
    if partial:
        if not 1 <= count <= num_keys:
            raise errors.StoreError(
                f"expected 1 to {num_keys} index keys, got {count}", [str(k) for k in keys]
            )
    elif count != num_keys:
        raise errors.StoreError(
            f"expected {num_keys} index keys, got {count}", [str(k) for k in keys]
        )
    for key in keys:
        if not isinstance(key, str):
            raise errors.StoreError(
                f"index keys must be strings, got {type(key).__name__} {key!r}",
                [str(k) for k in keys],
            )
    return cast("tuple[str, ...]", tuple(keys))


class _Bucket(Generic[V]):
    """Values sharing one composite key, kept (lazily) sorted by namespace/name.

    ``items`` is a dict whose insertion order is the sort order whenever
    ``ordered`` is true: a new name greater than every name so far (the usual case
    for a LIST, which arrives sorted) keeps it ordered for free; any other insert
    clears the flag and the next read re-sorts once (Timsort on a sorted run plus a
    short tail, close to linear). ``view`` caches the tuple handed to readers; every
    write drops it, so a tuple once handed out never changes.
    """

    __slots__ = ("items", "last", "ordered", "view")

    def __init__(self) -> None:
        self.items: dict[NamespacedName, V] = {}
        self.last: NamespacedName | None = None
        self.ordered = True
        self.view: tuple[V, ...] | None = None

    def put(self, ref: NamespacedName, value: V) -> None:
        if ref not in self.items:
            if self.last is not None and ref < self.last:
                self.ordered = False
            else:
                self.last = ref
        self.items[ref] = value
        self.view = None

    def sort(self) -> None:
        if not self.ordered:
            self.items = dict(sorted(self.items.items()))
            self.last = next(reversed(self.items)) if self.items else None
            self.ordered = True

    def values(self) -> tuple[V, ...]:
        view = self.view
        if view is None:
            self.sort()
            view = self.view = tuple(self.items.values())
        return view


_Node = dict[str, Any]
"""An inner trie level: key -> deeper level, or -> ``_Bucket`` at the last level."""


class KeyIndex(Generic[V]):
    """A trie of buckets keyed by ``num_keys`` strings; values unique per namespace/name.

    Each namespace/name lives in exactly one bucket: ``put`` moves it when its keys
    change. Complexity: ``put``/``remove`` O(num_keys); ``exact`` O(num_keys) when the
    bucket was read since its last write, else O(bucket); ``prefix`` O(m log b) for
    m values in b buckets. Not thread-safe.
    """

    __slots__ = ("_root", "_where", "num_keys")

    def __init__(self, num_keys: int) -> None:
        if not isinstance(num_keys, int) or isinstance(num_keys, bool) or num_keys < 1:
            raise errors.StoreError(f"num_keys must be a positive integer, got {num_keys!r}")
        self.num_keys = num_keys
        """How many keys every value is stored under (read-only by convention)."""
        self._root: _Node = {}
        self._where: dict[NamespacedName, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, ref: object) -> bool:
        return ref in self._where

    def keys_of(self, ref: NamespacedName) -> tuple[str, ...] | None:
        """The composite key ``ref`` is stored under, or ``None``."""
        return self._where.get(ref)

    def value_of(self, ref: NamespacedName) -> V | None:
        keys = self._where.get(ref)
        if keys is None:
            return None
        bucket = self._bucket(keys)
        assert bucket is not None
        return bucket.items[ref]

    def refs(self) -> list[NamespacedName]:
        """Every tracked namespace/name, in insertion order."""
        return list(self._where)

    def put(self, ref: NamespacedName, keys: tuple[str, ...], value: V) -> V | None:
        """Store ``value`` for ``ref`` under ``keys``; return the value it replaces."""
        old_keys = self._where.get(ref)
        old: V | None = None
        if old_keys is not None and old_keys != keys:
            old = self._discard(ref, old_keys)
        elif old_keys is not None:
            bucket = self._bucket(keys)
            assert bucket is not None
            old = bucket.items[ref]
            bucket.put(ref, value)
            return old
        node = self._root
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
        leaf = node.get(keys[-1])
        if leaf is None:
            leaf = node[keys[-1]] = _Bucket()
        cast("_Bucket[V]", leaf).put(ref, value)
        self._where[ref] = keys
        return old

    def remove(self, ref: NamespacedName) -> V | None:
        """Remove ``ref``; return its value, or ``None`` if it was not stored."""
        keys = self._where.get(ref)
        if keys is None:
            return None
        return self._discard(ref, keys)

    def remove_bucket(self, keys: tuple[str, ...]) -> list[tuple[NamespacedName, V]]:
        """Remove every value stored under exactly ``keys``; return them."""
        bucket = self._bucket(keys)
        if bucket is None:
            return []
        removed = list(bucket.items.items())
        for ref, _ in removed:
            del self._where[ref]
        self._prune(keys)
        return removed

    def exact(self, keys: tuple[str, ...]) -> tuple[V, ...]:
        """The bucket under ``keys`` (all ``num_keys`` of them) as a cached tuple."""
        node: Any = self._root
        for key in keys:
            node = node.get(key)
            if node is None:
                return _EMPTY
        view: tuple[V, ...] | None = node.view
        return view if view is not None else cast("_Bucket[V]", node).values()

    def prefix(self, keys: tuple[str, ...]) -> tuple[V, ...]:
        """Every value under the key prefix ``keys``, sorted by namespace/name.

        An empty prefix returns everything.
        """
        node: Any = self._root
        for key in keys:
            node = node.get(key)
            if node is None:
                return _EMPTY
        if isinstance(node, _Bucket):
            return cast("tuple[V, ...]", node.values())
        buckets: list[_Bucket[V]] = []
        _collect(node, buckets)
        if len(buckets) == 1:
            return buckets[0].values()
        pairs: list[tuple[NamespacedName, V]] = []
        for bucket in buckets:
            bucket.sort()
            pairs.extend(bucket.items.items())
        pairs.sort(key=_first)
        return tuple([value for _, value in pairs])

    def items(self) -> Iterator[tuple[NamespacedName, V]]:
        """Every ``(ref, value)`` in bucket order (unsorted across buckets)."""
        buckets: list[_Bucket[V]] = []
        _collect(self._root, buckets)
        for bucket in buckets:
            yield from bucket.items.items()

    def clear(self) -> None:
        self._root = {}
        self._where = {}

    def _bucket(self, keys: tuple[str, ...]) -> _Bucket[V] | None:
        node: Any = self._root
        for key in keys:
            node = node.get(key)
            if node is None:
                return None
        return cast("_Bucket[V]", node)

    def _discard(self, ref: NamespacedName, keys: tuple[str, ...]) -> V:
        bucket = self._bucket(keys)
        assert bucket is not None
        value = bucket.items.pop(ref)
        bucket.view = None
        # ``bucket.last`` may now exceed every remaining name; that only makes the
        # next out-of-order check conservative (an extra sort), never wrong.
        del self._where[ref]
        if not bucket.items:
            self._prune(keys)
        return value

    def _prune(self, keys: tuple[str, ...]) -> None:
        """Remove the bucket at ``keys`` and every level left empty above it."""
        path: list[_Node] = []
        node: _Node = self._root
        for key in keys[:-1]:
            path.append(node)
            node = node[key]
        del node[keys[-1]]
        for depth in range(len(keys) - 2, -1, -1):
            if node:
                break
            parent = path[depth]
            del parent[keys[depth]]
            node = parent


def _first(pair: tuple[NamespacedName, object]) -> NamespacedName:
    return pair[0]


def _collect(node: _Node, out: list[_Bucket[V]]) -> None:
    """Append every bucket under ``node`` to ``out``, in sorted key order."""
    for key in sorted(node):
        child = node[key]
        if isinstance(child, _Bucket):
            out.append(child)
        else:
            _collect(child, out)
