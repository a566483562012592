"""run_all's Python contenders: each one syncs a pod mirror, then counts watch events.

Every contender runs in its own fresh process (``run_all.py --contender NAME``) and
prints one JSON line: wall and CPU seconds of the initial sync and of the watch
phase, RSS before and after the sync (settled: freed memory handed back first),
peak RSS during the sync and overall, all in KB.

Two GC policies, the two kinds of rows in the table:

* ``defaults``: each library exactly as its users run it. kubemirror with its
  defaults (the collector paused during a LIST, which it always does; no
  ``gc.freeze()`` after the sync); the peers with the collector on.
* ``equal``: every contender given kubemirror's full policy: the collector paused
  for the whole LIST and ``gc.freeze()`` once synced (``freeze_gc_after_sync=True``
  for kubemirror). The rows are named ``<contender>-gc``.

A :class:`Target` says where the pods are: run_all's bench server (plain HTTP,
watch events released by a GET of ``/go``) or a real kube-apiserver (a kubeconfig;
the contender prints ``synced`` on stderr and starts timing the watch when a line
arrives on stdin, as run_all then writes the updates).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pod_server import PAGE, http_get, rss_kb

GC_POLICIES = ("defaults", "equal")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a contender's pods are: ``url`` of the bench server, or a real server's
    ``kubeconfig`` (then ``url`` is that server's address)."""

    url: str
    kubeconfig: str | None = None

    @property
    def real(self) -> bool:
        return self.kubeconfig is not None

    def release_events(self) -> None:
        """Blocks until the watch events may flow (see the module docstring)."""
        if self.real:
            print("synced", file=sys.stderr, flush=True)
            sys.stdin.readline()
        else:
            http_get(self.url + "/go")

    async def arelease_events(self) -> None:
        await asyncio.to_thread(self.release_events)


def settled_rss_kb() -> tuple[int, int]:
    """(RSS once freed memory is handed back to the OS, peak RSS so far) in KB.

    The peak is read first (trimming never lowers it); then a collection and glibc's
    ``malloc_trim`` return what the sync freed (list pages, decode buffers), so the
    first figure is the store's own footprint and ``peak / store`` measures the
    transient overhead of the sync instead of comparing RSS with itself.
    """
    _, peak = rss_kb()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    current, _ = rss_kb()
    return current, peak


@contextlib.contextmanager
def listing(policy: str) -> Iterator[None]:
    """The peers' LIST under ``policy``: untouched, or GC paused then frozen (``equal``)."""
    if policy == "equal":
        gc.disable()
    try:
        yield
    finally:
        if policy == "equal":
            gc.enable()
            gc.freeze()


