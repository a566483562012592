"""``CachedStore``: references in memory, objects fetched from the API on demand.

The memory-lean store of the stores/ layer (haproxy-template-ic
``store.CachedStore``): only an ``ObjectRef`` (namespace, name, keys,
resourceVersion) is kept per object; ``get`` fetches objects through a ``fetch``
coroutine and keeps the most recently used ones in a TTL'd LRU cache.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from kubemirror import errors, paths
from kubemirror.cache import store
from kubemirror.stores import key_index
from kubemirror.stores.indexed_store import (
    IndexedStoreBase,
    ObjectRef,
    compile_ignore_fields,
    object_ref,
)
from kubemirror.stores.key_index import NamespacedName
from kubemirror.types import Clock, MonotonicClock, Obj

__all__ = ["DEFAULT_MAX_CACHE_SIZE", "CachedStore", "Fetch"]

DEFAULT_MAX_CACHE_SIZE = 256
"""Default bound of the LRU cache (entries)."""

Fetch = Callable[[str, str], Awaitable[Obj | None]]
"""``await fetch(namespace, name)``: the object from the API, or ``None`` if it is gone.

May also raise ``NotFoundError`` for a missing object; any other exception is a
failed fetch.
"""

_log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("expires", "obj")

    def __init__(self, obj: Obj, expires: float) -> None:
        self.obj = obj
        self.expires = expires


class _Flight:
    """One fetch in progress; every caller missing the same object awaits its task."""

    __slots__ = ("stale", "task")

    def __init__(self, task: asyncio.Task[Obj | None]) -> None:
        self.task = task
        self.stale = False


class CachedStore(IndexedStoreBase[ObjectRef]):
    """Object references indexed by ``num_keys`` keys; objects fetched on access.

    **Trade-off.** Memory per object is an ``ObjectRef`` and its trie slot (a few
    hundred bytes instead of the object: tens of kB for a Pod, more for a Secret);
    the price is an API round trip on every cache miss, and staleness: a cached
    object may lag the API by up to the watch latency. Use it for many large
    objects that are read rarely; use ``MemoryStore`` when reads are hot.

    * **Keys and writes** as in ``MemoryStore`` (namespace/name identifies an
      object; ``add``/``update`` are upserts that move it when its keys change; a
      wrong number of keys raises ``StoreError``). Writes keep only the reference;
      an ``update`` with a new resourceVersion, ``delete*`` and ``clear`` drop the
      cached copy (and make an in-flight fetch of it uncacheable).
    * **Cache.** A hit resets the entry's TTL (``ttl`` seconds from the last
      access, measured on ``clock``) and makes it most recently used; at most
      ``max_size`` entries are kept, least recently used evicted first. Expired
      entries are dropped when met or by ``evict_expired()``.
    * **Fetches.** Concurrent misses of one object share one fetch (single
      flight). A fetch that raises surfaces as ``FetchError`` (a ``StoreError``)
      and caches nothing; a fetch returning ``None`` or raising ``NotFoundError``
      means the object is gone from the API ahead of the watch: it is left out of
      the result. ``ignore_fields`` is applied to fetched objects. Results keep
      namespace/name order.
    * **Sync and async.** ``aget``/``alist``/``aget_by_name`` run on an event loop.
      The sync ``get``/``list``/``get_by_name`` answer hits directly and send
      misses to ``loop`` (given here, or the first loop ``aget`` ran on) with
      ``run_coroutine_threadsafe``, blocking the calling thread up to
      ``timeout``; called on that loop's own thread with a miss they raise
      ``StoreError`` instead of deadlocking — use the ``a`` form there.
    * **Immutability and threads** as in ``MemoryStore``: returned objects are
      shared (``copy=True`` for deep copies); one lock, never held while fetching
      or calling user code.
    """

    __slots__ = (
        "_cache",
        "_clock",
        "_fetch",
        "_ignore",
        "_inflight",
        "_loop",
        "_max_size",
        "_ttl",
    )

    def __init__(
        self,
        num_keys: int,
        fetch: Fetch,
        ttl: float,
        max_size: int = DEFAULT_MAX_CACHE_SIZE,
        clock: Clock | None = None,
        ignore_fields: Iterable[str | paths.FieldPath] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not ttl > 0:
            raise errors.ConfigError(f"must be positive, got {ttl!r}", field="cache_ttl")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise errors.ConfigError(
                f"must be a positive integer, got {max_size!r}", field="max_size"
            )
        super().__init__(num_keys)
        self._fetch = fetch
        self._ttl = float(ttl)
        self._max_size = max_size
        self._clock: Clock = clock or MonotonicClock()
        self._ignore = compile_ignore_fields(ignore_fields)
        self._loop = loop
        self._cache: collections.OrderedDict[NamespacedName, _Entry] = collections.OrderedDict()
        self._inflight: dict[NamespacedName, _Flight] = {}

    # -- counters (num_keys, size and mod_count come from IndexedStoreBase) ---------------

    @property
    def cache_size(self) -> int:
        """The number of cached objects, including expired ones not yet evicted."""
        return len(self._cache)

    @property
    def ttl(self) -> float:
        """Seconds a cached object lives after its last access."""
        return self._ttl

    @property
    def max_size(self) -> int:
        """The LRU bound."""
        return self._max_size

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` for the fetches of sync ``get`` calls from other threads."""
        self._loop = loop

    # -- writes -----------------------------------------------------------------------

    def update(self, obj: Obj, keys: Sequence[str]) -> None:
        """Track ``obj``'s reference under ``keys``; drop its cached copy if it changed.

        Raises ``StoreError`` for a wrong number of keys or an object without
        ``metadata.name``.
        """
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=False)
        ref, rv = object_ref(obj, key_tuple)
        new = ObjectRef(ref[0], ref[1], key_tuple, rv)
        with self._lock:
            old = self._index.put(ref, key_tuple, new)
            if old is None or not rv or old.resource_version != rv:
                self._invalidate(ref)
            self._mod_count += 1

    def delete(self, *keys: str) -> int:
        """Forget every object under exactly ``keys``; return how many."""
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=False)
        with self._lock:
            removed = self._index.remove_bucket(key_tuple)
            for ref, _ in removed:
                self._invalidate(ref)
            self._mod_count += 1
        return len(removed)

    def delete_by_name(self, namespace: str, name: str) -> bool:
        """Forget ``namespace/name``; ``True`` if it was tracked."""
        ref = (namespace, name)
        with self._lock:
            found = self._index.remove(ref) is not None
            self._invalidate(ref)
            self._mod_count += 1
        return found

    def clear(self) -> None:
        """Forget every object and empty the cache."""
        with self._lock:
            self._index.clear()
            self._cache.clear()
            for flight in self._inflight.values():
                flight.stale = True
            self._inflight.clear()
            self._mod_count += 1

    def evict_expired(self) -> int:
        """Drop every expired cache entry; return how many."""
        now = self._clock.now()
        with self._lock:
            expired = [ref for ref, entry in self._cache.items() if entry.expires <= now]
            for ref in expired:
                del self._cache[ref]
        return len(expired)

    # -- reads ------------------------------------------------------------------------

    def ref(self, namespace: str, name: str) -> ObjectRef | None:
        """The reference kept for ``namespace/name``, or ``None``."""
        with self._lock:
            return self._index.value_of((namespace, name))

    def refs(self) -> builtins.list[ObjectRef]:
        """Every reference (no fetch), unordered."""
        with self._lock:
            return [value for _, value in self._index.items()]

    def refs_under(self, *keys: str) -> tuple[ObjectRef, ...]:
        """References under ``keys`` (all keys or a prefix), by namespace/name; no fetch."""
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=True)
        return self._refs_for(key_tuple)

    async def aget(self, *keys: str, copy: bool = False) -> Sequence[Obj]:
        """Objects under ``keys`` (all keys or a prefix), by namespace/name, fetching misses.

        Raises ``StoreError`` for bad keys and ``FetchError`` if a fetch fails.
        Returned objects are shared (``copy=True`` for deep copies).
        """
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=True)
        return await self._aload(self._refs_for(key_tuple), copy)

    def get(self, *keys: str, copy: bool = False, timeout: float | None = None) -> Sequence[Obj]:
        """``aget`` for threads other than the store's event loop; see the class notes.

        Raises ``StoreError`` if misses must be fetched and no loop is bound, or on
        the loop's own thread, or after ``timeout`` seconds.
        """
        key_tuple = key_index.check_keys(keys, self._index.num_keys, partial=True)
        return self._load(self._refs_for(key_tuple), copy, timeout)

    async def aget_by_name(self, namespace: str, name: str, copy: bool = False) -> Obj | None:
        """The object ``namespace/name`` if tracked (fetched on a miss), else ``None``."""
        ref = self.ref(namespace, name)
        found = await self._aload(() if ref is None else (ref,), copy)
        return found[0] if found else None

    def get_by_name(
        self, namespace: str, name: str, copy: bool = False, timeout: float | None = None
    ) -> Obj | None:
        """Sync ``aget_by_name`` (same rules as ``get``)."""
        ref = self.ref(namespace, name)
        found = self._load(() if ref is None else (ref,), copy, timeout)
        return found[0] if found else None

    async def alist(self, copy: bool = False) -> builtins.list[Obj]:
        """Every object, by namespace/name: one fetch per miss — expensive on big stores."""
        return builtins.list(await self._aload(self._refs_for(()), copy))

    def list(self, copy: bool = False, timeout: float | None = None) -> builtins.list[Obj]:
        """Sync ``alist`` (same rules as ``get``)."""
        return builtins.list(self._load(self._refs_for(()), copy, timeout))

    # -- internals --------------------------------------------------------------------

    def _refs_for(self, key_tuple: tuple[str, ...]) -> tuple[ObjectRef, ...]:
        with self._lock:
            if len(key_tuple) == self._index.num_keys:
                return self._index.exact(key_tuple)
            return self._index.prefix(key_tuple)

    def _invalidate(self, ref: NamespacedName) -> None:
        """Drop the cached copy and orphan any in-flight fetch. Caller holds the lock."""
        self._cache.pop(ref, None)
        flight = self._inflight.pop(ref, None)
        if flight is not None:
            flight.stale = True

    def _hits(
        self, refs: Sequence[ObjectRef]
    ) -> tuple[builtins.list[Obj | None], builtins.list[int]]:
        """Cached objects (TTL reset) and the positions of the misses."""
        now = self._clock.now()
        found: builtins.list[Obj | None] = [None] * len(refs)
        misses: builtins.list[int] = []
        with self._lock:
            cache = self._cache
            for i, ref in enumerate(refs):
                key = (ref.namespace, ref.name)
                entry = cache.get(key)
                if entry is None:
                    misses.append(i)
                elif entry.expires <= now:
                    del cache[key]
                    misses.append(i)
                else:
                    entry.expires = now + self._ttl
                    cache.move_to_end(key)
                    found[i] = entry.obj
        return found, misses

    async def _aload(self, refs: Sequence[ObjectRef], copy: bool) -> Sequence[Obj]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        found, misses = self._hits(refs)
        if misses:
            fetched = await self._fetch_all([refs[i] for i in misses])
            for i, obj in zip(misses, fetched, strict=True):
                found[i] = obj
        return _finish(found, copy)

    async def _fetch_all(self, refs: Sequence[ObjectRef]) -> builtins.list[Obj | None]:
        return await asyncio.gather(*(self._fetch_one(ref) for ref in refs))

    def _load(self, refs: Sequence[ObjectRef], copy: bool, timeout: float | None) -> Sequence[Obj]:
        found, misses = self._hits(refs)
        if not misses:
            return _finish(found, copy)
        loop = self._loop
        if loop is None or loop.is_closed():
            raise errors.StoreError(
                "cache miss needs a fetch but no event loop is bound "
                "(pass loop= to CachedStore or use aget)"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise errors.StoreError(
                "sync get with a cache miss on the store's event loop thread would "
                "deadlock; use aget"
            )
        future = asyncio.run_coroutine_threadsafe(
            self._fetch_all([refs[i] for i in misses]), loop
        )
        try:
            fetched = future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise errors.StoreError(f"fetch timed out after {timeout}s") from None
        for i, obj in zip(misses, fetched, strict=True):
            found[i] = obj
        return _finish(found, copy)

    async def _fetch_one(self, ref: ObjectRef) -> Obj | None:
        key = (ref.namespace, ref.name)
        loop = asyncio.get_running_loop()
        with self._lock:
            flight = self._inflight.get(key)
            if flight is None or flight.task.get_loop() is not loop:
                flight = _Flight(loop.create_task(self._run_flight(ref)))
                flight.task.add_done_callback(_consume)
                self._inflight[key] = flight
        return await asyncio.shield(flight.task)

    async def _run_flight(self, ref: ObjectRef) -> Obj | None:
        key = (ref.namespace, ref.name)
        try:
            try:
                obj = await self._fetch(ref.namespace, ref.name)
            except errors.NotFoundError:
                obj = None
            except Exception as exc:
                raise errors.FetchError(ref.namespace, ref.name, ref.keys, exc) from exc
            if obj is not None and self._ignore:
                obj = paths.remove_fields(obj, self._ignore)
        except BaseException:
            with self._lock:
                self._drop_flight(key)
            raise
        with self._lock:
            flight = self._drop_flight(key)
            if obj is None:
                _log.debug("%s/%s is gone from the API; left out", ref.namespace, ref.name)
            elif flight is not None and not flight.stale and key in self._index:
                self._cache[key] = _Entry(obj, self._clock.now() + self._ttl)
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_size:
                    self._cache.popitem(last=False)
        return obj

    def _drop_flight(self, key: NamespacedName) -> _Flight | None:
        """Remove and return the flight of ``key`` if it is the current task's."""
        flight = self._inflight.get(key)
        if flight is not None and flight.task is asyncio.current_task():
            del self._inflight[key]
            return flight
        return None


def _consume(task: asyncio.Task[Obj | None]) -> None:
    """Retrieve a flight's outcome so an unawaited failure is never reported as lost."""
    if not task.cancelled():
        task.exception()


def _finish(found: Sequence[Obj | None], copy: bool) -> Sequence[Obj]:
    objs = [obj for obj in found if obj is not None]
    if copy:
        return [store.deep_copy(obj) for obj in objs]
    return tuple(objs)
