"""The real kube-apiserver as run_all's and bench_server's source: start, seed, write.

``EnvTest`` (the pinned kube-apiserver v1.37.2 and etcd v3.7.0 that ``kubemirror
envtest setup`` builds) on loopback with TLS and a client certificate. Seeding goes
through the API, as a user's pods would: namespaces first, then every pod created
and its status written by a merge patch on ``/status`` (a create drops ``status``),
so the server stores what ``podgen`` generates plus its own defaults and
managedFields. The requests are concurrent over ``CONNECTIONS`` keep-alive HTTP/1.1
connections (aiohttp; kube-apiserver speaks HTTP/2 too, but no HTTP/2 client is a
dependency here and many connections spread the work over the server's cores as
well). Writing straight into etcd would be faster still, but it would skip
admission, defaulting and the protobuf encoding the server stores, and need that
encoding reimplemented: the API path keeps the data genuine.

``update_pods`` writes MODIFIED events for the watch phase the same way (a merge
patch of one annotation per pod, round robin).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson

CONNECTIONS = 32


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Seeder:
    """Concurrent writes to one kube-apiserver (admin client certificate). One event
    loop at a time; use ``async with``."""

    def __init__(self, url: str, context: ssl.SSLContext,
                 connections: int = CONNECTIONS) -> None:
        self.url = url
        self.connections = connections
        self._context = context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Seeder:
        connector = aiohttp.TCPConnector(limit=self.connections, ssl=self._context)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def _send(self, method: str, path: str, body: Any,
                    content_type: str = "application/json", ok: tuple[int, ...] = ()) -> None:
        assert self._session is not None
        async with self._session.request(method, self.url + path, data=orjson.dumps(body),
                                         headers={"Content-Type": content_type}) as resp:
            text = await resp.read()
            if resp.status >= 300 and resp.status not in ok:
                raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]!r}")

    async def _pool(self, jobs: Iterable[Any]) -> None:
        """Run the coroutine factories of ``jobs`` on ``connections`` workers."""
        iterator = iter(jobs)

        async def worker() -> None:
            for job in iterator:
                await job()

        await asyncio.gather(*(worker() for _ in range(self.connections)))

    async def seed(self, pods: list[dict[str, Any]]) -> None:
        """Create the namespaces and ``pods`` (then their status); ~2 writes a pod."""
        namespaces = sorted({p["metadata"]["namespace"] for p in pods})
        await self._pool(
            (lambda ns=ns: self._send("POST", "/api/v1/namespaces",
                                      {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": ns}}, ok=(409,)))
            for ns in namespaces)

        async def create(pod: dict[str, Any]) -> None:
            meta = pod["metadata"]
            body = {**pod, "metadata": {k: v for k, v in meta.items()
                                        if k not in ("resourceVersion", "uid",
                                                     "creationTimestamp", "managedFields")}}
            status = body.pop("status", None)
            base = f"/api/v1/namespaces/{meta['namespace']}/pods"
            await self._send("POST", base, body)
            if status:
                await self._send("PATCH", f"{base}/{meta['name']}/status", {"status": status},
                                 "application/merge-patch+json")

        await self._pool((lambda p=p: create(p)) for p in pods)

    async def update_pods(self, names: list[tuple[str, str]], count: int, stamp: str) -> None:
        """``count`` merge patches of annotation ``bench/update``, round robin over ``names``."""

        async def patch(i: int) -> None:
            ns, name = names[i % len(names)]
            await self._send("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}",
                             {"metadata": {"annotations": {"bench/update": f"{stamp}-{i}"}}},
                             "application/merge-patch+json")

        await self._pool((lambda i=i: patch(i)) for i in range(count))


def start_envtest(work_dir: str | None = None) -> Any:
    """A started EnvTest (binaries from ``KUBEBUILDER_ASSETS`` or the envtest cache)."""
    from kubemirror.envtest import EnvTest

    started = time.perf_counter()
    env = EnvTest(work_dir=work_dir, build=False)
    env.start()
    log(f"kube-apiserver up at {env.url} in {time.perf_counter() - started:.1f} s")
    return env


def seed_pods(env: Any, size: int, seed: int) -> list[tuple[str, str]]:
    """Seed ``size`` podgen pods into ``env``; returns their (namespace, name)s."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import podgen

    pods = podgen.make_pods(size, seed)
    started = time.perf_counter()

    async def go() -> None:
        async with Seeder(env.url, env.ssl_context(client_cert=True)) as seeder:
            await seeder.seed(pods)

    asyncio.run(go())
    took = time.perf_counter() - started
    log(f"seeded {size:,} pods (create + status) in {took:.1f} s: {size / took:,.0f} pods/s "
        f"over {CONNECTIONS} connections")
    return [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]


def update_pods(env: Any, names: list[tuple[str, str]], count: int, stamp: str) -> float:
    """Write ``count`` pod updates; returns the seconds it took."""
    started = time.perf_counter()

    async def go() -> None:
        async with Seeder(env.url, env.ssl_context(client_cert=True)) as seeder:
            await seeder.update_pods(names, count, stamp)

    asyncio.run(go())
    return time.perf_counter() - started