class Clock:
    """Wall and CPU marks: sync start, synced, watch start, watch done."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def mark(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def result(self, base: int, after_sync: int, peak_sync: int) -> dict[str, Any]:
        t, c = self.wall, self.cpu
        _, peak = rss_kb()
        return {"sync": t[1] - t[0], "sync_cpu": c[1] - c[0], "events": t[3] - t[2],
                "events_cpu": c[3] - c[2], "base": base, "after_sync": after_sync,
                "peak_sync": peak_sync, "peak": peak}


async def _km_client(target: Target) -> Any:
    from kubemirror.client import ClientConfig, KubeClient, load_kube_config

    config = (await load_kube_config(target.kubeconfig) if target.real
              else ClientConfig(target.url))
    return KubeClient(config)


async def _until(predicate: Any, what: Any, within: float = 300.0) -> None:
    """Poll ``predicate``; after ``within`` seconds raise with ``what()`` (the counts)."""
    deadline = time.monotonic() + within
    while not predicate():  # polls a counter the informer's task bumps
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {within:.0f} s: {what()}")
        await asyncio.sleep(0.002)


async def run_informer(target: Target, size: int, events: int, store: str, policy: str
                       ) -> dict[str, Any]:
    """SharedInformer with a namespace index and a counting handler (real informers
    always have one): synced once the handler has seen every add."""
    from kubemirror import keys
    from kubemirror.informer import MIRROR_IGNORE_FIELDS, SharedInformer
    from kubemirror.listwatch import ListWatch
    from kubemirror.types import GroupVersionResource

    base, _ = rss_kb()
    clock = Clock()
    client = await _km_client(target)
    ignore = {"dict": (), "dict-s": MIRROR_IGNORE_FIELDS, "compact": None, "compact-full": ()}
    informer = SharedInformer(
        ListWatch(client, GroupVersionResource("", "v1", "pods")),
        indexers={"namespace": keys.meta_namespace_index_func},
        store="compact" if store.startswith("compact") else "dict",
        ignore_fields=ignore[store], page_size=PAGE,
        freeze_gc_after_sync=policy == "equal")
    counts = {"add": 0, "update": 0}

    def on_add(obj: Any) -> None:
        counts["add"] += 1

    def on_update(old: Any, new: Any) -> None:
        counts["update"] += 1

    informer.add_event_handler(on_add=on_add, on_update=on_update)
    clock.mark()
    informer.start()
    await informer.wait_for_sync()
    await _until(lambda: counts["add"] >= size, lambda: (counts, size))
    clock.mark()
    after_sync, peak_sync = settled_rss_kb()
    assert len(informer.get_indexer()) == size, len(informer.get_indexer())
    await target.arelease_events()
    clock.mark()
    await _until(lambda: counts["update"] >= events,
                 lambda: (counts, events, informer.reflector.stats))
    clock.mark()
    result = clock.result(base, after_sync, peak_sync)
    await informer.stop()
    await client.close()
    return result


async def run_watcher(target: Target, size: int, events: int, policy: str) -> dict[str, Any]:
    from kubemirror.types import GroupVersionResource
    from kubemirror.watcher import Watcher, WatcherConfig

    base, _ = rss_kb()
    clock = Clock()
    client = await _km_client(target)
    config = WatcherConfig(gvr=GroupVersionResource("", "v1", "pods"),
                           index_by=["metadata.namespace", "metadata.name"],
                           on_change=lambda store, stats: None, debounce_interval=0.5)
    watcher = Watcher(config, client, page_size=PAGE, freeze_gc_after_sync=policy == "equal")
    clock.mark()
    watcher.start()
    await watcher.wait_for_sync()
    clock.mark()
    after_sync, peak_sync = settled_rss_kb()
    assert watcher.store.size == size
    await target.arelease_events()
    clock.mark()
    stats = watcher.reflector.stats
    first = stats.events
    await _until(lambda: stats.events - first >= events, lambda: (stats, first, events))
    clock.mark()
    result = clock.result(base, after_sync, peak_sync)
    await watcher.stop()
    await client.close()
    return result


async def run_raw(target: Target, size: int, events: int) -> dict[str, Any]:
    """The practical limit: aiohttp, chunks split by hand, orjson, a plain dict; GC
    paused for the list and frozen after it (kubemirror's policy)."""
    import aiohttp
    import orjson

    from kubemirror.client import load_kube_config

    ssl: Any = None
    headers: dict[str, str] = {}
    if target.real:
        config = await load_kube_config(target.kubeconfig)
        ssl = config.ssl_context
        auth = await config.authorization()
        if auth:
            headers["Authorization"] = auth
    base, _ = rss_kb()
    clock = Clock()
    store: dict[str, Any] = {}
    clock.mark()
    async with aiohttp.ClientSession(read_bufsize=1 << 20, headers=headers) as session:
        cont = ""
        with listing("equal"):
            while True:
                params = {"limit": str(PAGE)}
                if cont:
                    params["continue"] = cont
                async with session.get(target.url + "/api/v1/pods", params=params,
                                       ssl=ssl) as resp:
                    resp.raise_for_status()
                    body = await resp.read()
                doc = orjson.loads(body)
                for item in doc["items"]:
                    meta = item["metadata"]
                    store[f"{meta['namespace']}/{meta['name']}"] = item
                cont = doc["metadata"].get("continue") or ""
                if not cont:
                    break
            rv = doc["metadata"]["resourceVersion"]
            del doc, body
        clock.mark()
        after_sync, peak_sync = settled_rss_kb()
        assert len(store) == size
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "600"}
        async with session.get(target.url + "/api/v1/pods", params=params, ssl=ssl) as resp:
            await target.arelease_events()
            clock.mark()
            n = 0
            tail = b""
            while n < events:
                chunk = await resp.content.readany()
                if not chunk:
                    break
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    event = orjson.loads(line)
                    if event["type"] != "MODIFIED":
                        continue
                    obj = event["object"]
                    meta = obj["metadata"]
                    store[f"{meta['namespace']}/{meta['name']}"] = obj
                    n += 1
            clock.mark()
    return clock.result(base, after_sync, peak_sync)


