"""The real kube-apiserver as run_all's and bench_server's source: start, seed, write.

``EnvTest`` (the pinned kube-apiserver v1.37.2 and etcd v3.7.0 that ``kubemirror
envtest setup`` builds) on loopback with TLS and a client certificate.

Seeding: namespaces are created through the API (admission checks them on every
later write); the pods go straight into etcd as JSON under
``/registry/pods/<ns>/<name>``, 64 puts a transaction, 8 transactions at once,
through etcd's JSON gateway. kube-apiserver decodes every serializer it knows from
storage (that is how a storage media type migrates), so it serves them as if it had
written them, and its watch cache picks them up from etcd's watch. Why not the API:
each create of a 6 KB pod costs the server admission, validation, managedFields
and protobuf encoding, and a create drops ``status`` (a second write is needed):
measured at 58 pods/s over 32 keep-alive connections on this loaded 2-core machine,
which is half an hour for 100k pods. etcd takes them ~50x faster, and stores
exactly the bytes podgen makes (managedFields and status included), the data the
bench server serves. ``seed_pods(..., through_api=True)`` keeps the API path.

``update_pods`` writes the watch phase's MODIFIED events (one annotation changed,
pods round robin) the same way, into etcd: kube-apiserver's watch cache receives
them from etcd's watch and encodes them for every watcher (JSON, or protobuf for
client-go), which is the path a watch measures; the API's write path (~70 writes/s
here under load) would otherwise be the bottleneck of every contender's watch.
``through_api=True`` sends them as merge patches through the API instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import orjson

CONNECTIONS = 32


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_pool(jobs: Iterable[Callable[[], Awaitable[None]]], workers: int) -> None:
    """Run the coroutine factories of ``jobs`` on ``workers`` concurrent workers."""
    iterator = iter(jobs)

    async def worker() -> None:
        for job in iterator:
            await job()

    await asyncio.gather(*(worker() for _ in range(workers)))


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

    async def send(self, method: str, path: str, body: Any,
                   content_type: str = "application/json", ok: tuple[int, ...] = ()) -> None:
        assert self._session is not None
        async with self._session.request(method, self.url + path, data=orjson.dumps(body),
                                         headers={"Content-Type": content_type}) as resp:
            text = await resp.read()
            if resp.status >= 300 and resp.status not in ok:
                raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]!r}")

    async def create_namespaces(self, namespaces: Iterable[str]) -> None:
        """Create ``namespaces`` (existing ones are fine)."""

        def job(ns: str) -> Callable[[], Awaitable[None]]:
            return lambda: self.send("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, ok=(409,))

        await run_pool((job(ns) for ns in namespaces), self.connections)

    async def create_pods(self, pods: list[dict[str, Any]]) -> None:
        """Create ``pods`` through the API, then write their status (~2 writes a pod)."""

        async def create(pod: dict[str, Any]) -> None:
            meta = pod["metadata"]
            body = {**pod, "metadata": {k: v for k, v in meta.items()
                                        if k not in ("resourceVersion", "uid",
                                                     "creationTimestamp", "managedFields")}}
            status = body.pop("status", None)
            base = f"/api/v1/namespaces/{meta['namespace']}/pods"
            await self.send("POST", base, body)
            if status:
                await self.send("PATCH", f"{base}/{meta['name']}/status", {"status": status},
                                "application/merge-patch+json")

        def job(pod: dict[str, Any]) -> Callable[[], Awaitable[None]]:
            return lambda: create(pod)

        await run_pool((job(p) for p in pods), self.connections)

    async def update_pods(self, names: list[tuple[str, str]], count: int, stamp: str) -> None:
        """``count`` merge patches of annotation ``bench/update``, round robin over ``names``."""

        def job(i: int) -> Callable[[], Awaitable[None]]:
            ns, name = names[i % len(names)]
            body = {"metadata": {"annotations": {"bench/update": f"{stamp}-{i}"}}}
            return lambda: self.send("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", body,
                                     "application/merge-patch+json")

        await run_pool((job(i) for i in range(count)), self.connections)


async def put_into_etcd(etcd_url: str, objects: list[tuple[str, bytes]], batch: int = 64,
                        concurrency: int = 8) -> None:
    """Put ``(key, value)`` pairs into etcd through its JSON gateway (``/v3/kv/txn``),
    ``batch`` puts a transaction, ``concurrency`` transactions at once."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    chunks = [objects[i:i + batch] for i in range(0, len(objects), batch)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def put(chunk: list[tuple[str, bytes]]) -> None:
            ops = [{"requestPut": {"key": b64(key.encode()), "value": b64(value)}}
                   for key, value in chunk]
            async with http.post(f"{etcd_url}/v3/kv/txn",
                                 data=orjson.dumps({"success": ops})) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"etcd txn: {resp.status} {text[:300]!r}")

        def job(chunk: list[tuple[str, bytes]]) -> Callable[[], Awaitable[None]]:
            return lambda: put(chunk)

        await run_pool((job(c) for c in chunks), concurrency)


