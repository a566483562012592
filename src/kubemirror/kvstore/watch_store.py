"""``RestartableWatchStore``: mirror a kvstore prefix into observer events.

Part of the kvstore layer (seed: Cilium ``WatchStore``/``NewRestartableWatchStore``).
``watch(backend, prefix)`` turns list-and-watch events into ``on_update`` and
``on_delete`` calls and keeps each key's last good value as bytes. It can be run
again (for example on a new connection to the same cluster): keys that are not
listed again are then
reported deleted once the new listing is complete, so observers never keep a key
that vanished while nobody was watching.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod

__all__ = ["GaugeLike", "OnSyncCallback", "RestartableWatchStore"]

log = logging.getLogger(__name__)

OnSyncCallback = Callable[[], Awaitable[None] | None]
"""Run after the first complete listing; a plain function or a coroutine."""


class GaugeLike(Protocol):
    """What the store needs of a metric: ``prometheus_client.Gauge`` fits."""

    def set(self, value: float) -> None: ...


class RestartableWatchStore:
    """Keys under one prefix, decoded with ``key_creator`` and reported to ``observer``.

    - ``await watch(backend, prefix)`` runs until the backend's stream ends or the
      task is cancelled. The prefix gets a trailing ``/`` so sibling prefixes do not
      match; key names are the paths with that prefix removed.
    - A value that fails to unmarshal is logged and skipped (the previous version of
      the key, if any, is kept). Observer exceptions are logged and never stop it.
    - Running ``watch`` again after the previous run ended marks every known key
      stale; those not seen again by the new listing's LIST_DONE get ``on_delete``.
    - ``on_sync`` callbacks run once, after the first LIST_DONE ever.
    - ``await drain()`` reports every known key deleted and forgets it (when not
      watching).
    - ``entries_gauge`` (for example a ``prometheus_client.Gauge``) follows
      ``num_entries()``.

    The store keeps, per key name, the last value that unmarshalled, as bytes: no
    object the garbage collector tracks, so a mirror of millions of keys costs full
    collections nothing (the raw client's dict of bytes, not a Key instance each).
    Each event's Key is decoded for the observer and not kept; ``on_delete`` gets
    one decoded again from the last value, ``keys()`` decodes them all (O(n)).
    Not thread-safe; use from one event loop. One ``watch`` at a time.
    """

    def __init__(
        self,
        cluster: str,
        key_creator: key_mod.KeyCreator,
        observer: key_mod.Observer,
        on_sync: Iterable[OnSyncCallback] = (),
        entries_gauge: GaugeLike | None = None,
    ) -> None:
        self.cluster = cluster
        self._key_creator = key_creator
        self._observer = observer
        self._on_sync: list[OnSyncCallback] = list(on_sync)
        self._gauge = entries_gauge
        # name -> the last value that unmarshalled (bytes: untracked by the GC)
        self._state: dict[str, bytes] = {}
        self._stale: set[str] = set()  # names not seen again since a restarted watch
        self._watching = False
        self._synced = False
        self._context = f"cluster={cluster}"

    def num_entries(self) -> int:
        """How many keys are currently known."""
        return len(self._state)

    @property
    def synced(self) -> bool:
        """True while a watch runs whose initial listing is complete."""
        return self._synced

    @property
    def watching(self) -> bool:
        """True while ``watch`` runs."""
        return self._watching

    def keys(self) -> dict[str, key_mod.Key]:
        """The known keys by name, each decoded anew from its stored value (O(n))."""
        return {name: self._decoded(name, value) for name, value in self._state.items()}

    def _decoded(self, name: str, value: bytes) -> key_mod.Key:
        """The key ``name`` from a value that unmarshalled before (a ``KVPair`` of
        the bytes should the key creator refuse it now)."""
        key = self._key_creator()
        try:
            key.unmarshal(name, value)
        except Exception:
            log.exception("watch store %s: %r no longer unmarshals", self._context, name)
            return key_mod.KVPair(name, value)
        return key

    async def watch(self, backend: backend_mod.Backend, prefix: str) -> None:
        """List and watch ``prefix`` on ``backend`` into observer events.

        Raises ``KVStoreStateError`` if another ``watch`` or ``drain`` is running.
        """
        if self._watching:
            raise errors.KVStoreStateError("watch store is already watching")
        if not prefix.endswith("/"):
            prefix += "/"
        context = f"{self._context} prefix={prefix}"
        self._watching = True
        self._stale = set(self._state)
        log.info("watch store %s: starting", context)
        events = backend.list_and_watch(prefix)
        try:
            async for event in events:
                if event.type is backend_mod.KVEventType.LIST_DONE:
                    await self._list_done(context)
                    continue
                name = event.key[len(prefix):] if event.key.startswith(prefix) else event.key
                if event.type is backend_mod.KVEventType.DELETE:
                    await self._delete(name, context)
                else:
                    await self._upsert(name, event.value, context)
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
            self._watching = False
            self._synced = False
            log.info("watch store %s: stopped", context)

    async def _list_done(self, context: str) -> None:
        stale, self._stale = self._stale, set()
        for name in [n for n in self._state if n in stale]:
            log.debug("watch store %s: %r vanished while not watching", context, name)
            await self._delete(name, context)
        self._synced = True
        callbacks, self._on_sync = self._on_sync, []
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("watch store %s: on-sync callback failed", context)

    async def drain(self) -> None:
        """Emit a deletion for every known key and forget it.

        Raises ``KVStoreStateError`` while ``watch`` runs.
        """
        if self._watching:
            raise errors.KVStoreStateError("cannot drain the watch store while watching")
        self._watching = True
        try:
            for name in list(self._state):
                await self._delete(name, self._context)
        finally:
            self._watching = False

    def _set_gauge(self) -> None:
        if self._gauge is not None:
            self._gauge.set(float(len(self._state)))

    async def _upsert(self, name: str, value: bytes, context: str) -> None:
        key = self._key_creator()
        try:
            key.unmarshal(name, value)
        except Exception as exc:
            log.warning(
                "watch store %s: cannot unmarshal %r (%d bytes): %s", context, name, len(value), exc
            )
            self._stale.discard(name)  # present on the server: keep the last good value
            return
        self._state[name] = value
        self._stale.discard(name)
        self._set_gauge()
        await key_mod.notify_update(self._observer, key, context)

    async def _delete(self, name: str, context: str) -> None:
        value = self._state.pop(name, None)
        self._stale.discard(name)
        if value is None:
            log.debug("watch store %s: deletion of unknown key %r", context, name)
            return
        self._set_gauge()
        await key_mod.notify_delete(self._observer, self._decoded(name, value), context)
