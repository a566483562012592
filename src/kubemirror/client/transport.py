"""Raw LIST/WATCH/GET/write calls for any group/version/resource over streaming aiohttp.

Part of the ``client/`` layer. Objects stay plain dicts decoded by orjson; no
model classes. The protocol pieces are sans-I/O pure functions tested without
sockets: ``listing.ListOptions.to_query`` builds query parameters, ``resource_path`` builds
URLs, ``LineSplitter`` cuts a byte stream into lines, ``parse_watch_line`` turns a
line into a ``WatchEvent`` and ``error_from_response`` maps an error body to the
``ApiError`` hierarchy. ``KubeClient`` wires them to aiohttp: it reads WATCH
streams in large chunks and splits lines itself, and pauses the cyclic GC while
decoding list pages (both measured in ``perf-baselines.md``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
import sys
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, cast, overload

import aiohttp
import orjson

from kubemirror import bulk, errors
from kubemirror.cache import raw_object
from kubemirror.cache.raw_object import PartialDecoder, RawObject
from kubemirror.client import config as config_mod
from kubemirror.listing import ListOptions, ListPage
from kubemirror.types import GroupVersionResource, WatchEvent

__all__ = [
    "KubeClient",
    "LineSplitter",
    "WatchStream",
    "decode_list",
    "error_from_response",
    "map_transport_errors",
    "parse_watch_line",
    "resource_path",
]

log = logging.getLogger(__name__)


_TRANSPORT_FAILURES = (TimeoutError, aiohttp.ClientError, OSError)
"""What a connection can fail with: aiohttp's errors, socket errors and timeouts."""


@contextlib.contextmanager
def map_transport_errors(what: str) -> Iterator[None]:
    """Raise ``TransportError("<what>: <cause>")``, chained, for a connection failure inside.

    The one place where aiohttp's and the socket layer's exceptions become kubemirror's
    (as httpx maps its transport's errors in one place); API errors pass through.
    """
    try:
        yield
    except _TRANSPORT_FAILURES as exc:
        raise errors.TransportError(f"{what}: {exc!r}") from exc

_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
_BLANK = frozenset(b" \t\r\x0b\x0c")
_USER_AGENT = "kubemirror/0.1"
_READ_CHUNK = 1 << 20
# CPython before 3.12.8 (and 3.13.0) can leave the socket of a TLS connection closed
# gracefully open for good (python/cpython gh-118950): aiohttp closes a connection that
# way when a request is cancelled, and the close handshake then outlives the event loop.
# aiohttp's remedy, aborting those transports when the session closes, is refused (with
# a DeprecationWarning) on the versions that no longer need it.
_TLS_CLOSE_CAN_LEAK = sys.version_info < (3, 12, 8) or (3, 13, 0) <= sys.version_info < (3, 13, 1)


def resource_path(
    gvr: GroupVersionResource, namespace: str | None = None, name: str | None = None
) -> str:
    """URL path of a collection (``name=None``) or an object.

    ``namespace=None`` or ``""`` addresses all namespaces (or a cluster-scoped
    resource).
    """
    base = f"/apis/{gvr.group}/{gvr.version}" if gvr.group else f"/api/{gvr.version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(gvr.resource)
    if name:
        parts.append(name)
    return "/".join(parts)


class LineSplitter:
    """Cuts a byte stream into newline-terminated lines; not thread-safe.

    ``feed(chunk)`` returns the complete lines seen so far (without the newline):
    lines wholly inside ``chunk`` as zero-copy ``memoryview`` slices of it (they
    keep the chunk alive; ``orjson`` and ``msgspec`` decode them as they are), the
    one completing the previous remainder as ``bytes``. ``tail`` is the incomplete
    remainder.
    """

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> list[bytes | memoryview]:
        end = chunk.find(b"\n")
        if end < 0:
            self.tail += chunk
            return []
        view = memoryview(chunk)
        lines: list[bytes | memoryview] = [self.tail + view[:end] if self.tail else view[:end]]
        start = end + 1
        find = chunk.find
        while (end := find(b"\n", start)) >= 0:
            lines.append(view[start:end])
            start = end + 1
        self.tail = chunk[start:]
        return lines


