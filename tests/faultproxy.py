"""A fault-injecting HTTP proxy to put between a client and kubemirror's API server.

Requests are forwarded to the real server over real HTTP on 127.0.0.1; the proxy
only adds the failures a healthy server never produces on demand: a watch cut
after N lines, a line truncated then the connection dropped, a corrupted line,
delays, a forced status (410 Gone for a LIST with a continue token or a WATCH),
a swallowed line (an event lost while the stream goes on: the drift a relist
repairs), and outages during which every request is refused. The upstream may be
HTTPS (``ssl``: the client context, e.g. the real kube-apiserver's admin one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson
from aiohttp import web

from kubemirror.client.transport import new_connector

Action = Literal["drop", "truncate", "corrupt", "delay"]

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class LineFault:
    """Apply ``action`` to the watch line number ``at`` (0-based) of one watch response."""

    at: int
    action: Action
    seconds: float = 0.0


@dataclass
class ForcedStatus:
    """Answer the next request matching ``when`` with ``code`` and a Kubernetes Status."""

    when: Callable[[web.Request], bool]
    code: int = 410
    reason: str = "Expired"
    message: str = "forced by faultproxy"


@dataclass
class ProxyStats:
    requests: list[str] = field(default_factory=list)
    watches: int = 0
    dropped: int = 0
    corrupted: int = 0
    forced: int = 0
    refused: int = 0
    swallowed: list[bytes] = field(default_factory=list)


def is_watch(request: web.Request) -> bool:
    return request.query.get("watch") in ("true", "1")


def is_continue_list(request: web.Request) -> bool:
    return not is_watch(request) and bool(request.query.get("continue"))


class FaultProxy:
    """Forwards to ``upstream``; faults are queued per watch (``watch_faults``) or per request.

    Use from the event loop that runs it. ``drop_watches()`` cuts every open
    watch now; ``outage()`` refuses requests until ``restore()``.
    """

    def __init__(self, upstream: str, ssl: ssl_module.SSLContext | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl = ssl
        self.watch_faults: collections.deque[list[LineFault]] = collections.deque()
        # One-shot: each predicate swallows the first watch line it matches.
        self.swallow: list[Callable[[bytes], bool]] = []
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.forced: list[ForcedStatus] = []
        self.stats = ProxyStats()
        self.down = False
        self._open_watches: dict[int, web.Request] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        connector = new_connector(self.ssl)
        self._session = aiohttp.ClientSession(auto_decompress=False, connector=connector)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def open_watches(self) -> int:
        return len(self._open_watches)

    # -- controls --------------------------------------------------------------------------

    def force(self, when: Callable[[web.Request], bool], code: int = 410,
              reason: str = "Expired") -> None:
        self.forced.append(ForcedStatus(when, code, reason))

    def drop_watches(self) -> None:
        for request in list(self._open_watches.values()):
            if request.transport is not None:
                request.transport.abort()
            self.stats.dropped += 1
        self._open_watches.clear()

    def pause_watches(self) -> None:
        """Hold every watch line back (streams stay open) until ``resume_watches()``."""
        self._flowing.clear()

    def resume_watches(self) -> None:
        self._flowing.set()

    def outage(self) -> None:
        self.down = True
        self.drop_watches()

    def restore(self) -> None:
        self.down = False

    # -- forwarding ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests.append(f"{request.method} {request.path_qs}")
        if self.down:
            self.stats.refused += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        for forced in self.forced:
            if forced.when(request):
                self.forced.remove(forced)
                self.stats.forced += 1
                status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "code": forced.code, "reason": forced.reason,
                          "message": forced.message}
                return web.Response(status=forced.code, body=orjson.dumps(status),
                                    content_type="application/json")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        upstream = await self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=body or None, timeout=aiohttp.ClientTimeout(total=None),
        )
        try:
            if is_watch(request) and upstream.status == 200:
                return await self._stream_watch(request, upstream)
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items()
                           if k.lower() not in _HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
        finally:
            upstream.close()

    async def _stream_watch(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        self.stats.watches += 1
        faults = {f.at: f for f in (self.watch_faults.popleft() if self.watch_faults else [])}
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self._open_watches[id(request)] = request
        n = 0
        try:
            async for line in upstream.content:
                fault = faults.get(n)
                n += 1
                await self._flowing.wait()
                if self._swallowed(line):
                    continue
                if fault is None:
                    await response.write(line)
                    continue
                if fault.action == "delay":
                    await asyncio.sleep(fault.seconds)
                    await response.write(line)
                elif fault.action == "corrupt":
                    self.stats.corrupted += 1
                    await response.write(line[: len(line) // 2] + b"\x00}garbage\n")
                elif fault.action == "truncate":
                    await response.write(line[: len(line) // 2])
                    self._abort(request)
                    return response
                else:  # drop before this line
                    self._abort(request)
                    return response
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientError):
            pass
        finally:
            self._open_watches.pop(id(request), None)
        return response

    def _swallowed(self, line: bytes) -> bool:
        for predicate in self.swallow:
            if predicate(line):
                self.swallow.remove(predicate)
                self.stats.swallowed.append(line)
                return True
        return False

    def _abort(self, request: web.Request) -> None:
        self.stats.dropped += 1
        if request.transport is not None:
            request.transport.abort()
