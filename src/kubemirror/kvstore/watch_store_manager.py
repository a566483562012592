"""``WatchStoreManager``: start per-prefix watchers now, or once their source synced.

Part of the kvstore layer (seed: Cilium ``WatchStoreManager``). Functions are
registered per prefix and started as tasks by ``run``: all at once (``immediate``),
or each when the synced canary of its prefix appears under
``kubemirror/synced/<cluster>/`` (``sync``), so a consumer never mistakes a
half-written prefix for the complete state, even on an ephemeral kvstore.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kubemirror import errors, lifecycle
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import key as key_mod
from kubemirror.kvstore import watch_store

__all__ = ["WSMFunc", "WatchStoreManager"]

log = logging.getLogger(__name__)

WSMFunc = Callable[[], Awaitable[None]]
"""A coroutine function started once its prefix is ready; cancelled on stop."""


class WatchStoreManager(lifecycle.StartStopService):
    """Runs a coroutine function per kvstore prefix when that prefix is ready.

    Build it with ``WatchStoreManager.immediate(cluster)`` (start everything when
    ``run`` starts) or ``WatchStoreManager.sync(backend, cluster)`` (start a prefix's
    function once ``synced_key(cluster, prefix)`` exists; canaries of unregistered
    prefixes are ignored). ``register`` is allowed only before ``run``/``start``.

    Each function runs once, as its own task; an exception is logged and does not
    affect the others. ``stop()`` (or the ``stop`` event given to ``run``) cancels
    the canary watch and every function and waits for them. Not thread-safe.
    """

    def __init__(self, cluster: str, backend: backend_mod.Backend | None = None) -> None:
        self.cluster = cluster
        self.backend = backend
        self._functions: dict[str, WSMFunc] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._started = False
        self._progress = asyncio.Event()

    @classmethod
    def immediate(cls, cluster: str) -> WatchStoreManager:
        """A manager starting every registered function as soon as it runs."""
        return cls(cluster)

    @classmethod
    def sync(cls, backend: backend_mod.Backend, cluster: str) -> WatchStoreManager:
        """A manager starting each function once its prefix's synced canary exists."""
        return cls(cluster, backend)

    @property
    def waits_for_sync(self) -> bool:
        """True for ``sync`` managers."""
        return self.backend is not None

    def register(self, prefix: str, function: WSMFunc) -> None:
        """Run ``function()`` when ``prefix`` is ready; replaces an earlier one.

        Raises ``KVStoreStateError`` once the manager runs.
        """
        if self._started:
            raise errors.KVStoreStateError("cannot register while the watch store manager runs")
        self._functions[backend_mod.join_key(prefix)] = function

    def started_prefixes(self) -> list[str]:
        """Prefixes whose function has been started, in start order."""
        return list(self._tasks)

    def start(self) -> None:
        """Start the manager; raises ``KVStoreStateError`` if started before."""
        if self._started:
            raise errors.KVStoreStateError("the watch store manager was already started")
        self._started = True
        log.info("watch store manager cluster=%s: starting", self.cluster)
        if self.backend is None:
            for prefix in list(self._functions):
                self._ready(prefix)
            return
        store = watch_store.RestartableWatchStore(
            self.cluster, key_mod.kv_pair_creator, _CanaryObserver(self)
        )
        root = backend_mod.synced_key(self.cluster, "")
        self._watch_task = asyncio.get_running_loop().create_task(
            store.watch(self.backend, root), name=f"watch-store-manager {root}"
        )

    def _ready(self, prefix: str) -> None:
        prefix = backend_mod.join_key(prefix)
        function = self._functions.pop(prefix, None)
        if function is None:
            log.debug("watch store manager: synced canary for unregistered prefix %r", prefix)
            return
        log.debug("watch store manager cluster=%s: starting function for %r", self.cluster, prefix)
        self._tasks[prefix] = asyncio.get_running_loop().create_task(
            self._guard(prefix, function), name=f"watch-store-manager fn {prefix}"
        )
        self._progress.set()

    async def _guard(self, prefix: str, function: WSMFunc) -> None:
        try:
            await function()
        except Exception:
            log.exception("watch store manager: function for %r failed", prefix)

    async def wait_started(self, prefix: str) -> None:
        """Wait until the function of ``prefix`` has been started."""
        prefix = backend_mod.join_key(prefix)
        while prefix not in self._tasks:
            self._progress.clear()
            await self._progress.wait()

    async def stop(self) -> None:
        """Cancel the canary watch and every started function, and wait for them."""
        tasks = list(self._tasks.values())
        if self._watch_task is not None:
            tasks.append(self._watch_task)
            self._watch_task = None
        await lifecycle.cancel_and_wait(tasks)
        if tasks:
            log.info("watch store manager cluster=%s: stopped", self.cluster)


class _CanaryObserver:
    """Turns synced-canary updates into ``WatchStoreManager._ready`` calls."""

    def __init__(self, manager: WatchStoreManager) -> None:
        self._manager = manager

    def on_update(self, key: key_mod.Key) -> None:
        self._manager._ready(key.get_key_name())

    def on_delete(self, key: key_mod.NamedKey) -> None:
        return None
