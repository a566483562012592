"""``KVSource``: a kvstore key prefix as the collection a ``Watcher`` mirrors.

Part of the ``watcher`` layer, over ``kvstore`` (any ``Backend``: a real etcd or
the embedded memory keyspace). A key under the prefix is an object: the key's
last part is ``metadata.name``, the parts between the prefix and the name are
``metadata.namespace`` (kube-apiserver's own etcd layout,
``/registry/pods/<namespace>/<name>``), its mod revision is
``metadata.resourceVersion``, and its value is the rest of the object. So
``index_by``, ``ignore_fields``, label selectors, the stores and ``ChangeStats``
mean the same for both kinds of source. ``KVReflector`` keeps a
``ReflectorStore`` equal to the prefix by consuming the backend's restartable
``list_and_watch`` (which resumes after connection loss and relists after a
compaction, emitting the deletes it missed); ``KVLister`` lists the current
truth with its revision, as a ``ListerWatcher.list`` does for Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from kubemirror import bulk, errors, keys, lifecycle, reflector, selectors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.listing import ListOptions, ListPage

__all__ = ["KVLister", "KVReflector", "KVSource", "ValueFormat"]

log = logging.getLogger(__name__)


class ValueFormat(enum.Enum):
    """How a ``KVSource`` reads the values under its prefix."""

    JSON = "json"
    """JSON. An object value is the mirrored object itself (its ``metadata`` gains the
    name, namespace and resourceVersion of the key); any other JSON value is kept
    under ``"value"``. A value that is not JSON is logged and skipped."""
    RAW = "raw"
    """Bytes, kept as they are under ``"value"``: index such keys by their key parts
    (``metadata.namespace``, ``metadata.name``)."""


@dataclass(frozen=True, slots=True)
class KVSource:
    """What to mirror from a kvstore: the keys under ``prefix``, read as ``values``.

    ``prefix`` is a key path; a trailing ``/`` is implied (``"agents"`` watches
    ``agents/...``, never ``agents2/...``); ``""`` is the whole keyspace. The key
    ``agents/eu/zone-a/node-1`` becomes the object ``{"metadata": {"namespace":
    "eu/zone-a", "name": "node-1", "resourceVersion": "<mod revision>"}, ...}``; a
    key right under the prefix has no namespace. The key decides name and
    namespace, whatever the value's own ``metadata`` says. Immutable, hashable.
    """

    prefix: str
    values: ValueFormat = ValueFormat.JSON

    def validate(self, field: str = "source") -> None:
        """Raise ``ConfigError`` naming ``source.prefix``/``source.values`` if malformed."""
        if not isinstance(self.prefix, str):
            raise errors.ConfigError(
                f"must be a string, got {type(self.prefix).__name__}", field=f"{field}.prefix"
            )
        if "//" in self.prefix.strip("/"):
            raise errors.ConfigError(
                "must not contain an empty key part ('//')",
                field=f"{field}.prefix",
                expression=self.prefix,
            )
        if not isinstance(self.values, ValueFormat):
            raise errors.ConfigError(
                f"must be ValueFormat.JSON or ValueFormat.RAW, got {self.values!r}",
                field=f"{field}.values",
            )

    @property
    def root(self) -> str:
        """The watched key prefix, ending with ``/`` (``""`` for the whole keyspace)."""
        stripped = self.prefix.strip("/")
        lead = "/" if self.prefix.startswith("/") else ""
        return f"{lead}{stripped}/" if stripped else lead

    def key_prefix(self, namespace: str = "") -> str:
        """The key prefix of ``namespace`` (``root`` for all namespaces)."""
        return f"{self.root}{namespace}/" if namespace else self.root

    def key_of(self, namespace: str, name: str) -> str:
        """The full key of the object ``namespace``/``name``."""
        return f"{self.key_prefix(namespace)}{name}"

    def split_key(self, key: str) -> tuple[str, str]:
        """``(namespace, name)`` of a full key under the prefix (name ``""``: a trailing ``/``)."""
        relative = key[len(self.root):] if key.startswith(self.root) else key
        namespace, _, name = relative.rpartition("/")
        return namespace, name

    def metadata(self, key: str, revision: int) -> dict[str, Any]:
        """The identifying ``metadata`` of ``key`` at mod revision ``revision``."""
        namespace, name = self.split_key(key)
        meta: dict[str, Any] = {"name": name, "resourceVersion": str(revision)}
        if namespace:
            meta["namespace"] = namespace
        return meta

    def to_object(self, key: str, value: bytes, revision: int) -> dict[str, Any]:
        """The object a watcher stores for ``key`` holding ``value`` at ``revision``.

        A fresh dict every call (nothing else holds it). Raises
        ``MalformedValueError`` when ``values`` is JSON and ``value`` is not.
        """
        meta = self.metadata(key, revision)
        if self.values is ValueFormat.RAW:
            return {"metadata": meta, "value": value}
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise errors.MalformedValueError(key, revision, f"not JSON: {exc}") from None
        if not isinstance(decoded, dict):
            return {"metadata": meta, "value": decoded}
        own = decoded.get("metadata")
        if isinstance(own, dict):
            own.pop("namespace", None)  # the key decides
            own.update(meta)
            meta = own
        decoded["metadata"] = meta
        return decoded

    def tombstone(self, key: str) -> keys.DeletedFinalStateUnknown:
        """What a deletion of ``key`` is written as: etcd does not send deleted values."""
        namespace, name = self.split_key(key)
        return keys.DeletedFinalStateUnknown(f"{namespace}/{name}" if namespace else name, None)

    def __str__(self) -> str:
        return f"{self.root or '/'} ({self.values.value} values)"


def _gone(message: str) -> errors.GoneError:
    return errors.GoneError(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
         "reason": "Expired", "message": message}
    )


def _bad_request(message: str) -> errors.BadRequestError:
    return errors.BadRequestError(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
         "reason": "BadRequest", "message": message}
    )


class KVLister:
    """Lists a ``KVSource`` (one namespace, or all; label-selected) like a Kubernetes LIST:
    a ``listwatch.Lister``.

    ``list(opts)`` returns every matching object and the revision the listing
    was taken at as ``resource_version``: the current truth, read through the
    listing half of ``Backend.list_and_watch`` (one consistent etcd range; no
    watch is opened). The options are those of a LIST: ``label_selector`` and
    ``field_selector`` narrow the result further; ``limit`` is ignored (one
    page); ``resource_version_match="Exact"`` is served only when the listing's
    revision is the one asked for, else ``GoneError`` (410), as a server without
    the history would answer (kvstore backends keep none): callers then list
    the current state. Values that cannot be decoded are logged and left out.
    Stateless; use from the backend's event loop.
    """

    def __init__(
        self,
        backend: backend_mod.Backend,
        source: KVSource,
        namespace: str = "",
        *,
        selector: selectors.LabelSelector | None = None,
        name: str = "",
    ) -> None:
        self.backend = backend
        self.source = source
        self.namespace = namespace
        self.selector = selector or selectors.LabelSelector.everything()
        self.only_name = name

    @property
    def watch_prefix(self) -> str:
        """The key prefix read from the backend."""
        return self.source.key_prefix(self.namespace) + self.only_name

    def wanted(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` (a decoded value) is in this lister's selection."""
        if self.only_name and obj["metadata"]["name"] != self.only_name:
            return False
        return self.selector.matches_object(obj)

    def decode(self, key: str, value: bytes, revision: int) -> dict[str, Any] | None:
        """``source.to_object``; a malformed value is logged and ``None``."""
        try:
            return self.source.to_object(key, value, revision)
        except errors.MalformedValueError as exc:
            log.warning("%s: %s; keeping its previous value", self, exc)
            return None

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]:
        """The current objects and the listing's revision; see the class docstring."""
        label_selector = selectors.LabelSelector.parse(opts.label_selector)
        field_selector = selectors.FieldSelector.parse(opts.field_selector)
        wanted_rv = 0
        if opts.resource_version not in ("", "0"):
            try:
                wanted_rv = int(opts.resource_version)
            except ValueError:
                raise _bad_request(
                    f"resourceVersion {opts.resource_version!r}: a kvstore revision is an integer"
                ) from None
        items: list[dict[str, Any]] = []
        revision = 0
        events = self.backend.list_and_watch(self.watch_prefix)
        try:
            async for event in events:
                if event.type is backend_mod.KVEventType.LIST_DONE:
                    revision = event.revision
                    break
                obj = self.decode(event.key, event.value, event.revision)
                if (obj is not None and self.wanted(obj) and label_selector.matches_object(obj)
                        and field_selector.matches(obj)):
                    items.append(obj)
        finally:
            await events.aclose()
        if opts.resource_version_match == "Exact" and wanted_rv and wanted_rv != revision:
            raise _gone(
                f"revision {wanted_rv} of {self.watch_prefix!r} cannot be listed: the kvstore "
                f"is at revision {revision} and keeps no history"
            )
        return ListPage(items=items, resource_version=str(revision))

    def __str__(self) -> str:
        return f"kvstore {self.watch_prefix or '/'}"


