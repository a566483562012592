"""``SingleWatcher``: one named object, with an immediate callback on every change.

Part of the ``watcher`` layer (haproxy-template-ic ``k8s/watcher`` single watcher):
a ``Reflector`` restricted by field selector to one object (or a ``KVReflector``
on the object's key), writing into a tiny ``ReflectorStore`` that keeps the
current state and queues the callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubemirror import errors, keys, lifecycle, listwatch, reflector
from kubemirror.client import transport
from kubemirror.kvstore import backend as kv_backend
from kubemirror.stores import indexed_store
from kubemirror.types import Obj
from kubemirror.watcher import kv_source, thread
from kubemirror.watcher.config import SingleWatcherConfig, invoke

__all__ = ["SingleWatcher"]

log = logging.getLogger(__name__)


class _SingleWriter:
    """The ``ReflectorStore`` of a ``SingleWatcher``: keeps the one object, queues changes.

    Objects with another namespace/name are ignored (in case a server ignores the
    field selector). Unchanged resourceVersions (resyncs, relists) are not changes.
    """

    def __init__(self, namespace: str, name: str, queue: asyncio.Queue[tuple[str, Obj | None]]):
        self.namespace = namespace
        self.name = name
        self.queue = queue
        self.current: Obj | None = None
        self.listed = False

    def _mine(self, obj: Any) -> bool:
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        return (
            isinstance(meta, Mapping)
            and meta.get("name") == self.name
            and (meta.get("namespace") or "") == self.namespace
        )

    def _set(self, obj: Obj | None) -> None:
        old, self.current = self.current, obj
        if not self.listed:
            return
        if obj is None:
            if old is not None:
                self.queue.put_nowait(("change", old))
        elif old is None or not indexed_store.resource_version(obj) or (
            indexed_store.resource_version(obj) != indexed_store.resource_version(old)
        ):
            self.queue.put_nowait(("change", obj))

    def add(self, obj: Any) -> None:
        if self._mine(obj):
            self._set(obj)

    update = add

    def delete(self, obj: Any) -> None:
        if isinstance(obj, keys.DeletedFinalStateUnknown):
            if obj.obj is None:  # a kvstore deletion: report the last state known
                if obj.key == (f"{self.namespace}/{self.name}" if self.namespace else self.name):
                    self._set(None)
                return
            obj = obj.obj
        if self._mine(obj):
            if self.listed and self.current is not None:
                self.current = obj  # report the final state the DELETED event carries
            self._set(None)

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        found = next((obj for obj in objs if self._mine(obj)), None)
        self._set(found)
        if not self.listed:
            self.listed = True
            self.queue.put_nowait(("sync", found))

    def resync(self) -> None:
        """Nothing to do."""


class SingleWatcher(lifecycle.Service):
    """Follows one named object; ``on_change(obj)`` at once for each change after sync.

    Lists and watches with the field selector ``metadata.name=<name>``.
    ``on_sync_complete(obj)`` receives the state after the initial list (``None``
    if absent); afterwards every change with a new resourceVersion calls
    ``on_change`` with the new object, and a deletion calls it with the final
    state of the deleted object (``current`` is ``None`` by then). Callbacks run
    one at a time, in event order (sync ones in a worker thread); errors are
    logged. ``source`` is a ``KubeClient`` or a ``ListerWatcher`` already
    restricted to the object, or, for a ``KVSource``, a ``kvstore.Backend`` (the
    key ``<prefix>/<namespace>/<name>`` is followed; etcd sends no deleted value,
    so a deletion reports the last state seen). Same lifecycle as ``Watcher`` (a
    ``lifecycle.Service``).
    """

    def __init__(
        self,
        config: SingleWatcherConfig,
        source: transport.KubeClient | listwatch.ListerWatcher | kv_backend.Backend,
        *,
        resync_period: float = 0.0,
    ) -> None:
        config.set_defaults()
        config.validate()
        self.config = config
        self.source = source
        self._queue: asyncio.Queue[tuple[str, Obj | None]] = asyncio.Queue()
        self._writer = _SingleWriter(config.namespace, config.name, self._queue)
        self._synced = asyncio.Event()
        self.reflector: reflector.Reflector | kv_source.KVReflector
        if config.source is not None:
            kv = config.source
            if not isinstance(source, kv_backend.Backend):
                raise errors.ConfigError(
                    f"a KVSource ({kv}) is read through a kvstore Backend, got "
                    f"{type(source).__name__}",
                    field="source",
                )
            self.name = f"kvstore {kv.key_of(config.namespace, config.name)}"
            self.reflector = kv_source.KVReflector(
                source, kv, self._writer, namespace=config.namespace,
                only_name=config.name, name=self.name,
            )
            return
        assert config.gvr is not None
        if isinstance(source, transport.KubeClient):
            lister_watcher: listwatch.ListerWatcher = listwatch.ListWatch(
                source, config.gvr, config.namespace,
                field_selector=f"metadata.name={config.name}",
            )
        elif isinstance(source, kv_backend.Backend):
            raise errors.ConfigError(
                "a kvstore Backend reads a KVSource: set SingleWatcherConfig.source",
                field="source",
            )
        else:
            lister_watcher = source
        self.name = f"{config.gvr} {config.namespace}/{config.name}"
        self.reflector = reflector.Reflector(
            lister_watcher, self._writer, page_size=0, resync_period=resync_period, name=self.name
        )

    @property
    def current(self) -> Obj | None:
        """The object as last seen (shared: do not mutate), or ``None`` if absent."""
        return self._writer.current

    def has_synced(self) -> bool:
        """True once ``on_sync_complete`` has returned (or would have, if unset)."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        """Wait until ``has_synced()``."""
        await self._synced.wait()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch until ``stop`` is set; callbacks already queued are still delivered."""
        self.reflector.start()
        dispatcher = asyncio.ensure_future(self._dispatch())
        try:
            await lifecycle.wait_stopped(stop)
        finally:
            try:
                await self.reflector.stop()
            except Exception:
                log.exception("%s: the reflector failed", self.name)
            self._queue.put_nowait(("stop", None))
            await asyncio.gather(dispatcher, return_exceptions=True)

    async def _dispatch(self) -> None:
        while True:
            kind, obj = await self._queue.get()
            if kind == "stop":
                return
            if kind == "sync":
                if self.config.on_sync_complete is not None:
                    await invoke(
                        self.config.on_sync_complete, f"{self.name}: on_sync_complete", obj
                    )
                self._synced.set()
            else:
                assert self.config.on_change is not None
                await invoke(self.config.on_change, f"{self.name}: on_change", obj)

    def start_in_thread(self) -> thread.WatcherThread:
        """Run on a new event loop in a daemon thread; see ``WatcherThread``."""
        return thread.WatcherThread(self).start()
