"""Open a kvstore ``Backend`` from a URL, and dump or follow a prefix.

Part of the kvstore layer; the entry points for the ``kubemirror kv`` command and
for scripts. ``memory://`` is the process-wide embedded keyspace; ``etcd://host:port``
(also ``http://``, ``https://`` or a bare ``host:port``; several comma-separated for
the members of a cluster) is an etcd v3 cluster, and so is an ``EtcdClientConfig``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from kubemirror import errors
from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import etcd_config, memory

__all__ = ["connect", "list_prefix", "watch_prefix"]


def connect(
    url: str | etcd_config.EtcdClientConfig, *, lease_ttl: float = 15.0
) -> backend_mod.Backend:
    """A new backend session for ``url``; close it (``async with``) when done.

    Raises ``ConfigError`` (field ``url``) for an unknown scheme or a malformed address.
    """
    from kubemirror.kvstore import etcd

    if isinstance(url, etcd_config.EtcdClientConfig):
        return etcd.EtcdBackend(url, lease_ttl=lease_ttl)
    if url in ("memory", "memory://") or url.startswith("memory://"):
        return memory.MemoryBackend(memory.default_server(), lease_ttl=lease_ttl)
    first = url.split(",", 1)[0].strip()
    if "://" in first and not first.startswith(("etcd://", "http://", "https://")):
        raise errors.ConfigError(
            "unknown kvstore scheme (use memory:// or etcd://host:port)", field="url",
            expression=url,
        )
    return etcd.EtcdBackend(url, lease_ttl=lease_ttl)


async def list_prefix(url: str | etcd_config.EtcdClientConfig, prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix`` at ``url`` with its value (one consistent listing)."""
    async with connect(url) as backend:
        return await backend.list_prefix(prefix)


async def watch_prefix(
    url: str | etcd_config.EtcdClientConfig, prefix: str
) -> AsyncGenerator[backend_mod.KVEvent, None]:
    """Follow ``prefix`` at ``url``: current keys, LIST_DONE, then every change.

    Runs until the caller stops iterating (close it with ``aclose()``).
    """
    async with connect(url) as backend:
        events = backend.list_and_watch(prefix)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
