"""A Kubernetes-compatible HTTP API over a storage (multicluster layer): ``MemoryStorage``
or ``PostgresStorage``, through their shared async interface (``storage_api.Storage``).

``KubeApiServer`` serves discovery (``/api``, ``/apis``, resource lists),
LIST/WATCH/GET/POST/PUT/PATCH/DELETE for every registered resource type, all
clusters aggregated at the root and each cluster under ``/clusters/<name>/...``,
so kubectl and the official clients work unchanged. Errors are ``Status``
objects with the API server's codes. This module holds the application: its
security checks, authentication, error mapping and the route table; the handlers
live beside it, one module per concern (as kube-apiserver's ``handlers``):
``api_discovery`` (discovery, OpenAPI, version), ``reads`` (GET, LIST, WATCH),
``writes`` (POST, PUT, PATCH, DELETE, forwarding), with ``bodies`` (request bodies),
``crds`` (CRDs and per-type rules) and ``placement`` (which storage and cluster a
request acts on). Runs on one asyncio loop; ``start``/``stop`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import yaml
from aiohttp import web

from kubemirror import errors, lifecycle
from kubemirror.multicluster import (
    api_discovery,
    crds,
    placement,
    reads,
    request_info,
    status,
    writes,
)
from kubemirror.multicluster.api_discovery import METHOD_NOT_ALLOWED, json_response
from kubemirror.multicluster.crds import CRD_RESOURCE
from kubemirror.multicluster.resources import BUILTIN_RESOURCES, ResourceInfo
from kubemirror.multicluster.storage_api import ResourceStorageApi, Storage
from kubemirror.multicluster.writes import ForwardedWrite, WriteForwarder

__all__ = [
    "ForwardedWrite",
    "Handler",
    "KubeApiServer",
    "Readiness",
    "WriteForwarder",
]

log = logging.getLogger(__name__)

_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler, as ``KubeApiServer(extra_routes=...)`` takes."""

Readiness = Callable[[], tuple[bool, str]]
"""``() -> (ready, text)``: what ``/readyz`` answers (200 or 503, with ``text``)."""