def run_lightkube(target: Target, size: int, events: int, policy: str) -> dict[str, Any]:
    """lightkube's sync Client: paginated list kept in a dict, then a bare watch decode
    (lightkube keeps no store)."""
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import Pod

    base, _ = rss_kb()
    clock = Clock()
    if target.real:
        assert target.kubeconfig is not None
        config = KubeConfig.from_file(target.kubeconfig)
    else:
        config = KubeConfig.from_dict({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": target.url}}],
            "users": [{"name": "bench", "user": {}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        })
    client = Client(config, field_manager="bench")
    store: dict[str, Any] = {}
    clock.mark()
    with listing(policy):
        pods = client.list(Pod, namespace="*", chunk_size=PAGE)
        for pod in pods:
            store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
        rv = pods.resourceVersion
    clock.mark()
    after_sync, peak_sync = settled_rss_kb()
    assert len(store) == size
    target.release_events()
    clock.mark()
    watch = client.watch(Pod, namespace="*", resource_version=rv)
    for n, _event in enumerate(watch, 1):
        if n >= events:
            break
    clock.mark()
    return clock.result(base, after_sync, peak_sync)


def _official_api(target: Target) -> Any:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    cfg = k8s.Configuration()
    if target.real:
        k8s_config.load_kube_config(config_file=target.kubeconfig, client_configuration=cfg)
    else:
        cfg.host = target.url
    return k8s.CoreV1Api(k8s.ApiClient(cfg))


def run_official(target: Target, size: int, events: int, raw: bool, policy: str
                 ) -> dict[str, Any]:
    """The official client: models, or ``_preload_content=False`` + orjson for the list
    and ``deserialize=False`` for the watch (``raw``)."""
    import orjson
    from kubernetes import watch

    base, _ = rss_kb()
    clock = Clock()
    api = _official_api(target)
    store: dict[str, Any] = {}
    clock.mark()
    cont = None
    with listing(policy):
        while True:
            if raw:
                resp = api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont,
                                                       _preload_content=False)
                doc = orjson.loads(resp.data)
                for pod in doc["items"]:
                    meta = pod["metadata"]
                    store[f"{meta['namespace']}/{meta['name']}"] = pod
                cont = doc["metadata"].get("continue")
                rv = doc["metadata"]["resourceVersion"]
            else:
                page = api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont)
                for pod in page.items:
                    store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
                cont = page.metadata._continue
                rv = page.metadata.resource_version
            if not cont or len(store) >= size:
                break
    clock.mark()
    after_sync, peak_sync = settled_rss_kb()
    assert len(store) == size
    target.release_events()
    clock.mark()
    w = watch.Watch()
    kwargs: dict[str, Any] = {"deserialize": False} if raw else {}
    stream = w.stream(api.list_pod_for_all_namespaces, resource_version=rv,
                      timeout_seconds=600, **kwargs)
    for n, event in enumerate(stream, 1):
        pod = event["object"]
        if raw:
            meta = pod["metadata"]
            store[f"{meta['namespace']}/{meta['name']}"] = pod
        else:
            store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
        if n >= events:
            w.stop()
            break
    clock.mark()
    return clock.result(base, after_sync, peak_sync)


async def run_k8s_asyncio(target: Target, size: int, events: int, policy: str
                          ) -> dict[str, Any]:
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio import watch

    base, _ = rss_kb()
    clock = Clock()
    cfg = k8s.Configuration()
    if target.real:
        await k8s_config.load_kube_config(config_file=target.kubeconfig,
                                          client_configuration=cfg)
    else:
        cfg.host = target.url
    store: dict[str, Any] = {}
    async with k8s.ApiClient(cfg) as api_client:
        api = k8s.CoreV1Api(api_client)
        clock.mark()
        cont = None
        with listing(policy):
            while True:
                page = await api.list_pod_for_all_namespaces(limit=PAGE, _continue=cont)
                for pod in page.items:
                    store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
                cont = page.metadata._continue
                rv = page.metadata.resource_version
                if not cont or len(store) >= size:
                    break
        clock.mark()
        after_sync, peak_sync = settled_rss_kb()
        assert len(store) == size
        await target.arelease_events()
        clock.mark()
        n = 0
        w = watch.Watch()
        async with w.stream(api.list_pod_for_all_namespaces, resource_version=rv,
                            timeout_seconds=600) as stream:
            async for event in stream:
                pod = event["object"]
                store[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod
                n += 1
                if n >= events:
                    break
        clock.mark()
    return clock.result(base, after_sync, peak_sync)


LIBRARIES = {
    "km": ("kubemirror.informer", "kubemirror.watcher", "kubemirror.client"),
    "raw": ("aiohttp", "orjson", "kubemirror.client"),
    "lightkube": ("lightkube", "lightkube.resources.core_v1"),
    "official": ("kubernetes.client", "kubernetes.watch"),
    "k8s": ("kubernetes_asyncio.client", "kubernetes_asyncio.watch"),
}


def run(name: str, target: Target, size: int, events: int) -> dict[str, Any]:
    """Run the contender ``name`` (``-gc`` suffix: the equal GC policy) in this process."""
    policy = "equal" if name.endswith("-gc") else "defaults"
    base = name.removesuffix("-gc")
    informers = {"km-informer": "dict", "km-informer-s": "dict-s", "km-compact": "compact",
                 "km-compact-full": "compact-full"}
    if base in informers:
        return asyncio.run(run_informer(target, size, events, informers[base], policy))
    if base == "km-watcher":
        return asyncio.run(run_watcher(target, size, events, policy))
    if base == "raw":
        return asyncio.run(run_raw(target, size, events))
    if base == "lightkube":
        return run_lightkube(target, size, events, policy)
    if base in ("official", "official-raw"):
        return run_official(target, size, events, raw=base == "official-raw", policy=policy)
    if base == "k8s-asyncio":
        return asyncio.run(run_k8s_asyncio(target, size, events, policy))
    raise SystemExit(f"unknown contender {name!r}")