def pod_entries(pods: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """etcd keys and JSON values of ``pods`` as kube-apiserver lays them out (no
    resourceVersion: the server reads it from the key's revision)."""
    entries = []
    for pod in pods:
        meta = pod["metadata"]
        body = {**pod, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        entries.append((f"/registry/pods/{meta['namespace']}/{meta['name']}",
                        orjson.dumps(body)))
    return entries


def start_envtest(work_dir: str | None = None) -> Any:
    """A started EnvTest (binaries from ``KUBEBUILDER_ASSETS`` or the envtest cache)."""
    from kubemirror.envtest import EnvTest

    # etcd's default 2 GiB backend quota: 100k pods are ~0.6 GB and every round of
    # watch updates adds revisions until kube-apiserver compacts them (every 5 min), so
    # a full --real run could cross it. etcd reads ETCD_* variables as its flags.
    os.environ.setdefault("ETCD_QUOTA_BACKEND_BYTES", str(8 << 30))
    started = time.perf_counter()
    env = EnvTest(work_dir=work_dir, build=False)
    env.start()
    log(f"kube-apiserver up at {env.url} in {time.perf_counter() - started:.1f} s")
    return env


def seed_pods(env: Any, size: int, seed: int, through_api: bool = False
              ) -> list[tuple[str, bytes]]:
    """Seed ``size`` podgen pods into ``env`` (see the module docstring); returns their
    etcd entries (for ``update_pods``) once kube-apiserver lists them all."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import podgen

    pods = podgen.make_pods(size, seed)
    entries = pod_entries(pods)
    started = time.perf_counter()

    async def go() -> None:
        async with Seeder(env.url, env.ssl_context(client_cert=True)) as seeder:
            await seeder.create_namespaces({p["metadata"]["namespace"] for p in pods})
            if through_api:
                await seeder.create_pods(pods)
        if not through_api:
            await put_into_etcd(env.etcd.client_url, entries)
        await wait_listed(env, size)

    asyncio.run(go())
    took = time.perf_counter() - started
    how = (f"through the API (create + status) over {CONNECTIONS} connections" if through_api
           else "straight into etcd (JSON, 64 puts a transaction, 8 at once)")
    log(f"seeded {size:,} pods {how} in {took:.1f} s: {size / took:,.0f} pods/s")
    return entries


async def wait_listed(env: Any, size: int, within: float = 300) -> None:
    """Wait until kube-apiserver's watch cache serves ``size`` pods (a limit=1 LIST
    reports the remaining count)."""
    deadline = time.monotonic() + within
    connector = aiohttp.TCPConnector(ssl=env.ssl_context(client_cert=True))
    async with aiohttp.ClientSession(connector=connector) as http:
        while True:
            async with http.get(env.url + "/api/v1/pods?limit=1") as resp:
                doc = orjson.loads(await resp.read())
            listed = len(doc.get("items", [])) + int(
                doc.get("metadata", {}).get("remainingItemCount") or 0)
            if listed >= size:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver lists {listed} of {size} seeded pods")
            await asyncio.sleep(0.2)


def update_pods(env: Any, entries: list[tuple[str, bytes]], count: int, stamp: str,
                through_api: bool = False) -> float:
    """Write ``count`` pod updates (annotation ``bench/update``, round robin over the
    seeded ``entries``) into etcd, or through the API; returns the seconds it took."""
    started = time.perf_counter()
    marker = b'"annotations":{'

    async def go() -> None:
        if through_api:
            names = []
            for key, _ in entries:
                _, _, _, ns, name = key.split("/")
                names.append((ns, name))
            async with Seeder(env.url, env.ssl_context(client_cert=True)) as seeder:
                await seeder.update_pods(names, count, stamp)
            return
        updates = []
        for i in range(count):
            key, value = entries[i % len(entries)]
            note = b'"bench/update":"' + f"{stamp}-{i}".encode() + b'",'
            updates.append((key, value.replace(marker, marker + note, 1)))
        await put_into_etcd(env.etcd.client_url, updates)

    asyncio.run(go())
    return time.perf_counter() - started
