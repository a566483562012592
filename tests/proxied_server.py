"""kubemirror's own API server behind a ``FaultProxy``: what the informer and drift tests run on.

``writer`` talks to the server directly (the truth); ``client`` goes through the proxy,
whose streams the tests hold back, cut or thin out.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from kubemirror.client import ClientConfig, KubeClient
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import PODS, make_pod, new_storage
from tests.faultproxy import FaultProxy


@dataclasses.dataclass
class Env:
    server: KubeApiServer
    proxy: FaultProxy
    writer: KubeClient  # straight to the server
    client: KubeClient  # through the proxy


@contextlib.asynccontextmanager
async def proxied_env(event_window: int = 100_000) -> AsyncIterator[Env]:
    """A started server (``event_window`` events kept, bookmarks every 0.2 s), its proxy
    and both clients; all closed on exit."""
    storage = new_storage(event_window=event_window, bookmark_interval=0.2)
    async with KubeApiServer(storage) as server, FaultProxy(server.url) as proxy:
        writer = KubeClient(ClientConfig(server.url))
        client = KubeClient(ClientConfig(proxy.url))
        try:
            yield Env(server, proxy, writer, client)
        finally:
            await writer.close()
            await client.close()


async def create(env: Env, *names: str) -> None:
    """Create pods ``names`` in ``default`` through the direct client."""
    for name in names:
        await env.writer.create(PODS, make_pod(name), "default")
