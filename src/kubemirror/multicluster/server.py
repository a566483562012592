"""A Kubernetes-compatible HTTP API over a ``MemoryStorage`` (multicluster layer).

``KubeApiServer`` serves discovery (``/api``, ``/apis``, resource lists),
LIST/WATCH/GET/POST/PUT/PATCH/DELETE for every registered resource type, all
clusters aggregated at the root and each cluster under ``/clusters/<name>/...``,
so kubectl and the official clients work unchanged. Errors are ``Status``
objects with the API server's codes. WATCH streams with ``StreamResponse``; the
handler (the producer) is cancelled when the client disconnects, which stops
its storage watch. Event lines are encoded once per event and shared by every
watcher; LIST bodies are written in chunks so a 100k-object list does not hold
the event loop. Runs on one asyncio loop; ``start``/``stop`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
import yaml
from aiohttp import web

from kubemirror import errors, lifecycle
from kubemirror.multicluster import patch as patches
from kubemirror.multicluster import request_info, status, table, watch_cache
from kubemirror.multicluster.resources import BUILTIN_RESOURCES, ResourceInfo
from kubemirror.multicluster.storage import (
    CLUSTER_ANNOTATION,
    MemoryStorage,
    ResourceStorage,
)
from kubemirror.types import GroupVersionResource, MutableObj, Obj

__all__ = ["CRD_RESOURCE", "Handler", "KubeApiServer", "Readiness", "crd_resource_infos"]

log = logging.getLogger(__name__)

CRD_RESOURCE = ResourceInfo(
    GroupVersionResource("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    kind="CustomResourceDefinition",
    namespaced=False,
    short_names=("crd", "crds"),
)
"""CustomResourceDefinitions: creating one registers the resource type it defines."""

_JSON = "application/json"
_LIST_CHUNK = 512
_WATCH_BATCH = 1024
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler, as ``KubeApiServer(extra_routes=...)`` takes."""

