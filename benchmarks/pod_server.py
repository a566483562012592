"""The pod source every informer benchmark runs against, in a process of its own.

A minimal aiohttp server serving pre-encoded ``podgen`` Pods (~6 KB each, with
managedFields, fixed seed): LIST with limit/continue at one resourceVersion, and
WATCH streaming MODIFIED events for those pods. ``GET /events?n=N`` sets how many
events the next watch sends; each watch holds them until ``GET /go`` (sent once a
contender's initial sync is complete), so event throughput is measured on its own.

It is not the project's ``KubeApiServer``: that server's per-request work (storage,
selectors, resourceVersion stamping) would make the server, not the client, the
bottleneck at 20k+ events/s on a 2-core machine. ``benchmarks/run_all.py`` starts it
(``python benchmarks/pod_server.py SIZE SEED`` prints the port) and runs the
contenders of ``contenders.py`` against it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "src"))

PAGE = 500


def rss_kb() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KB."""
    cur = peak = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve(size: int, seed: int) -> None:
    import orjson
    from aiohttp import web

    import podgen

    templates: list[tuple[bytes, bytes]] = []
    for pod in podgen.make_pods(size, seed):
        pod["metadata"]["resourceVersion"] = "@RV@"
        head, tail = orjson.dumps(pod).split(b"@RV@")
        templates.append((head, tail))
    gate = asyncio.Event()
    settings = {"events": 0}

    async def pods(request: web.Request) -> web.StreamResponse:
        q = request.query
        if (q.get("watch") or "").lower() in ("true", "1"):
            return await watch(request, int(q.get("resourceVersion") or size))
        offset = int(q.get("continue") or 0)
        if offset == 0:
            gate.clear()
        limit = int(q.get("limit") or 0) or size
        end = min(size, offset + limit)
        cont = str(end) if end < size else ""
        items = b",".join(h + str(i + 1).encode() + t
                          for i, (h, t) in enumerate(templates[offset:end], offset))
        meta = orjson.dumps({"resourceVersion": str(size), "continue": cont})
        body = (b'{"kind":"PodList","apiVersion":"v1","metadata":' + meta + b',"items":['
                + items + b"]}")
        return web.Response(body=body, content_type="application/json")

    async def watch(request: web.Request, from_rv: int) -> web.StreamResponse:
        total = settings["events"]
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await gate.wait()
        i = max(0, from_rv - size)
        while i < total:
            batch = []
            for j in range(i, min(total, i + 200)):
                h, t = templates[j % size]
                batch.append(b'{"type":"MODIFIED","object":' + h + str(size + j + 1).encode()
                             + t + b"}\n")
            await resp.write(b"".join(batch))
            i += len(batch)
        if i >= total:  # nothing more to send: hold the watch open like a quiet server
            await asyncio.sleep(float(request.query.get("timeoutSeconds") or 60))
        return resp

    async def go(request: web.Request) -> web.Response:
        gate.set()
        return web.Response(text="ok")

    async def set_events(request: web.Request) -> web.Response:
        settings["events"] = int(request.query["n"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    app.router.add_get("/go", go)
    app.router.add_get("/events", set_events)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def http_get(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(url).read()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