def parse_watch_line(line: bytes | memoryview) -> WatchEvent:
    """Decode one watch line into a ``WatchEvent``.

    Raises ``MalformedEventError`` (with the line) when it is not JSON, not an
    object, has an unknown ``type`` or no ``object`` mapping.
    """
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise errors.MalformedEventError(line, f"invalid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise errors.MalformedEventError(line, "not a JSON object")
    etype = event.get("type")
    if etype not in _EVENT_TYPES:
        raise errors.MalformedEventError(line, f"unknown event type {etype!r}")
    obj = event.get("object")
    if not isinstance(obj, dict):
        raise errors.MalformedEventError(line, "event has no object")
    if etype != "ERROR":
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("resourceVersion"), str):
            raise errors.MalformedEventError(line, "object has no metadata.resourceVersion")
    return cast(WatchEvent, event)


def error_from_response(status_code: int, reason: str, body: bytes) -> errors.ApiError:
    """Map an error response to an ``ApiError`` subclass (``GoneError`` for 410).

    Uses the body when it is a ``Status``; otherwise synthesizes one from the
    HTTP status line and the first 500 bytes of the body.
    """
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        status = dict(decoded)
        status.setdefault("code", status_code)
        if not status.get("code"):
            status["code"] = status_code
        return errors.api_error_from_status(status)
    text = body[:500].decode("utf-8", "replace")
    return errors.api_error_from_status(
        {"kind": "Status", "status": "Failure", "code": status_code, "reason": reason,
         "message": text or reason}
    )


def decode_list(body: bytes, gvr: GroupVersionResource) -> ListPage[dict[str, Any]]:
    """Decode a LIST response body of ``gvr`` into a ``ListPage`` of fresh dicts.

    The body is split into item spans first and each item decoded on its own:
    orjson parses a whole body through a buffer about 12x its size, which glibc
    maps and unmaps for every page of a big list, faulting it in each time.
    Items lacking ``kind``/``apiVersion`` (the server omits them in lists) get
    them. Raises ``TransportError`` naming the item if the body is not a list of
    objects.
    """
    doc = raw_object.split_list(body)
    kind = doc.item_kind
    api_version = doc.apiVersion or gvr.api_version
    loads = orjson.loads
    items: list[dict[str, Any]] = [loads(memoryview(raw)) for raw in doc.items or ()]
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise errors.TransportError(
                f"LIST {gvr}: item {i} is {type(item).__name__}, not an object")
        if kind and "kind" not in item:
            item["kind"] = kind
            item["apiVersion"] = api_version
    return doc.list_page(items)