Readiness = Callable[[], tuple[bool, str]]
"""``() -> (ready, text)``: what ``/readyz`` answers (200 or 503, with ``text``)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_response(body: Any, status_code: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status_code, content_type=_JSON)


def _error_response(exc: errors.ApiError) -> web.Response:
    st = status.status_of(exc)
    return _json_response(st, st.get("code", 500))


class KubeApiServer(lifecycle.StartStopService):
    """Serves ``storage`` over HTTP(S) on ``host``:``port`` (0 picks a free port).

    ``tokens``: accepted bearer tokens (``None`` disables authentication);
    ``read_only`` rejects writes with 405. Writes at the root go to
    ``default_cluster`` (prepared here) unless the object names its cluster in the
    ``CLUSTER_ANNOTATION``; named reads, patches and deletes at the root act on
    ``default_cluster`` when it holds the object, else on the first cluster (by
    name) that does; under ``/clusters/<name>/`` everything acts on that cluster.
    Every ``BUILTIN_RESOURCES`` type is registered unless ``builtin_resources=False``.
    A watch whose client takes no write for ``watch_write_timeout`` seconds is
    disconnected (it may resume from its last resourceVersion); ``watch_timeout``
    caps a watch without ``timeoutSeconds``.

    ``readiness``, if given, is called on each ``/readyz`` request (on the loop;
    keep it cheap): ``(True, text)`` answers 200, ``(False, text)`` 503, with
    ``text`` as the body (without it, ``/readyz`` always answers 200 ``ok``).
    ``extra_routes`` maps more paths (aiohttp route patterns, any method) to
    handlers served ahead of the API, behind the same bearer-token check and
    error handling; ``/healthz``, ``/readyz``, ``/livez`` and ``/version`` are
    public, every other path needs a token. Not thread-safe: use from the loop
    that started it. Lifecycle (``lifecycle.StartStopService``): ``start()`` binds,
    ``stop()`` stops serving; ``run(stop_event)`` and ``async with`` do both.
    """

    def __init__(
        self,
        storage: MemoryStorage,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        tokens: Iterable[str] | None = None,
        read_only: bool = False,
        default_cluster: str = "default",
        *,
        ca_data: bytes | None = None,
        builtin_resources: bool = True,
        watch_timeout: float = 1800.0,
        watch_write_timeout: float = 60.0,
        readiness: Readiness | None = None,
        extra_routes: Mapping[str, Handler] | None = None,
    ) -> None:
        self.storage = storage
        self.host = host
        self._requested_port = port
        self.ssl_context = ssl_context
        self.tokens = frozenset(tokens) if tokens is not None else None
        self.read_only = read_only
        self.default_cluster = default_cluster
        self.ca_data = ca_data
        self.watch_timeout = watch_timeout
        self.watch_write_timeout = watch_write_timeout
        self.readiness = readiness
        self.extra_routes = dict(extra_routes or {})
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        if builtin_resources:
            for info in BUILTIN_RESOURCES:
                storage.new_resource_storage(info)
        storage.new_resource_storage(CRD_RESOURCE)
        storage.prepare_cluster(default_cluster)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after ``start``)."""
        return self._port

    @property
    def url(self) -> str:
        """``http(s)://host:port``."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self._port}"

    def cluster_url(self, cluster: str) -> str:
        """The base URL serving only ``cluster``."""
        return f"{self.url}/clusters/{cluster}"

    def register_resource(self, info: ResourceInfo) -> ResourceStorage:
        """Serve a resource type (CRD-style) from now on; idempotent."""
        return self.storage.new_resource_storage(info)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024**2)
        for path, handler in self.extra_routes.items():
            app.router.add_route("*", path, handler)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self) -> None:
        """Bind and serve; returns once the socket listens."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self._app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, ssl_context=self.ssl_context)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port
        log.info("kubemirror API server listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving; open watches end."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._watch_tasks):
            task.cancel()
        await runner.cleanup()

    def write_kubeconfig(
        self, path: str | os.PathLike[str], token: str | None = None, cluster: str | None = None
    ) -> str:
        """Write a kubeconfig pointing at this server (or at one ``cluster``'s URL)."""
        server_url = self.cluster_url(cluster) if cluster else self.url
        cluster_entry: dict[str, Any] = {"server": server_url}
        if self.ssl_context is not None:
            if self.ca_data:
                cluster_entry["certificate-authority-data"] = base64.b64encode(
                    self.ca_data
                ).decode()
            else:
                cluster_entry["insecure-skip-tls-verify"] = True
        user: dict[str, Any] = {"token": token} if token else {}
        name = cluster or "kubemirror"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster_entry}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "preferences": {},
        }
        text = yaml.safe_dump(config, sort_keys=False)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return os.fspath(path)

    # -- middleware and dispatch -----------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if self.tokens is not None and request.path not in _PUBLIC_PATHS:
                header = request.headers.get("Authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or token.strip() not in self.tokens:
                    raise status.unauthorized()
            return await handler(request)
        except errors.ApiError as exc:
            return _error_response(exc)
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return _error_response(
                errors.ApiError(status.make_status(500, "InternalError", f"internal error: {exc}"))
            )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/readyz" and self.readiness is not None:
            ready, text = self.readiness()
            return web.Response(status=200 if ready else 503, text=text)
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json_response(self._version())
        if path.startswith("/openapi/v3"):
            return _json_response(self._openapi_v3(path[len("/openapi/v3") :].strip("/")))
        info = request_info.parse_request_path(path)
        if info.cluster is not None and not self.storage.has_cluster(info.cluster):
            raise status.not_found("clusters", info.cluster, "cluster.clusterpedia.io")
        if info.kind == "root":
            return _json_response({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]})
        if info.kind == "discovery":
            return self._discovery(request, info)
        if info.kind == "resource":
            return await self._resource(request, info)
        raise errors.NotFoundError(
            status.make_status(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        )

    # -- discovery ------------------------------------------------------------------------

    @staticmethod
    def _version() -> dict[str, str]:
        return {
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.0-kubemirror",
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "python",
            "compiler": "cpython",
            "platform": "linux/amd64",
        }

    def _openapi_v3(self, group_version: str) -> dict[str, Any]:
        """Minimal OpenAPI v3: no schemas, but PATCH operations that declare
        ``fieldValidation`` so kubectl validates on the server instead of downloading
        schemas. Raises ``NotFoundError`` for an unknown group-version."""
        storages = self.storage.resource_storages()
        if not group_version:
            gvs = {
                f"api/{rs.info.api_version}"
                if not rs.info.gvr.group
                else f"apis/{rs.info.api_version}"
                for rs in storages
            }
            return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}"} for gv in sorted(gvs)}}
        paths: dict[str, Any] = {}
        for rs in storages:
            info = rs.info
            prefix = f"/apis/{info.api_version}" if info.gvr.group else f"/api/{info.api_version}"
            if prefix.strip("/") != group_version:
                continue
            scope = "/namespaces/{namespace}" if info.namespaced else ""
            paths[f"{prefix}{scope}/{info.gvr.resource}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": {
                        "group": info.gvr.group,
                        "version": info.gvr.version,
                        "kind": info.kind,
                    },
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        if not paths:
            raise errors.NotFoundError(
                status.make_status(404, "NotFound", f"no OpenAPI document for {group_version}")
            )
        return {
            "openapi": "3.0.0",
            "info": {"title": "kubemirror", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": {}},
        }

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rs in self.storage.resource_storages():
            gvr = rs.info.gvr
            if gvr.group:
                versions = groups.setdefault(gvr.group, [])
                if gvr.version not in versions:
                    versions.append(gvr.version)
        return groups

    def _api_group(self, group: str, versions: list[str]) -> dict[str, Any]:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        resources = []
        for rs in self.storage.resource_storages():
            info = rs.info
            if info.gvr.group != group or info.gvr.version != version:
                continue
            entry: dict[str, Any] = {
                "name": info.gvr.resource,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": list(info.verbs),
            }
            if info.short_names:
                entry["shortNames"] = list(info.short_names)
            if info.categories:
                entry["categories"] = list(info.categories)
            resources.append(entry)
        if not resources:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _discovery(self, request: web.Request, info: request_info.RequestInfo) -> web.Response:
        if info.core:
            if not info.version:
                return _json_response(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                        ],
                    }
                )
            body = self._resource_list("", info.version)
        elif not info.group:
            groups = self._groups()
            return _json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._api_group(g, vs) for g, vs in sorted(groups.items())],
                }
            )
        elif not info.version:
            versions = self._groups().get(info.group)
            body = self._api_group(info.group, versions) if versions else None
        else:
            body = self._resource_list(info.group, info.version)
        if body is None:
            raise errors.NotFoundError(
                status.make_status(404, "NotFound", f"the server could not find {info.path}")
            )
        return _json_response(body)

    # -- resources ------------------------------------------------------------------------

    def _find(self, info: request_info.RequestInfo) -> ResourceStorage:
        gvr = GroupVersionResource(info.group, info.version, info.resource)
        try:
            rs = self.storage.resource_storage(gvr)
        except errors.NotFoundError:
            raise errors.NotFoundError(
                status.make_status(
                    404,
                    "NotFound",
                    f"the server could not find the requested resource ({info.path})",
                )
            ) from None
        if info.namespace and not rs.info.namespaced:
            raise errors.NotFoundError(
                status.make_status(
                    404, "NotFound", f"{rs.info.gvr.resource} is not namespaced ({info.path})"
                )
            )
        return rs

    async def _resource(
        self, request: web.Request, info: request_info.RequestInfo
    ) -> web.StreamResponse:
        rs = self._find(info)
        if info.subresource and info.subresource != "status":
            raise status.not_found(f"{info.resource}/{info.subresource}", info.name)
        method = request.method
        if method == "GET":
            if info.name:
                return self._get(request, rs, info)
            query = request_info.parse_list_query(
                request.query,
                namespace=info.namespace,
                clusters=(info.cluster,) if info.cluster else (),
                watch_path=info.watch_path,
            )
            if query.watch:
                return await self._watch(request, rs, query)
            return await self._list(request, rs, query)
        if self.read_only:
            raise status.method_not_allowed(f"{method} is not allowed: the server is read-only")
        if method == "POST" and not info.name:
            return await self._create(request, rs, info)
        if method == "PUT" and info.name:
            return await self._replace(request, rs, info)
        if method == "PATCH" and info.name:
            return await self._patch(request, rs, info)
        if method == "DELETE" and info.name:
            return await self._delete(request, rs, info)
        raise status.method_not_allowed(f"{method} is not supported on {info.path}")

    def _key(self, rs: ResourceStorage, namespace: str, name: str) -> str:
        return f"{namespace}/{name}" if rs.info.namespaced and namespace else name

    def _locate(
        self, rs: ResourceStorage, info: request_info.RequestInfo, hint: str | None = None
    ) -> str:
        """The cluster a named request acts on: the path's, else the hint, default, or holder."""
        if info.cluster is not None:
            return info.cluster
        key = self._key(rs, info.namespace, info.name)
        if hint and self.storage.has_cluster(hint):
            return hint
        if rs.get_entry(self.default_cluster, key) is not None:
            return self.default_cluster
        for cluster in self.storage.clusters():
            if rs.get_entry(cluster, key) is not None:
                return cluster
        return self.default_cluster

    def _get(
        self, request: web.Request, rs: ResourceStorage, info: request_info.RequestInfo
    ) -> web.Response:
        cluster = self._locate(rs, info)
        entry = rs.get_entry(cluster, self._key(rs, info.namespace, info.name))
        if entry is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        if request_info.accepts_table(request.headers.get("Accept", "")):
            return _json_response(
                table.to_table(
                    [entry.object],
                    rs.info.kind,
                    include_object=request.query.get("includeObject", "Metadata"),
                )
            )
        return web.Response(body=entry.encoded(), content_type=_JSON)

    async def _list(
        self, request: web.Request, rs: ResourceStorage, query: request_info.QueryOptions
    ) -> web.StreamResponse:
        result = rs.list(query.options)
        if request_info.accepts_table(request.headers.get("Accept", "")):
            tbl = table.to_table(
                result.items,
                rs.info.kind,
                resource_version=result.resource_version,
                continue_token=result.continue_token,
                include_object=request.query.get("includeObject", "Metadata"),
            )
            return _json_response(tbl)
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
            return web.Response(body=body, content_type=_JSON)
        response = web.StreamResponse(headers={"Content-Type": _JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(head)
        for start in range(0, len(entries), _LIST_CHUNK):
            chunk = b",".join(e.encoded() for e in entries[start : start + _LIST_CHUNK])
            await response.write((b"," + chunk) if start else chunk)
            await asyncio.sleep(0)  # let other requests run between chunks
        await response.write(b"]}")
        await response.write_eof()
        return response

    async def _watch(
        self, request: web.Request, rs: ResourceStorage, query: request_info.QueryOptions
    ) -> web.StreamResponse:
        watch = rs.watch(query.options)
        as_table = request_info.accepts_table(request.headers.get("Accept", ""))
        include_object = request.query.get("includeObject", "Metadata")
        timeout = min(query.timeout_seconds or self.watch_timeout, self.watch_timeout)
        task = asyncio.current_task()
        if task is not None:
            self._watch_tasks.add(task)
        response = web.StreamResponse(headers={"Content-Type": _JSON})
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
                        async with asyncio.timeout(self.watch_write_timeout):
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
        except (ConnectionResetError, asyncio.CancelledError):
            watch.stop()
            raise
        finally:
            watch.stop()
            if task is not None:
                self._watch_tasks.discard(task)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    def _table_line(
        rs: ResourceStorage,
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

    # -- writes ---------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> Any:
        content_type = request.headers.get("Content-Type", _JSON).split(";")[0].strip()
        if "protobuf" in content_type or "cbor" in content_type:
            raise errors.ApiError(
                status.make_status(
                    415,
                    "UnsupportedMediaType",
                    f"the body content type {content_type!r} is not supported: send JSON",
                )
            )
        raw = await request.read()
        if not raw:
            raise status.bad_request("the request body is empty")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise status.bad_request(f"the request body is not valid JSON: {exc}") from exc

    def _check_object(
        self, rs: ResourceStorage, info: request_info.RequestInfo, body: Any
    ) -> MutableObj:
        if not isinstance(body, Mapping):
            raise status.bad_request("the request body must be a JSON object")
        obj: MutableObj = dict(body)
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rs.info.kind:
            raise status.bad_request(
                f"the kind of the object ({kind}) does not match the resource ({rs.info.kind})"
            )
        if api_version and api_version != rs.info.api_version:
            raise status.bad_request(
                f"the apiVersion of the object ({api_version}) does not match {rs.info.api_version}"
            )
        obj["kind"] = rs.info.kind
        obj["apiVersion"] = rs.info.api_version
        meta_in = obj.get("metadata")
        if meta_in is not None and not isinstance(meta_in, Mapping):
            raise status.invalid(rs.info.kind, "", "metadata", "must be an object")
        meta: dict[str, Any] = dict(meta_in or {})
        obj["metadata"] = meta
        name = meta.get("name") or ""
        if rs.info.namespaced:
            namespace = meta.get("namespace") or ""
            if info.namespace and namespace and namespace != info.namespace:
                raise status.invalid(
                    rs.info.kind,
                    name,
                    "metadata.namespace",
                    f"the namespace of the object ({namespace}) does not match the namespace "
                    f"on the request ({info.namespace})",
                )
            namespace = namespace or info.namespace
            if not namespace:
                raise status.invalid(rs.info.kind, name, "metadata.namespace", "Required value")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _write_cluster(self, info: request_info.RequestInfo, obj: Obj) -> str:
        if info.cluster is not None:
            return info.cluster
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        named = annotations.get(CLUSTER_ANNOTATION)
        if isinstance(named, str) and self.storage.has_cluster(named):
            return named
        return self.default_cluster

    async def _create(
        self, request: web.Request, rs: ResourceStorage, info: request_info.RequestInfo
    ) -> web.Response:
        obj = self._check_object(rs, info, await self._body(request))
        meta = obj["metadata"]
        if not meta.get("name"):
            generate = meta.get("generateName")
            if not generate:
                raise status.invalid(
                    rs.info.kind, "", "metadata.name", "name or generateName is required"
                )
            meta["name"] = generate + "".join(random.choices(_NAME_CHARS, k=5))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        cluster = self._write_cluster(info, obj)
        if rs.info.gvr == CRD_RESOURCE.gvr:
            crd_resource_infos(obj)  # validates before anything is stored
        if request.query.get("dryRun"):
            return _json_response(obj, 201)
        stored = rs.create(cluster, obj)
        self._after_write(rs, stored)
        return _json_response(stored, 201)

    def _merge_update(
        self, rs: ResourceStorage, cluster: str, obj: MutableObj, current: Obj
    ) -> MutableObj:
        meta = obj["metadata"]
        current_meta = current.get("metadata") or {}
        for field in ("uid", "creationTimestamp"):
            if field in current_meta:
                meta[field] = current_meta[field]
        generation = int(current_meta.get("generation") or 1)
        if obj.get("spec") != current.get("spec"):
            generation += 1
        meta["generation"] = generation
        annotations = dict(meta.get("annotations") or {})
        annotations[CLUSTER_ANNOTATION] = cluster
        meta["annotations"] = annotations
        return obj

    async def _replace(
        self, request: web.Request, rs: ResourceStorage, info: request_info.RequestInfo
    ) -> web.Response:
        obj = self._check_object(rs, info, await self._body(request))
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != info.name:
            raise status.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({info.name})"
            )
        meta["name"] = info.name
        cluster = self._locate(rs, info, self._write_cluster(info, obj))
        current = rs.get(cluster, info.namespace, info.name)
        if current is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        expected = meta.pop("resourceVersion", None) or None
        obj = self._merge_update(rs, cluster, obj, current)
        if info.subresource == "status":
            obj = {**current, "status": obj.get("status")}
        stored = rs.update(cluster, obj, expected_resource_version=expected, original_rv="")
        self._after_write(rs, stored)
        return _json_response(stored)

    async def _patch(
        self, request: web.Request, rs: ResourceStorage, info: request_info.RequestInfo
    ) -> web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = await self._body(request)
        cluster = self._locate(rs, info)
        current = rs.get(cluster, info.namespace, info.name)
        if current is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        if content_type == "application/json-patch+json":
            patched = patches.apply_json_patch(current, body)
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            patched = patches.apply_merge_patch(current, body)
        else:
            raise errors.ApiError(
                status.make_status(
                    415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}"
                )
            )
        if not isinstance(patched, Mapping):
            raise status.bad_request("the patch does not produce an object")
        patched_meta = patched.get("metadata") or {}
        if patched_meta.get("name") != info.name:
            raise status.bad_request("a patch must not change metadata.name")
        current_rv = (current.get("metadata") or {}).get("resourceVersion")
        expected = patched_meta.get("resourceVersion")
        obj = self._check_object(rs, info, patched)
        obj["metadata"].pop("resourceVersion", None)
        obj = self._merge_update(rs, cluster, obj, current)
        stored = rs.update(
            cluster,
            obj,
            expected_resource_version=expected if expected != current_rv else current_rv,
            original_rv="",
        )
        self._after_write(rs, stored)
        return _json_response(stored)

    async def _delete(
        self, request: web.Request, rs: ResourceStorage, info: request_info.RequestInfo
    ) -> web.Response:
        expected: str | None = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    options = json.loads(raw)
                except ValueError as exc:
                    raise status.bad_request(f"invalid DeleteOptions: {exc}") from exc
                if isinstance(options, Mapping):
                    expected = (options.get("preconditions") or {}).get("resourceVersion")
        cluster = self._locate(rs, info)
        key = self._key(rs, info.namespace, info.name)
        if rs.get_entry(cluster, key) is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        final = rs.delete_by_key(cluster, key, expected_resource_version=expected)
        self._after_delete(rs, final)
        return _json_response(final)

    # -- CRDs -----------------------------------------------------------------------------

    def _after_write(self, rs: ResourceStorage, obj: Obj) -> None:
        if rs.info.gvr == CRD_RESOURCE.gvr:
            for info in crd_resource_infos(obj):
                self.register_resource(info)

    def _after_delete(self, rs: ResourceStorage, obj: Obj) -> None:
        """Deleting a CRD keeps its storage (objects stay readable); nothing to do."""


def crd_resource_infos(crd: Obj) -> list[ResourceInfo]:
    """The served resource types a CustomResourceDefinition object defines."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    if not group or not plural:
        raise status.invalid(
            "CustomResourceDefinition",
            str((crd.get("metadata") or {}).get("name", "")),
            "spec.group" if not group else "spec.names.plural",
            "Required value",
        )
    out = []
    for version in spec.get("versions") or [{"name": spec.get("version", "v1"), "served": True}]:
        if not version.get("served", True):
            continue
        out.append(
            ResourceInfo(
                GroupVersionResource(group, version["name"], plural),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                list_kind=names.get("listKind", ""),
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
            )
        )
    return out
