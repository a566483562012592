"""``SharedStore``: a key space under one prefix that many collaborators fill together.

Part of the kvstore layer (seed: Cilium ``JoinSharedStore``). Every collaborator
that joins the same prefix on the same kvstore sees every key (its own and the
others'), owns the keys it contributes (written with its session lease, so they
vanish when it dies), re-creates its keys when something deletes them, and re-syncs
them periodically.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from kubemirror import errors, lifecycle
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import memory

__all__ = ["SharedStore", "SharedStoreConfig"]

log = logging.getLogger(__name__)

DEFAULT_SYNCHRONIZATION_INTERVAL = 300.0
DEFAULT_LIST_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class SharedStoreConfig:
    """How to join a shared store.

    - ``prefix`` (required): the store's identity; collaborators using the same
      prefix on the same kvstore share one store. Keys live at ``<prefix>/<name>``.
    - ``key_creator`` (required): returns an empty ``Key`` for discovered keys.
    - ``backend``: the kvstore session. None means a ``MemoryBackend`` on the
      process-wide embedded keyspace (``memory.default_server()``), owned and closed
      by the store: every store joined without a backend in this process shares it.
    - ``observer``: told about every update and delete of the shared keys.
    - ``synchronization_interval``: seconds between re-syncs of local keys (> 0).
    - ``shared_key_delete_delay``: seconds to wait before handling the deletion of
      another collaborator's key (>= 0); a re-creation within the delay cancels it.
    - ``list_timeout``: seconds ``join`` waits for the initial listing (> 0).
    """

    prefix: str = ""
    key_creator: key_mod.KeyCreator | None = None
    backend: backend_mod.Backend | None = None
    observer: key_mod.Observer | None = None
    synchronization_interval: float = DEFAULT_SYNCHRONIZATION_INTERVAL
    shared_key_delete_delay: float = 0.0
    list_timeout: float = DEFAULT_LIST_TIMEOUT

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid field."""
        if not self.prefix.strip("/"):
            raise errors.ConfigError("is required", field="prefix", expression=self.prefix)
        if self.key_creator is None or not callable(self.key_creator):
            raise errors.ConfigError("is required (a callable returning an empty Key)",
                                     field="key_creator")
        for name, value, strict in (
            ("synchronization_interval", self.synchronization_interval, True),
            ("shared_key_delete_delay", self.shared_key_delete_delay, False),
            ("list_timeout", self.list_timeout, True),
        ):
            if value < 0 or (strict and value == 0):
                need = "positive" if strict else "zero or positive"
                raise errors.ConfigError(f"must be {need}", field=name, expression=str(value))