class WatchStream:
    """An open WATCH response, iterated as ``WatchEvent`` dicts.

    Single consumer, not thread-safe. Iteration ends when the server closes the
    stream normally; it raises ``MalformedEventError`` for a line that is not a
    valid event (the caller decides whether to go on or re-watch),
    ``TransportError`` when the connection breaks (including a truncated last
    line). Always ``await aclose()`` (or use ``async with``).
    """

    __slots__ = ("_closed", "_parse", "_pending", "_response", "_splitter", "lines")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        parse: Callable[[bytes | memoryview], WatchEvent] = parse_watch_line,
    ) -> None:
        self._response = response
        self._parse = parse
        self._splitter = LineSplitter()
        self._pending: collections.deque[bytes | memoryview] = collections.deque()
        self._closed = False
        self.lines = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        pending = self._pending
        while True:
            while pending:
                line = pending.popleft()
                if line and (line[0] not in _BLANK or not bytes(line).isspace()):
                    self.lines += 1
                    return self._parse(line)
            if self._closed:
                raise StopAsyncIteration
            with map_transport_errors("watch stream broken"):
                chunk = await self._response.content.readany()
            if not chunk:
                self._closed = True
                tail = self._splitter.tail
                if tail.strip():
                    raise errors.MalformedEventError(tail, "stream ended inside a line")
                raise StopAsyncIteration
            pending.extend(self._splitter.feed(chunk))

    async def aclose(self) -> None:
        """Close the connection (idempotent).

        A watch still streaming is dropped by aborting its connection: the response
        cannot be finished anyway, and a TLS close handshake, which would proceed in
        the background, could outlive a client (and event loop) closed right after,
        leaking the socket. A stream the server ended has already released it.
        """
        self._closed = True
        self._pending.clear()
        connection = self._response.connection
        if connection is not None and connection.transport is not None:
            connection.transport.abort()
        self._response.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def new_connector(ssl_context: ssl.SSLContext | None, *, limit: int = 0) -> aiohttp.TCPConnector:
    """The connector of a session to a Kubernetes API server (``None``: default TLS checks).

    ``limit`` bounds concurrent connections (0: none, as a client of many watches
    needs). TLS connections a cancelled request left closing are aborted when the
    session closes, so no socket outlives its event loop.
    """
    return aiohttp.TCPConnector(
        ssl=ssl_context if ssl_context is not None else True,
        limit=limit,
        enable_cleanup_closed=_TLS_CLOSE_CAN_LEAK,
    )