class KVReflector(lifecycle.Service):
    """Keeps ``store`` equal to a ``KVSource`` by consuming ``Backend.list_and_watch``.

    The kvstore counterpart of ``reflector.Reflector``, writing the same
    ``ReflectorStore`` calls: the listing (every key up to LIST_DONE) becomes one
    ``store.replace(objects, revision)``; then CREATE is ``add``, MODIFY is
    ``update`` and DELETE is ``delete`` of a ``DeletedFinalStateUnknown`` (etcd
    sends no deleted value; the store knows the last one). A value leaving the
    label selection is deleted. Resuming after connection loss and relisting
    after a compaction (with the missed deletes) are the backend's, so this is no
    second watch loop; should the stream fail anyway, it is reopened after a
    backoff and its listing replaces the store (a diff). A closed backend ends
    ``run`` with ``KVStoreClosedError``. A malformed value is logged and counted
    in ``stats.malformed_events``; the key keeps its previous value.

    Offers what a ``Watcher`` reads of a ``Reflector``: ``lw`` (here a
    ``KVLister``, a ``listwatch.Lister``: the current truth with its revision;
    ``page_size`` is 0, a listing is never paged), ``stats``,
    ``last_sync_resource_version`` (the revision of the last listing or event
    applied), ``has_synced()``, and ``request_relist()`` (to repair a store found
    wrong). A ``lifecycle.Service`` on the backend's loop.
    """

    page_size = 0

    def __init__(
        self,
        backend: backend_mod.Backend,
        source: KVSource,
        store: reflector.ReflectorStore,
        *,
        namespace: str = "",
        selector: selectors.LabelSelector | None = None,
        only_name: str = "",
        name: str = "",
        freeze_gc_after_sync: bool = False,
        backoff: reflector.Backoff | None = None,
    ) -> None:
        self.lw = KVLister(backend, source, namespace, selector=selector, name=only_name)
        self.backend = backend
        self.source = source
        self.store = store
        self.name = name or str(self.lw)
        self.freeze_gc_after_sync = freeze_gc_after_sync
        self.backoff = backoff or reflector.Backoff()
        self.stats = reflector.ReflectorStats()
        self._rv = ""
        self._synced = False
        self._relist_requested = False
        self._follow_task: asyncio.Future[None] | None = None

    @property
    def last_sync_resource_version(self) -> str:
        """The revision of the last listing or event applied to the store (``""`` before)."""
        return self._rv

    def has_synced(self) -> bool:
        """True once the first listing has been handed to ``store.replace``."""
        return self._synced

    def request_relist(self) -> None:
        """List again soon: the open stream is closed, and a new listing replaces the
        store (a diff: the missing deletes, the changed values). Call it on the loop."""
        self._relist_requested = True
        task = self._follow_task
        if task is not None and not task.done():
            task.cancel()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the prefix until ``stop`` is set; raises only if the backend is closed."""
        await lifecycle.run_until_stopped(self._follow_forever(), stop)

    async def _follow_forever(self) -> None:
        while True:
            self._relist_requested = False
            task = self._follow_task = asyncio.ensure_future(self._follow())
            try:
                try:
                    # Not ``await task``: that would wait for the task to take our
                    # cancellation, and one can be lost below us (Python 3.11's
                    # ``asyncio.wait_for``, which aetcd uses to create a watch).
                    await asyncio.wait({task})
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):  # we are cancelled: that wins
                        await lifecycle.cancel_and_wait([task])
                    raise
                task.result()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._relist_requested and (current is None or not current.cancelling()):
                    log.info("%s: relist requested", self.name)
                    continue
                raise
            except errors.KVStoreClosedError:
                log.error("%s: the kvstore backend was closed; the mirror stops following it",
                          self.name)
                raise
            except Exception as exc:
                self.stats.errors += 1
                self.stats.last_error = repr(exc)
                log.warning("%s: list-and-watch failed (%s); reopening", self.name, exc)
                await asyncio.sleep(self.backoff.next())
            finally:
                self._follow_task = None

    async def _follow(self) -> None:
        lw = self.lw
        source = self.source
        store = self.store
        stats = self.stats
        events = self.backend.list_and_watch(lw.watch_prefix)
        stats.watches += 1
        listing: list[dict[str, Any]] | None = []
        gc_paused = contextlib.ExitStack()
        gc_paused.enter_context(bulk.paused_gc())  # only objects that survive are created
        try:
            async for event in events:
                kind = event.type
                if kind is backend_mod.KVEventType.LIST_DONE:
                    if listing is not None:
                        gc_paused.close()
                        self._replace(listing, event.revision)
                        listing = None
                    continue
                if kind is backend_mod.KVEventType.DELETE:
                    obj: Any = source.tombstone(event.key)
                else:
                    decoded = lw.decode(event.key, event.value, event.revision)
                    if decoded is None:
                        stats.malformed_events += 1
                        continue
                    obj = decoded if lw.wanted(decoded) else source.tombstone(event.key)
                if listing is not None:  # before LIST_DONE: only CREATEs
                    if isinstance(obj, dict):
                        listing.append(obj)
                    continue
                try:
                    if isinstance(obj, keys.DeletedFinalStateUnknown):
                        store.delete(obj)
                    elif kind is backend_mod.KVEventType.CREATE:
                        store.add(obj)
                    else:
                        store.update(obj)
                except errors.KubemirrorError as exc:
                    stats.errors += 1
                    stats.last_error = repr(exc)
                    log.warning("%s: cannot apply %s of %r: %s", self.name, kind.value,
                                event.key, exc)
                self._rv = str(event.revision)
                stats.events += 1
                if self._relist_requested:  # in case its cancellation was lost
                    raise asyncio.CancelledError
            raise errors.KVStoreClosedError(f"the list-and-watch stream of {lw.watch_prefix!r}")
        finally:
            gc_paused.close()
            with contextlib.suppress(Exception):
                await events.aclose()

    def _replace(self, items: list[dict[str, Any]], revision: int) -> None:
        self.store.replace(items, str(revision))
        self._rv = str(revision)
        self.stats.lists += 1
        if self._synced:
            self.stats.relists += 1
        self.backoff.reset()
        log.debug("%s: listed %d objects at revision %d", self.name, len(items), revision)
        if not self._synced:
            self._synced = True
            if self.freeze_gc_after_sync:
                gc.freeze()