class SharedStore(lifecycle.StartStopService):
    """One collaborator's view of, and contribution to, a shared store.

    ``await SharedStore.join(config)`` (or ``async with SharedStore(config)``) lists
    the prefix and returns once every existing key was loaded (and reported to the
    observer); a watch then keeps ``shared_keys_map()`` current and a controller
    re-writes the local keys every ``synchronization_interval`` (only if they
    differ from the kvstore). When a local key is deleted by someone else, it is
    written again at once.

    Observer calls happen in event order from the watch task, except delayed
    deletions, which run from their own timers. Keys returned by
    ``shared_keys_map()`` are the stored instances: do not mutate them.
    Not thread-safe: use from the event loop that joined.

    Lifecycle (``lifecycle.StartStopService``): ``start()`` joins, ``stop()`` is
    ``close()``; ``run(stop_event)`` and ``async with`` do both around waiting.
    """

    def __init__(self, config: SharedStoreConfig) -> None:
        config.validate()
        assert config.key_creator is not None  # checked by validate
        self.config = config
        self.prefix = backend_mod.join_key(config.prefix)
        self._key_creator: key_mod.KeyCreator = config.key_creator
        self._owns_backend = config.backend is None
        self.backend: backend_mod.Backend = config.backend or memory.MemoryBackend(
            memory.default_server(), name=f"shared-store {self.prefix}"
        )
        self._local: dict[str, key_mod.LocalKey] = {}
        self._shared: dict[str, key_mod.Key] = {}
        self._stale: set[str] = set()
        self._pending_deletes: dict[str, asyncio.Task[None]] = {}
        self._listed = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._joined = False
        self._closed = False
        self._context = f"prefix={self.prefix}"

    # -- joining -------------------------------------------------------------------

    @classmethod
    async def join(cls, config: SharedStoreConfig) -> SharedStore:
        """Validate ``config``, load the prefix and start watching and re-syncing.

        Raises ``ConfigError`` for an invalid config and ``KVStoreError`` if the
        initial listing fails or takes longer than ``list_timeout``.
        """
        store = cls(config)
        await store.start()
        return store

    async def start(self) -> None:
        """Join (what ``join`` does after construction); idempotent."""
        if self._closed:
            raise errors.KVStoreClosedError(f"shared store {self._context}")
        if self._joined:
            return
        loop = asyncio.get_running_loop()
        self._watch_task = loop.create_task(self._watch_loop(), name=f"shared-store {self.prefix}")
        listed = loop.create_task(self._listed.wait())
        try:
            done, _ = await asyncio.wait(
                {listed, self._watch_task},
                timeout=self.config.list_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            listed.cancel()
        if listed not in done or not self._listed.is_set():
            await self._shutdown()
            raise errors.KVStoreError(
                f"shared store {self._context}: initial listing did not complete "
                f"within {self.config.list_timeout}s"
            )
        self._joined = True
        self._sync_task = loop.create_task(
            self._sync_loop(), name=f"shared-store sync {self.prefix}"
        )
        log.info("shared store %s: joined with %d keys", self._context, len(self._shared))

    # -- reading -------------------------------------------------------------------

    def shared_keys_map(self) -> dict[str, key_mod.Key]:
        """A new dict of every known key by name (values shared: do not mutate)."""
        return dict(self._shared)

    def num_entries(self) -> int:
        """How many keys the store currently knows."""
        return len(self._shared)

    def local_keys_map(self) -> dict[str, key_mod.LocalKey]:
        """A new dict of the keys this collaborator owns (copies it took)."""
        return dict(self._local)

    def key_path(self, key: key_mod.NamedKey) -> str:
        """The kvstore key of ``key``: ``<prefix>/<name>``."""
        return backend_mod.join_key(self.prefix, key.get_key_name())

    # -- writing -------------------------------------------------------------------

    async def _sync_local_key(self, key: key_mod.LocalKey, lease: bool = True) -> None:
        await self.backend.update_if_different(self.key_path(key), key.marshal(), lease=lease)

    async def update_local_key_sync(self, key: key_mod.LocalKey) -> None:
        """Own ``key``: write it now (with the lease) and keep it synced.

        A deep copy is kept, so later changes to ``key`` need another call. If the
        write fails the key is not kept and the error (``KVStoreError``) is raised.
        """
        self._check_open()
        name = key.get_key_name()
        copy = key.deep_key_copy()
        self._local[name] = copy
        try:
            await self._sync_local_key(copy)
        except BaseException:
            if self._local.get(name) is copy:
                del self._local[name]
            raise

    async def update_key_sync(self, key: key_mod.LocalKey, lease: bool) -> None:
        """Write ``key`` once, without owning it (no re-sync, no re-creation)."""
        self._check_open()
        await self._sync_local_key(key, lease)

    async def delete_local_key(self, key: key_mod.NamedKey) -> None:
        """Stop owning ``key`` and delete it from the kvstore.

        The observer learns about it through the watch like for any deletion.
        Raises ``KVStoreError`` if the delete failed (the key is no longer owned).
        """
        self._check_open()
        self._local.pop(key.get_key_name(), None)
        await self.backend.delete(self.key_path(key))

    def _check_open(self) -> None:
        if self._closed:
            raise errors.KVStoreClosedError(f"shared store {self._context}")

    # -- leaving -------------------------------------------------------------------

    async def close(self) -> None:
        """Leave: stop, delete the local keys from the kvstore and report them deleted.

        Idempotent; after ``release()`` it does nothing (the keys were left on purpose).
        """
        if self._closed:
            return
        await self._shutdown(close_backend=False)
        for name, key in list(self._local.items()):
            try:
                await self.backend.delete(self.key_path(key))
            except errors.KVStoreError as exc:
                log.warning("shared store %s: cannot delete %r on close: %s",
                            self._context, name, exc)
            shared = self._shared.pop(name, None)
            await key_mod.notify_delete(self.config.observer, shared or key, self._context)
        self._local.clear()
        if self._owns_backend:
            await self.backend.close()

    async def release(self) -> None:
        """Stop watching and re-syncing but leave the local keys in the kvstore."""
        await self._shutdown()

    async def stop(self) -> None:
        """``close()``, under the name every long-running component has."""
        await self.close()

    async def _shutdown(self, close_backend: bool = True) -> None:
        self._closed = True
        tasks = [t for t in (self._watch_task, self._sync_task) if t is not None]
        tasks.extend(self._pending_deletes.values())
        self._watch_task = self._sync_task = None
        self._pending_deletes.clear()
        await lifecycle.cancel_and_wait(tasks)
        if close_backend and self._owns_backend:
            await self.backend.close()

    # -- background tasks ----------------------------------------------------------

    async def _sync_loop(self) -> None:
        interval = self.config.synchronization_interval
        delay = interval
        while True:
            await asyncio.sleep(delay)
            try:
                for key in list(self._local.values()):
                    await self._sync_local_key(key)
            except Exception as exc:
                log.warning("shared store %s: re-sync of local keys failed: %s",
                            self._context, exc)
                delay = min(interval, 1.0)
            else:
                delay = interval

    async def _watch_loop(self) -> None:
        delay = 0.1
        while True:
            events = self.backend.list_and_watch(self.prefix + "/")
            try:
                async for event in events:
                    await self._handle(event)
                    delay = 0.1
                return  # the backend ended the stream: it was closed
            except errors.KVStoreClosedError:
                return
            except Exception:
                log.exception("shared store %s: watch failed; restarting", self._context)
            finally:
                await events.aclose()
            self._stale = set(self._shared)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _handle(self, event: backend_mod.KVEvent) -> None:
        if event.type is backend_mod.KVEventType.LIST_DONE:
            stale, self._stale = self._stale, set()
            for name in sorted(stale):
                if name not in self._local:
                    await self._delete_shared(name)
            self._listed.set()
            return
        name = event.key[len(self.prefix) + 1:]
        self._stale.discard(name)
        if event.type is backend_mod.KVEventType.DELETE:
            await self._on_delete_event(name)
            return
        key = self._key_creator()
        try:
            key.unmarshal(name, event.value)
        except Exception as exc:
            log.warning("shared store %s: cannot unmarshal %r (%d bytes): %s",
                        self._context, name, len(event.value), exc)
            return
        pending = self._pending_deletes.pop(name, None)
        if pending is not None:
            pending.cancel()
        self._shared[name] = key
        await key_mod.notify_update(self.config.observer, key, self._context)

    async def _on_delete_event(self, name: str) -> None:
        local = self._local.get(name)
        if local is not None:
            log.warning("shared store %s: local key %r was deleted; re-creating it",
                        self._context, name)
            try:
                await self._sync_local_key(local)
            except errors.KVStoreError as exc:
                log.warning("shared store %s: re-creating %r failed (next re-sync retries): %s",
                            self._context, name, exc)
            return
        delay = self.config.shared_key_delete_delay
        if delay <= 0:
            await self._delete_shared(name)
            return
        if name in self._pending_deletes:
            return
        self._pending_deletes[name] = asyncio.get_running_loop().create_task(
            self._delayed_delete(name, delay), name=f"shared-store delayed delete {name}"
        )

    async def _delayed_delete(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._pending_deletes.pop(name, None)
        await self._delete_shared(name)

    async def _delete_shared(self, name: str) -> None:
        key = self._shared.pop(name, None)
        if key is None:
            log.debug("shared store %s: deletion of unknown key %r", self._context, name)
            return
        await key_mod.notify_delete(self.config.observer, key, self._context)