class KubeClient:
    """An asyncio client for the Kubernetes REST API, returning plain dicts.

    Use one client per event loop: the aiohttp session is created lazily on the
    first call, in the running loop. Concurrent calls from tasks of that loop are
    fine. Close it with ``await client.close()`` or ``async with``. Returned
    objects are fresh dicts owned by the caller. Raises ``ApiError`` subclasses
    for error responses and ``TransportError`` (chained) for connection
    failures. ``request_timeout`` bounds non-watch calls; a watch is bounded by
    its ``timeout_seconds`` plus ``watch_grace``.
    """

    def __init__(
        self,
        config: config_mod.ClientConfig,
        *,
        request_timeout: float = 60.0,
        watch_grace: float = 30.0,
    ) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self.watch_grace = watch_grace
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=new_connector(self.config.ssl_context),
                read_bufsize=_READ_CHUNK,
                headers={"User-Agent": _USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _headers(self, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept}
        auth = await self.config.authorization()
        if auth:
            headers["Authorization"] = auth
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's per-request timeout
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        try:
            return await self._send_once(
                method, path, params=params, body=body, timeout=timeout, content_type=content_type
            )
        except errors.UnauthorizedError as exc:
            if exc.code != 401 or not await self.config.refresh_credentials():
                raise
        log.info("%s %s: 401 Unauthorized; retrying once with refreshed credentials",
                 method, path)
        return await self._send_once(
            method, path, params=params, body=body, timeout=timeout, content_type=content_type
        )

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's per-request timeout
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        headers = await self._headers()
        data = None
        if body is not None:
            data = bytes(body) if isinstance(body, bytes | bytearray) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        url = self.config.server + path
        with map_transport_errors(f"{method} {url}"):
            response = await self._get_session().request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=timeout,
                server_hostname=self.config.tls_server_name,
                proxy=self.config.proxy,
            )
        if response.status >= 400:
            try:
                payload = await response.read()
            except _TRANSPORT_FAILURES as exc:
                payload = b""
                log.debug("reading error body of %s %s failed: %r", method, path, exc)
            finally:
                response.release()
            raise error_from_response(response.status, response.reason or "", payload)
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send one request and return the decoded JSON body (GC paused while decoding).

        ``body`` is sent as JSON (``bytes`` as they are), labelled ``content_type``
        (a patch type for PATCH, protobuf for bytes encoded so).
        """
        payload = await self.request_bytes(
            method, path, params=params, body=body, content_type=content_type
        )
        with bulk.paused_gc():
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise errors.TransportError(f"{method} {path}: invalid JSON body: {exc}") from exc

    async def request_bytes(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> bytes:
        """Send one request and return the raw response body (error responses raise)."""
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        response = await self._send(
            method, path, params=params, body=body, timeout=timeout, content_type=content_type
        )
        try:
            with map_transport_errors(f"{method} {path}: reading body"):
                return await response.read()
        finally:
            response.release()

    @overload
    async def list(
        self,
        gvr: GroupVersionResource,
        namespace: str | None,
        opts: ListOptions,
        *,
        decoder: None = None,
    ) -> ListPage[dict[str, Any]]: ...

    @overload
    async def list(
        self,
        gvr: GroupVersionResource,
        namespace: str | None,
        opts: ListOptions,
        *,
        decoder: PartialDecoder,
    ) -> ListPage[RawObject]: ...

    @overload
    async def list(
        self,
        gvr: GroupVersionResource,
        namespace: str | None,
        opts: ListOptions,
        *,
        decoder: PartialDecoder | None,
    ) -> ListPage[dict[str, Any]] | ListPage[RawObject]: ...

    async def list(
        self,
        gvr: GroupVersionResource,
        namespace: str | None,
        opts: ListOptions,
        *,
        decoder: PartialDecoder | None = None,
    ) -> ListPage[dict[str, Any]] | ListPage[RawObject]:
        """One LIST page of ``gvr`` (all namespaces when ``namespace`` is empty).

        With a ``decoder`` the items are ``RawObject``s (partial view + the bytes
        received, for a ``CompactIndexer``) instead of fully decoded dicts.
        """
        body = await self.request_bytes(
            "GET", resource_path(gvr, namespace), params=opts.to_query()
        )
        with bulk.paused_gc():
            if decoder is not None:
                return decoder.page(body, gvr.api_version)
            return decode_list(body, gvr)

    async def watch(
        self,
        gvr: GroupVersionResource,
        namespace: str | None,
        opts: ListOptions,
        *,
        decoder: PartialDecoder | None = None,
    ) -> WatchStream:
        """Open a WATCH of ``gvr``; error responses raise here, before any event.

        With a ``decoder`` each event's object is a ``RawObject`` (see ``list``).
        """
        total = opts.timeout_seconds + self.watch_grace if opts.timeout_seconds else None
        timeout = aiohttp.ClientTimeout(total=total, connect=self.request_timeout)
        response = await self._send(
            "GET", resource_path(gvr, namespace), params=opts.to_query(watch=True), timeout=timeout
        )
        if decoder is not None:
            return WatchStream(response, cast(Callable[[bytes | memoryview], WatchEvent],
                                              decoder.event))
        return WatchStream(response)

    async def get(
        self, gvr: GroupVersionResource, name: str, namespace: str | None = None
    ) -> dict[str, Any]:
        """GET one object; ``NotFoundError`` when absent."""
        result: dict[str, Any] = await self.request("GET", resource_path(gvr, namespace, name))
        return result

    async def create(
        self, gvr: GroupVersionResource, obj: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """POST a new object and return it as stored."""
        result: dict[str, Any] = await self.request(
            "POST", resource_path(gvr, namespace), body=obj
        )
        return result

    async def replace(
        self, gvr: GroupVersionResource, obj: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """PUT an object (optimistic concurrency on its resourceVersion)."""
        name = obj["metadata"]["name"]
        result: dict[str, Any] = await self.request(
            "PUT", resource_path(gvr, namespace, name), body=obj
        )
        return result

    async def delete(
        self, gvr: GroupVersionResource, name: str, namespace: str | None = None
    ) -> Any:
        """DELETE an object; returns the server's answer (the object or a Status)."""
        return await self.request("DELETE", resource_path(gvr, namespace, name))