def _error_response(exc: errors.ApiError) -> web.Response:
    st = status.status_of(exc)
    return json_response(st, st.get("code", 500))


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
    public, every other path needs a token.

    Safe by default: a request whose ``Host`` is not a loopback name (``localhost``,
    ``127.x.y.z``, ``[::1]``) or the bind ``host`` (when not a wildcard) is refused
    with 403, like ``kubectl proxy`` (DNS rebinding); ``accept_hosts`` adds regular
    expressions (searched in the host name without port). A browser ``Origin``
    other than this server's own loopback origin is refused unless listed in
    ``allowed_origins`` (exact ``scheme://host[:port]``, or ``*``). Writes need a
    JSON/YAML (PATCH: a patch) ``Content-Type`` (415 otherwise), so no HTML form can
    forge one. Objects are validated with kube-apiserver's rules and messages (see
    ``validation``); unexpected errors answer 500 without detail and are logged. A
    LIST/WATCH at a resourceVersion newer than the storage waits up to
    ``resource_version_wait`` seconds for it (504 ``Too large resource version``
    after). Not thread-safe: use from the loop that started it. Lifecycle
    (``lifecycle.StartStopService``): ``start()`` binds, ``stop()`` stops serving;
    ``run(stop_event)`` and ``async with`` do both.
    """

    def __init__(
        self,
        storage: Storage,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        tokens: Iterable[str] | None = None,
        read_only: bool = False,
        default_cluster: str = "default",
        ca_data: bytes | None = None,
        builtin_resources: bool = True,
        watch_timeout: float = 1800.0,
        watch_write_timeout: float = 60.0,
        readiness: Readiness | None = None,
        extra_routes: Mapping[str, Handler] | None = None,
        write_forwarder: WriteForwarder | None = None,
        accept_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        resource_version_wait: float = 3.0,
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
        self.write_forwarder = write_forwarder
        self.accept_hosts = (*request_info.default_accept_hosts(host), *accept_hosts)
        self._host_patterns = tuple(re.compile(p, re.IGNORECASE) for p in self.accept_hosts)
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.resource_version_wait = resource_version_wait
        self.type_rules = crds.TypeRules()
        self.watch_tasks: set[asyncio.Task[Any]] = set()
        """The tasks serving open watches (cancelled by ``stop``)."""
        self._reads = reads.Reads(self)
        self._writes = writes.Writes(self)
        self._runner: web.AppRunner | None = None
        self._port = 0
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

    async def locate_cluster(
        self, rs: ResourceStorageApi, info: request_info.RequestInfo, hint: str | None = None
    ) -> str:
        """The cluster a named request acts on (``placement.locate_cluster``)."""
        return await placement.locate_cluster(self.storage, rs, info, self.default_cluster, hint)

    def register_resource(self, info: ResourceInfo) -> ResourceStorageApi:
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
        for task in list(self.watch_tasks):
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

    def _check_request(self, request: web.Request) -> None:
        """Host allow-list, browser Origin and write content type (see ``request_info``)."""
        if not request_info.host_allowed(request.headers.get("Host"), self._host_patterns):
            raise status.forbidden(
                "the Host header of this request is not accepted by this server (it accepts "
                "loopback names and the address it listens on; widen with accept_hosts)"
            )
        origin = request.headers.get("Origin")
        if not request_info.origin_allowed(
            origin, request.headers.get("Host"), request.scheme, self.allowed_origins
        ):
            raise status.forbidden(
                "cross-origin requests are not accepted by this server (allow an origin with "
                "allowed_origins)"
            )
        if request.method in _WRITE_METHODS:
            request_info.check_write_content_type(
                request.method, request.headers.get("Content-Type"), request.body_exists
            )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in _PUBLIC_PATHS:
                self._check_request(request)
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
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            log.debug("client went away during %s %s", request.method, request.path)
            raise
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return _error_response(status.internal_error())

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/readyz" and self.readiness is not None:
            ready, text = self.readiness()
            return web.Response(status=200 if ready else 503, text=text)
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(api_discovery.version())
        if path == "/openapi/v2" or path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return await api_discovery.openapi(request, self.storage, path)
        info = request_info.parse_request_path(path)
        if info.cluster is not None and not self.storage.has_cluster(info.cluster):
            raise placement.unknown_cluster(info.cluster, self.storage.clusters())
        if info.kind == "root":
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]})
        if info.kind == "discovery":
            return api_discovery.discovery(request, info, self.storage, f"{self.host}:{self.port}")
        if info.kind == "resource":
            return await self._resource(request, info)
        raise errors.NotFoundError(
            status.make_status(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        )

    # -- resources ------------------------------------------------------------------------

    async def _resource(
        self, request: web.Request, info: request_info.RequestInfo
    ) -> web.StreamResponse:
        rs = placement.find_resource(self.storage, info)
        if info.subresource and (
            info.subresource != "status"
            or (not self.type_rules.has_status(rs.gvr) and self.write_forwarder is None)
        ):
            raise errors.NotFoundError(
                status.make_status(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
            )
        method = request.method
        if info.watch_path and method != "GET":
            raise status.method_not_allowed(METHOD_NOT_ALLOWED)
        if method == "GET":
            if info.name:
                return await self._reads.get(request, rs, info)
            query = request_info.parse_list_query(
                request.query,
                namespace=info.namespace,
                clusters=(info.cluster,) if info.cluster else (),
                watch_path=info.watch_path,
            )
            if query.watch:
                return await self._reads.watch(request, rs, query)
            return await self._reads.list(request, rs, query)
        if self.read_only:
            raise status.method_not_allowed(f"{method} is not allowed: the server is read-only")
        if self.write_forwarder is not None:
            return await self._writes.forward(request, rs, info)
        if method == "POST" and not info.name:
            return await self._writes.create(request, rs, info)
        if method == "PUT" and info.name:
            return await self._writes.replace(request, rs, info)
        if method == "PATCH" and info.name:
            return await self._writes.patch(request, rs, info)
        if method == "DELETE" and info.name:
            return await self._writes.delete(request, rs, info)
        raise status.method_not_allowed(METHOD_NOT_ALLOWED)
