"""The kvstore ``Backend`` protocol, its watch events, and key-path helpers.

Part of the kvstore layer (seed: Cilium ``pkg/kvstore``). A backend is an async
key/value client with revisions, prefix list-and-watch and one session lease;
``MemoryBackend`` (embedded, in-process) and ``EtcdBackend`` (a real etcd server)
implement it with the same semantics, and every store in this package is written
against the protocol only.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "MAX_BATCH",
    "SYNCED_PREFIX",
    "Backend",
    "KVEvent",
    "KVEventType",
    "LeaseExpiredObserver",
    "join_key",
    "synced_key",
]

SYNCED_PREFIX = "kubemirror/synced"
"""Root under which sync stores write their "synced" canaries.

The canary of a ``WorkqueueSyncStore`` for ``cluster`` and ``prefix`` lives at
``kubemirror/synced/<cluster>/<prefix>`` (Cilium uses ``cilium/synced/...``).
"""

MAX_BATCH = 128
"""Keys per ``update_many`` batch: etcd's default ``--max-txn-ops``."""

LeaseExpiredObserver = Callable[[str], None]
"""Called with each key (full path) that was attached to a lease found expired."""


class KVEventType(enum.Enum):
    """What a ``KVEvent`` reports. ``LIST_DONE`` carries no key."""

    CREATE = "create"
    MODIFY = "modify"
    DELETE = "delete"
    LIST_DONE = "list-done"


@dataclass(frozen=True, slots=True)
class KVEvent:
    """One event of ``Backend.list_and_watch``: full key path and value bytes.

    ``value`` is the new value for CREATE/MODIFY and ``b""`` for DELETE (etcd does
    not send deleted values); ``key`` and ``value`` are empty for LIST_DONE.
    ``revision`` is the backend revision of the change: the key's mod revision for
    CREATE/MODIFY (also in a listing), the deletion's revision for DELETE (for a
    deletion found by a relist after a compaction, that relist's revision), and the
    revision the listing was taken at for LIST_DONE.
    """

    type: KVEventType
    key: str = ""
    value: bytes = b""
    revision: int = 0


def join_key(*parts: str) -> str:
    """Join key path parts with single slashes, dropping empty parts and edge slashes.

    ``join_key("a/", "/b", "c")`` is ``"a/b/c"``; used for every key path this package
    composes (store prefix + key name, canary paths).
    """
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def synced_key(cluster: str, prefix: str) -> str:
    """The canary key written once ``prefix`` of ``cluster`` is fully synchronized."""
    return join_key(SYNCED_PREFIX, cluster, prefix)


@runtime_checkable
class Backend(Protocol):
    """An asynchronous kvstore client session (the seam every store is written to).

    Semantics shared by all implementations:

    - Keys are ``str`` paths (UTF-8 on the wire), values are ``bytes``.
    - Writes are idempotent: putting the same value again or deleting an absent key
      is harmless. A write that raises ``KVStoreUnavailableError`` may or may not have
      been applied; retry it.
    - ``lease=True`` attaches the key to this session's lease (granted lazily, kept
      alive every TTL/3). When the session dies, its leased keys disappear for
      everyone. When the session finds its lease expired (revoked, or not kept alive
      in time) it grants a new one on the next leased write and calls every observer
      registered for a prefix of an affected key, so owners can re-create it.
    - ``list_and_watch(prefix)`` yields the current keys (CREATE), then one
      LIST_DONE (carrying the listing's revision), then every later change in
      revision order, forever: it resumes
      after connection loss without gaps or duplicates, and after a compaction it
      relists and emits the difference (including DELETEs). It ends only when the
      caller closes it (``aclose()``) or the backend is closed.

    Backends are asyncio objects: use one from the event loop that created it.
    """

    @property
    def lease_id(self) -> int | None:
        """The id of this session's current lease, or None before the first leased write."""
        ...

    async def update(self, key: str, value: bytes, lease: bool = False) -> None:
        """Create or overwrite ``key``; attach it to the session lease if ``lease``."""
        ...

    async def update_if_different(self, key: str, value: bytes, lease: bool = False) -> bool:
        """Write only if the stored value or lease differs (compare-and-swap); True if written."""
        ...

    async def update_many(self, writes: Mapping[str, bytes | None], lease: bool = False) -> None:
        """Put each key with a value and delete each key mapped to None, in batches.

        etcd applies each batch of up to ``MAX_BATCH`` keys as one transaction (one
        revision); larger mappings are split, so only each batch is atomic. Retry and
        lease semantics are those of ``update``.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None."""
        ...

    async def list_prefix(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` (a plain string prefix) with its value."""
        ...

    def list_and_watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        """Current keys under ``prefix``, a LIST_DONE marker, then all changes."""
        ...

    def register_lease_expired_observer(
        self, prefix: str, observer: LeaseExpiredObserver | None
    ) -> None:
        """Call ``observer(key)`` for leased keys under ``prefix`` whose lease expired.

        One observer per prefix; registering again replaces it, ``None`` removes it.
        """
        ...

    async def close(self) -> None:
        """Stop the keep-alive and every watch, and release the connection.

        The lease is not revoked: leased keys live on until it expires, exactly as
        if the process had died.
        """
        ...

    async def __aenter__(self) -> Backend: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
