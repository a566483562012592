"""GET, LIST and WATCH of the served API.

Part of the served API (multicluster layer). A LIST body is assembled from each
entry's stored encoding and written in chunks of ``_LIST_CHUNK`` objects (yielding to
the loop between chunks); a WATCH streams batches of shared, pre-encoded event lines
and is cut when the client takes no write for ``watch_write_timeout`` seconds. Both
may answer a ``Table`` (``kubectl get``). A resourceVersion newer than the storage is
waited for, briefly. Runs on the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from kubemirror import errors
from kubemirror.multicluster import placement, request_info, status, table, watch_cache
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.api_discovery import json_response
from kubemirror.multicluster.bodies import JSON
from kubemirror.multicluster.storage_api import ResourceStorageApi

if TYPE_CHECKING:
    from kubemirror.multicluster.server import KubeApiServer

__all__ = ["Reads"]

log = logging.getLogger(__name__)

_LIST_CHUNK = 512
_WATCH_BATCH = 1024


class Reads:
    """The read handlers of ``server`` (its storage, default cluster and watch limits)."""

    __slots__ = ("server",)

    def __init__(self, server: KubeApiServer) -> None:
        self.server = server

    async def get(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        cluster = await self.server.locate_cluster(rs, info)
        entry = await rs.aget_entry(cluster, placement.stored_key(rs, info.namespace, info.name))
        if entry is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        if request_info.accepts_table(request.headers.get("Accept", "")):
            return json_response(
                table.to_table(
                    [entry.object],
                    rs.info.kind,
                    include_object=request.query.get("includeObject", "Metadata"),
                )
            )
        return web.Response(body=entry.encoded(), content_type=JSON)

    async def list(
        self, request: web.Request, rs: ResourceStorageApi, query: request_info.QueryOptions
    ) -> web.StreamResponse:
        await self._await_resource_version(query.options.resource_version)
        result = await rs.alist(query.options, scope=query.scope)
        if request_info.accepts_table(request.headers.get("Accept", "")):
            tbl = table.to_table(
                result.items,
                rs.info.kind,
                resource_version=result.resource_version,
                continue_token=result.continue_token,
                include_object=request.query.get("includeObject", "Metadata"),
            )
            return json_response(tbl)
        meta: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining_item_count is not None:
            meta["remainingItemCount"] = result.remaining_item_count
        head = b"".join(
            (
                b'{"kind":',
                orjson.dumps(rs.info.list_kind),
                b',"apiVersion":',
                orjson.dumps(rs.info.api_version),
                b',"metadata":',
                orjson.dumps(meta),
                b',"items":[',
            )
        )
        entries = result.entries
        if len(entries) <= _LIST_CHUNK:
            body = head + b",".join(e.encoded() for e in entries) + b"]}"
            return web.Response(body=body, content_type=JSON)
        response = web.StreamResponse(headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            await response.write(head)
            for start in range(0, len(entries), _LIST_CHUNK):
                chunk = b",".join(e.encoded() for e in entries[start : start + _LIST_CHUNK])
                await response.write((b"," + chunk) if start else chunk)
                await asyncio.sleep(0)  # let other requests run between chunks
            await response.write(b"]}")
            await response.write_eof()
        except ConnectionResetError:
            log.debug("client %s went away during the list of %s", request.remote, rs.gvr)
        return response

    async def _await_resource_version(self, rv: str) -> None:
        """Give the storage up to ``resource_version_wait`` seconds to reach a
        resourceVersion newer than its own (kube-apiserver waits 3 s), then let the
        storage answer (504 ``Too large resource version`` if it still has not)."""
        if rv in ("", "0") or self.server.resource_version_wait <= 0 or rv.startswith("{"):
            return
        try:
            index = rvs.parse_list_resource_version(rv, self.server.storage.prefix)
        except errors.ApiError:
            return  # the storage gives the error
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.server.resource_version_wait
        # any write of any type moves the storage index: poll it, briefly, bounded
        while self.server.storage.index < index and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def watch(
        self, request: web.Request, rs: ResourceStorageApi, query: request_info.QueryOptions
    ) -> web.StreamResponse:
        await self._await_resource_version(query.options.resource_version)
        watch = await rs.awatch(query.options, scope=query.scope)
        as_table = request_info.accepts_table(request.headers.get("Accept", ""))
        include_object = request.query.get("includeObject", "Metadata")
        timeout = min(query.timeout_seconds or self.server.watch_timeout, self.server.watch_timeout)
        task = asyncio.current_task()
        if task is not None:
            self.server.watch_tasks.add(task)
        response = web.StreamResponse(headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        first_table = True
        try:
            await response.prepare(request)
            async with asyncio.timeout(timeout):
                while True:
                    batch = await watch.next_batch(_WATCH_BATCH)
                    if not batch:
                        break
                    if as_table:
                        lines = [
                            self._table_line(rs, e, include_object, first_table and i == 0)
                            for i, e in enumerate(batch)
                        ]
                        first_table = False
                    else:
                        lines = [e.line() for e in batch]
                    try:
                        async with asyncio.timeout(self.server.watch_write_timeout):
                            await response.write(b"".join(lines))
                    except TimeoutError:
                        log.warning(
                            "closing watch of %s for %s: client stopped reading",
                            rs.gvr,
                            request.remote,
                        )
                        if request.transport is not None:
                            request.transport.abort()
                        return response
        except TimeoutError:
            pass
        except ConnectionResetError:
            log.debug("client %s went away during a watch of %s", request.remote, rs.gvr)
            return response
        except asyncio.CancelledError:
            watch.stop()
            raise
        finally:
            watch.stop()
            if task is not None:
                self.server.watch_tasks.discard(task)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    def _table_line(
        rs: ResourceStorageApi,
        event: watch_cache.StorageEvent,
        include_object: str,
        with_columns: bool,
    ) -> bytes:
        if event.type == "BOOKMARK":
            return event.line()
        tbl = table.to_table(
            [event.object],
            rs.info.kind,
            include_object=include_object,
            with_columns=with_columns,
        )
        return orjson.dumps({"type": event.type, "object": tbl}) + b"\n"
