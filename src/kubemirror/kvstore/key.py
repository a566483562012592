"""Keys shared through a kvstore, and the observers notified about them.

Part of the kvstore layer (seed: Cilium ``pkg/kvstore/store``). A ``Key`` names itself
(``get_key_name``, unique within a store prefix and stable across restarts) and
converts itself to and from bytes; a ``LocalKey`` is one this process owns and can
deep-copy. ``KVPair`` is the ready-made key holding a name and raw bytes.
``Observer`` callbacks may be plain functions or coroutines; ``notify_update`` and
``notify_delete`` call them and log (never propagate) their exceptions.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "KVPair",
    "Key",
    "KeyCreator",
    "LocalKey",
    "NamedKey",
    "Observer",
    "kv_pair_creator",
    "notify_delete",
    "notify_update",
]

log = logging.getLogger(__name__)


@runtime_checkable
class NamedKey(Protocol):
    """Anything with a key name: enough to delete a key from a store."""

    def get_key_name(self) -> str:
        """The key's name below the store prefix: unique and stable."""
        ...


@runtime_checkable
class Key(NamedKey, Protocol):
    """A value that can be stored under its name in a shared store.

    ``marshal`` must be safe to call while other code reads the key; ``unmarshal``
    fills an empty key (from a ``KeyCreator``) from another collaborator's bytes and
    may raise any exception for malformed data (the stores log and skip the event).
    """

    def marshal(self) -> bytes:
        """The bytes stored in the kvstore for this key."""
        ...

    def unmarshal(self, key: str, data: bytes) -> None:
        """Load this key from its name (prefix removed) and stored bytes."""
        ...


@runtime_checkable
class LocalKey(Key, Protocol):
    """A key owned by the local process."""

    def deep_key_copy(self) -> LocalKey:
        """A copy sharing no mutable state with this key."""
        ...


KeyCreator = Callable[[], Key]
"""Returns a new empty ``Key`` to ``unmarshal`` a discovered key into."""


@dataclass(slots=True)
class KVPair:
    """The basic ``LocalKey``: a name and raw bytes.

    Mutable (``unmarshal`` fills it in place), like every ``Key``; stores hand out
    the instances they keep, so treat keys you receive as read-only.
    """

    key: str = ""
    value: bytes = field(default=b"")

    def get_key_name(self) -> str:
        return self.key

    def marshal(self) -> bytes:
        return self.value

    def unmarshal(self, key: str, data: bytes) -> None:
        self.key = key
        self.value = bytes(data)

    def deep_key_copy(self) -> KVPair:
        return KVPair(self.key, self.value)


def kv_pair_creator() -> Key:
    """``KeyCreator`` for ``KVPair``."""
    return KVPair()


class Observer(Protocol):
    """Receives the changes of a shared or watched store.

    Methods may return None or an awaitable (``async def``); stores await it before
    handling the next event, so events reach one observer in order. Exceptions are
    logged with the key and never stop the watch.
    """

    def on_update(self, key: Key) -> Awaitable[None] | None:
        """``key`` was created or changed. Do not mutate it."""
        ...

    def on_delete(self, key: NamedKey) -> Awaitable[None] | None:
        """``key`` was deleted (the last known value is passed)."""
        ...


async def _call(
    what: str, fn: Callable[[Key], Awaitable[None] | None], key: Key, context: str
) -> bool:
    try:
        result = fn(key)
        if result is not None and inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("observer %s failed for key %r (%s)", what, key.get_key_name(), context)
        return False
    return True


async def notify_update(observer: Observer | None, key: Key, context: str = "") -> bool:
    """Call ``observer.on_update(key)`` (awaiting a coroutine); False if it raised.

    The exception is logged with the key and ``context`` (store prefix, cluster).
    """
    if observer is None:
        return True
    return await _call("on_update", observer.on_update, key, context)


async def notify_delete(observer: Observer | None, key: Key, context: str = "") -> bool:
    """Call ``observer.on_delete(key)`` (awaiting a coroutine); False if it raised."""
    if observer is None:
        return True
    return await _call("on_delete", observer.on_delete, key, context)
