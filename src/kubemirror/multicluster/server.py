"""A Kubernetes-compatible HTTP API over a storage (multicluster layer): ``MemoryStorage``
or ``PostgresStorage``, through their shared async interface (``storage_api.Storage``).

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
import logging
import os
import random
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import yaml
from aiohttp import web

from kubemirror import errors, lifecycle
from kubemirror.multicluster import patch as patches
from kubemirror.multicluster import request_info, status, table, validation, watch_cache
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster.resources import BUILTIN_RESOURCES, ResourceInfo
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from kubemirror.multicluster.storage_api import ResourceStorageApi, Storage
from kubemirror.types import GroupVersionResource, MutableObj, Obj

__all__ = [
    "CRD_RESOURCE",
    "ForwardedWrite",
    "Handler",
    "KubeApiServer",
    "Readiness",
    "WriteForwarder",
    "crd_resource_infos",
]

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
_METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_BODY_NODES = 1_000_000  # values in one decoded body (YAML aliases cannot expand past it)
_MAX_BODY_DEPTH = 200

_STATUS_SUBRESOURCE: frozenset[GroupVersionResource] = frozenset(
    info.gvr
    for info in BUILTIN_RESOURCES
    if info.gvr.resource
    in {
        "pods",
        "services",
        "namespaces",
        "nodes",
        "replicationcontrollers",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "ingresses",
    }
)
"""Built-in types with a ``status`` subresource (and CRDs themselves)."""

_LABEL_NAMED = frozenset(
    info.gvr for info in BUILTIN_RESOURCES if info.gvr.resource in {"namespaces", "services"}
)
"""Built-in types whose names are DNS-1123 labels (the others: DNS-1123 subdomains)."""

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


# -- decoding bodies as kube-apiserver does (messages of its Go decoder) -------------------------

_BUILTIN_GVRS = frozenset(info.gvr for info in BUILTIN_RESOURCES)

_TYPE_META_STRUCT = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)


def _unrecognized(kind: str) -> str:
    """The head of the 400 for a body that is not an object of ``kind``."""
    head = f"the object provided is unrecognized (must be of type {kind}): " if kind else ""
    return head + "couldn't get version/kind; json parse error: "


def _json_problem(raw: bytes, pos: int) -> str:
    """A Go-style description of why ``raw`` is not JSON (``pos``: where it broke)."""
    text = raw.decode("utf-8", "replace")
    stripped = text.lstrip()
    if stripped and stripped[0] not in '{["-0123456789tfn':
        return f"invalid character {stripped[0]!r} looking for beginning of value"
    for literal in ("null", "true", "false"):
        if stripped[:1] == literal[0] and not stripped.startswith(literal):
            at = next((i for i, c in enumerate(stripped[: len(literal)]) if c != literal[i]), -1)
            if at < 0:
                return "unexpected end of JSON input"
            return (
                f"invalid character {stripped[at]!r} in literal {literal} "
                f"(expecting {literal[at]!r})"
            )
    if 0 <= pos < len(text):
        return f"invalid character {text[pos]!r} at offset {pos}"
    return "unexpected end of JSON input"


def _json_value(value: Any, unrecognized: str) -> Any:
    """A decoded YAML value as JSON values (timestamps become strings, non-string keys
    their text); 400 for what JSON cannot hold, or a body that aliases expand too far."""
    budget = [_MAX_BODY_NODES]

    def convert(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_BODY_DEPTH:
            raise status.bad_request(unrecognized + "the body is too large or too deeply nested")
        if node is None or isinstance(node, str | bool):
            return node
        if isinstance(node, int):
            if not -(2**63) <= node < 2**64:
                raise status.bad_request(unrecognized + "a number is out of range")
            return node
        if isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                raise status.bad_request(unrecognized + "a number is not finite")
            return node
        if isinstance(node, datetime.datetime | datetime.date):
            return node.isoformat().replace("+00:00", "Z")
        if isinstance(node, list):
            return [convert(item, depth + 1) for item in node]
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, item in node.items():
                if isinstance(key, bool):
                    key = "true" if key else "false"
                elif key is None:
                    key = "null"
                elif isinstance(key, int | float):
                    key = str(key)
                elif not isinstance(key, str):
                    raise status.bad_request(unrecognized + "a map key is not a string")
                out[key] = convert(item, depth + 1)
            return out
        raise status.bad_request(
            unrecognized + f"a YAML value of type {type(node).__name__} has no JSON form"
        )

    return convert(value, 0)


def _unmarshal(value: Any, struct_field: str, go_type: str) -> str:
    return (
        f"json: cannot unmarshal {validation.go_json_type(value)} into Go struct field "
        f"{struct_field} of type {go_type}"
    )


def _crd_decode_problem(crd: Obj) -> str | None:
    """What the typed decoder says about a CustomResourceDefinition's spec, or None."""
    spec = crd.get("spec")
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        return _unmarshal(spec, "CustomResourceDefinition.spec", "v1.CustomResourceDefinitionSpec")
    where = "CustomResourceDefinitionSpec.spec"
    for field, go_type in (("group", "string"), ("scope", "v1.ResourceScope")):
        value = spec.get(field)
        if value is not None and not isinstance(value, str):
            return _unmarshal(value, f"{where}.{field}", go_type)
    names = spec.get("names")
    if names is not None:
        if not isinstance(names, Mapping):
            return _unmarshal(names, f"{where}.names", "v1.CustomResourceDefinitionNames")
        for field in ("plural", "singular", "kind", "listKind"):
            value = names.get(field)
            if value is not None and not isinstance(value, str):
                return _unmarshal(
                    value, f"CustomResourceDefinitionNames.spec.names.{field}", "string"
                )
        for field in ("shortNames", "categories"):
            value = names.get(field)
            if value is None:
                continue
            if not isinstance(value, list):
                return _unmarshal(
                    value, f"CustomResourceDefinitionNames.spec.names.{field}", "[]string"
                )
            for item in value:
                if not isinstance(item, str):
                    return _unmarshal(
                        item, f"CustomResourceDefinitionNames.spec.names.{field}", "string"
                    )
    versions = spec.get("versions")
    if versions is not None:
        if not isinstance(versions, list):
            return _unmarshal(versions, f"{where}.versions", "[]v1.CustomResourceDefinitionVersion")
        for version in versions:
            if not isinstance(version, Mapping):
                return _unmarshal(
                    version, f"{where}.versions", "v1.CustomResourceDefinitionVersion"
                )
            vwhere = "CustomResourceDefinitionVersion.spec.versions"
            name = version.get("name")
            if name is not None and not isinstance(name, str):
                return _unmarshal(name, f"{vwhere}.name", "string")
            for field in ("served", "storage"):
                value = version.get(field)
                if value is not None and not isinstance(value, bool):
                    return _unmarshal(value, f"{vwhere}.{field}", "bool")
            sub = version.get("subresources")
            if sub is not None and not isinstance(sub, Mapping):
                return _unmarshal(sub, f"{vwhere}.subresources", "v1.CustomResourceSubresources")
    return None


def _crd_errors(crd: Obj) -> list[status.FieldError]:
    """The 422 causes of a CustomResourceDefinition kubemirror checks (names and group)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group") or "", names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name") or ""
    out: list[status.FieldError] = []
    if name and name != f"{plural}.{group}":
        out.append(
            status.FieldError(
                "Invalid", "metadata.name", 'must be spec.names.plural+"."+spec.group', name
            )
        )
    if not group:
        out.append(status.FieldError("Required", "spec.group"))
    if not plural:
        out.append(status.FieldError("Required", "spec.names.plural"))
    if not names.get("kind"):
        out.append(status.FieldError("Required", "spec.names.kind"))
    if group:
        out += [
            status.FieldError("Invalid", "spec.group", m, group)
            for m in validation.dns1123_subdomain_errors(group)
        ]
    if plural:
        out += [
            status.FieldError("Invalid", "spec.names.plural", m, plural)
            for m in validation.dns1123_label_errors(plural)
        ]
    for i, version in enumerate(spec.get("versions") or ()):
        vname = version.get("name") or ""
        field = f"spec.versions[{i}].name"
        if not vname:
            out.append(status.FieldError("Required", field))
        else:
            out += [
                status.FieldError("Invalid", field, m, vname)
                for m in validation.dns1123_label_errors(vname)
            ]
    return out


def _delete_options_problem(options: Mapping[str, Any]) -> str | None:
    """What the typed decoder says about DeleteOptions, or None."""
    pre = options.get("preconditions")
    if pre is not None:
        if not isinstance(pre, Mapping):
            return _unmarshal(pre, "DeleteOptions.preconditions", "v1.Preconditions")
        for field, go_type in (("uid", "types.UID"), ("resourceVersion", "string")):
            value = pre.get(field)
            if value is not None and not isinstance(value, str):
                return _unmarshal(value, f"Preconditions.preconditions.{field}", go_type)
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        return _unmarshal(grace, "DeleteOptions.gracePeriodSeconds", "int64")
    policy = options.get("propagationPolicy")
    if policy is not None and not isinstance(policy, str):
        return _unmarshal(policy, "DeleteOptions.propagationPolicy", "v1.DeletionPropagation")
    orphan = options.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        return _unmarshal(orphan, "DeleteOptions.orphanDependents", "bool")
    dry_run = options.get("dryRun")
    if dry_run is not None:
        if not isinstance(dry_run, list):
            return _unmarshal(dry_run, "DeleteOptions.dryRun", "[]string")
        for item in dry_run:
            if not isinstance(item, str):
                return _unmarshal(item, "DeleteOptions.dryRun", "string")
    return None


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
        self._status_subresource: set[GroupVersionResource] = {CRD_RESOURCE.gvr}
        self._custom_types: set[GroupVersionResource] = set()
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
            return _json_response(self._version())
        if path == "/openapi/v2" or path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return await self._openapi_v3(request, path)
        info = request_info.parse_request_path(path)
        if info.cluster is not None and not self.storage.has_cluster(info.cluster):
            raise _unknown_cluster(info.cluster, self.storage.clusters())
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

    async def _openapi_v3(self, request: web.Request, path: str) -> web.StreamResponse:
        """OpenAPI v3 (``/openapi/v3``, ``/openapi/v3/<group-version>``) and v2
        (``/openapi/v2``, JSON only), for ``kubectl explain`` and server-side field
        validation. Schemas come from ``kubernetes_asyncio``'s models and the stored
        CRDs' ``openAPIV3Schema`` (see ``openapi``); a document is built in a worker
        thread, since the first one imports the models. Raises ``NotFoundError`` for
        an unknown group-version, ``NotAcceptable`` (406) for v2 in protobuf only."""
        from kubemirror.multicluster import openapi

        infos = [rs.info for rs in self.storage.resource_storages()]
        if path == "/openapi/v3":
            return _json_response(openapi.discovery_document(infos))
        accept = request.headers.get("Accept", "")
        if path == "/openapi/v2" and accept and not any(
            t in accept for t in ("json", "*/*", "application/*")
        ):
            raise errors.ApiError(
                status.make_status(406, "NotAcceptable", "only application/json is supported")
            )
        crds = openapi.crd_schemas(
            (await self.storage.resource_storage(CRD_RESOURCE.gvr).alist()).items
        )
        loop = asyncio.get_running_loop()
        if path == "/openapi/v2":
            v2 = await loop.run_in_executor(None, openapi.v2_document, infos, crds)
            return _json_response(v2)
        group_version = path[len("/openapi/v3/") :].strip("/")
        doc = await loop.run_in_executor(None, openapi.v3_document, group_version, infos, crds)
        if doc is None:
            raise errors.NotFoundError(
                status.make_status(404, "NotFound", f"no OpenAPI document for {group_version}")
            )
        return _json_response(doc)

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
        if request.method in ("POST", "PUT", "PATCH"):
            raise status.method_not_allowed(_METHOD_NOT_ALLOWED)
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

    def _find(self, info: request_info.RequestInfo) -> ResourceStorageApi:
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
        if info.subresource and (
            info.subresource != "status"
            or (not self._has_status(rs) and self.write_forwarder is None)
        ):
            raise errors.NotFoundError(
                status.make_status(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
            )
        method = request.method
        if info.watch_path and method != "GET":
            raise status.method_not_allowed(_METHOD_NOT_ALLOWED)
        if method == "GET":
            if info.name:
                return await self._get(request, rs, info)
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
        if self.write_forwarder is not None:
            return await self._forward_write(request, rs, info)
        if method == "POST" and not info.name:
            return await self._create(request, rs, info)
        if method == "PUT" and info.name:
            return await self._replace(request, rs, info)
        if method == "PATCH" and info.name:
            return await self._patch(request, rs, info)
        if method == "DELETE" and info.name:
            return await self._delete(request, rs, info)
        raise status.method_not_allowed(_METHOD_NOT_ALLOWED)

    def _key(self, rs: ResourceStorageApi, namespace: str, name: str) -> str:
        return f"{namespace}/{name}" if rs.info.namespaced and namespace else name

    async def _locate(
        self, rs: ResourceStorageApi, info: request_info.RequestInfo, hint: str | None = None
    ) -> str:
        """The cluster a named request acts on: the path's, else the hint, default, or holder."""
        if info.cluster is not None:
            return info.cluster
        key = self._key(rs, info.namespace, info.name)
        if hint and self.storage.has_cluster(hint):
            return hint
        if await rs.aget_entry(self.default_cluster, key) is not None:
            return self.default_cluster
        for cluster in self.storage.clusters():
            if await rs.aget_entry(cluster, key) is not None:
                return cluster
        return self.default_cluster

    async def _get(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        cluster = await self._locate(rs, info)
        entry = await rs.aget_entry(cluster, self._key(rs, info.namespace, info.name))
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
        self, request: web.Request, rs: ResourceStorageApi, query: request_info.QueryOptions
    ) -> web.StreamResponse:
        await self._await_resource_version(query.options.resource_version)
        result = await rs.alist(query.options)
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
        if rv in ("", "0") or self.resource_version_wait <= 0 or rv.startswith("{"):
            return
        try:
            index = rvs.parse_list_resource_version(rv, self.storage.prefix)
        except errors.ApiError:
            return  # the storage gives the error
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resource_version_wait
        # any write of any type moves the storage index: poll it, briefly, bounded
        while self.storage.index < index and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def _watch(
        self, request: web.Request, rs: ResourceStorageApi, query: request_info.QueryOptions
    ) -> web.StreamResponse:
        await self._await_resource_version(query.options.resource_version)
        watch = await rs.awatch(query.options)
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
        except ConnectionResetError:
            log.debug("client %s went away during a watch of %s", request.remote, rs.gvr)
            return response
        except asyncio.CancelledError:
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

    # -- writes ---------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request, kind: str = "") -> Any:
        """The decoded body of a write: JSON, or YAML for ``application/yaml`` and apply
        patches (converted to JSON values). A malformed body is a 400 BadRequest worded
        as kube-apiserver's (``couldn't get version/kind; json parse error: ...``)."""
        media = request_info.media_type(request.headers.get("Content-Type")) or _JSON
        raw = await request.read()
        unrecognized = _unrecognized(kind)
        if media in ("application/yaml", "application/apply-patch+yaml"):
            try:
                decoded = yaml.safe_load(raw) if raw.strip() else None
            except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
                raise status.bad_request(
                    unrecognized + "error converting YAML to JSON: the body is not valid YAML"
                ) from None
            return _json_value(decoded, unrecognized)
        if not raw.strip():
            raise status.bad_request(unrecognized + "unexpected end of JSON input")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise status.bad_request(unrecognized + _json_problem(raw, exc.pos)) from None

    def _has_status(self, rs: ResourceStorageApi) -> bool:
        """Whether the type has a ``status`` subresource."""
        return rs.gvr in _STATUS_SUBRESOURCE or rs.gvr in self._status_subresource

    def _name_rule(self, rs: ResourceStorageApi) -> validation.NameRule:
        gvr = rs.gvr
        if gvr in _LABEL_NAMED:
            return "label"
        if gvr in _BUILTIN_GVRS or gvr == CRD_RESOURCE.gvr or gvr in self._custom_types:
            return "subdomain"
        return "path"  # registered at run time: only what keeps names safe in paths and keys

    def _check_type(self, rs: ResourceStorageApi, api_version: str, kind: str) -> None:
        """400 when the body's apiVersion/kind is not the endpoint's, worded as the server."""
        info = rs.info
        expected = info.api_version
        version = info.gvr.version
        if api_version and api_version != expected:
            group, _, data_version = api_version.rpartition("/")
            data_kind = kind or info.kind
            if group == info.gvr.group:
                raise status.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected "
                    f"API version ({expected})"
                )
            raise status.bad_request(
                f'{data_kind} in version "{data_version}" cannot be handled as a {info.kind}: '
                f'no kind "{data_kind}" is registered for version "{api_version}" in scheme '
                '"pkg/runtime/scheme.go:111"'
            )
        if kind and kind != info.kind:
            known = any(
                other.info.kind == kind and other.info.api_version == expected
                for other in self.storage.resource_storages()
            )
            if known:
                internal = info.gvr.group.split(".")[0] if info.gvr.group else "core"
                raise status.bad_request(
                    f'{kind} in version "{version}" cannot be handled as a {info.kind}: '
                    f"converting ({version}.{kind}) to ({internal}.{info.kind}): "
                    "unknown conversion"
                )
            raise status.bad_request(
                f'{kind} in version "{version}" cannot be handled as a {info.kind}: no kind '
                f'"{kind}" is registered for version "{expected}" in scheme '
                '"pkg/runtime/scheme.go:111"'
            )

    def _check_object(
        self, rs: ResourceStorageApi, info: request_info.RequestInfo, body: Any
    ) -> MutableObj:
        """The body as an object of ``rs``'s type, or the 400 the API server's decoder
        gives (wrong apiVersion/kind, a non-object, mistyped metadata fields)."""
        kind = rs.info.kind
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise status.bad_request(
                _unrecognized(kind)
                + f"json: cannot unmarshal {validation.go_json_type(body)} into Go value of type "
                + _TYPE_META_STRUCT
            )
        obj: MutableObj = dict(body)
        for field in ("apiVersion", "kind"):
            value = obj.get(field)
            if value is not None and not isinstance(value, str):
                raise status.bad_request(
                    _unrecognized(kind)
                    + f"json: cannot unmarshal {validation.go_json_type(value)} into Go struct "
                    f"field .{field} of type string"
                )
        self._check_type(rs, obj.get("apiVersion") or "", obj.get("kind") or "")
        problem = validation.decode_error_message(kind, obj)
        if problem is None and rs.gvr == CRD_RESOURCE.gvr:
            problem = _crd_decode_problem(obj)
        if problem is not None:
            raise status.bad_request(
                f'{kind} in version "{rs.info.gvr.version}" cannot be handled as a {kind}: '
                f"{problem}"
            )
        obj["kind"] = kind
        obj["apiVersion"] = rs.info.api_version
        meta: dict[str, Any] = dict(obj.get("metadata") or {})
        obj["metadata"] = meta
        if rs.info.namespaced:
            namespace = meta.get("namespace") or ""
            if info.namespace and namespace and namespace != info.namespace:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            namespace = namespace or info.namespace
            if namespace:
                meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _validate(self, rs: ResourceStorageApi, obj: Obj, *, create: bool) -> None:
        """422 Invalid with kube-apiserver's causes when ``obj``'s metadata (or a CRD's
        spec) breaks its rules; names are checked on create only (they never change)."""
        meta = obj["metadata"]
        problems = validation.object_meta_errors(
            meta, rule=self._name_rule(rs), namespaced=rs.info.namespaced, check_name=create
        )
        if rs.gvr == CRD_RESOURCE.gvr:
            problems += _crd_errors(obj)
        if problems:
            raise status.invalid_fields(
                rs.info.kind, str(meta.get("name") or ""), problems, rs.info.gvr.group
            )

    def _dry_run(self, request: web.Request) -> bool:
        return request_info.parse_dry_run(request.query.getall("dryRun", []), request.method)

    def _write_cluster(self, info: request_info.RequestInfo, obj: Obj) -> str:
        if info.cluster is not None:
            return info.cluster
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        named = annotations.get(CLUSTER_ANNOTATION)
        if isinstance(named, str) and self.storage.has_cluster(named):
            return named
        return self.default_cluster

    async def _create(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        dry_run = self._dry_run(request)
        obj = self._check_object(rs, info, await self._body(request, rs.info.kind))
        return await self._store_new(rs, info, obj, dry_run)

    async def _store_new(
        self, rs: ResourceStorageApi, info: request_info.RequestInfo, obj: MutableObj, dry_run: bool
    ) -> web.Response:
        meta = obj["metadata"]
        generate = meta.get("generateName")
        if not meta.get("name") and generate:
            prefix = validation.generated_name_prefix(generate)
            meta["name"] = prefix + "".join(random.choices(_NAME_CHARS, k=5))
        self._validate(rs, obj, create=True)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        cluster = self._write_cluster(info, obj)
        if rs.info.gvr == CRD_RESOURCE.gvr:
            crd_resource_infos(obj)  # validates before anything is stored
        if dry_run:
            key = self._key(rs, str(meta.get("namespace") or ""), meta["name"])
            if await rs.aget_entry(cluster, key) is not None:
                raise status.already_exists(rs.info.gvr.resource, meta["name"], rs.info.gvr.group)
            return _json_response(obj, 201)
        stored = await rs.acreate(cluster, obj)
        self._after_write(rs, stored)
        return _json_response(stored, 201)

    def _merge_update(
        self, rs: ResourceStorageApi, cluster: str, obj: MutableObj, current: Obj
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

    def _subresource_rules(
        self, rs: ResourceStorageApi, info: request_info.RequestInfo, obj: MutableObj, current: Obj
    ) -> MutableObj:
        """A write to ``.../status`` changes only ``.status``; a write to the object of a
        type with a status subresource keeps the stored ``.status`` (as kube-apiserver)."""
        if info.subresource == "status":
            out: MutableObj = {k: v for k, v in current.items() if k != "status"}
            out["metadata"] = dict(current.get("metadata") or {})
            if "status" in obj:
                out["status"] = obj["status"]
            return out
        if self._has_status(rs):
            out = {k: v for k, v in obj.items() if k != "status"}
            if "status" in current:
                out["status"] = current["status"]
            return out
        return obj

    async def _store_update(
        self,
        rs: ResourceStorageApi,
        info: request_info.RequestInfo,
        cluster: str,
        obj: MutableObj,
        current: Obj,
        expected: str | None,
        dry_run: bool,
    ) -> web.Response:
        obj = self._subresource_rules(rs, info, obj, current)
        obj["metadata"] = {**obj["metadata"]}
        obj["metadata"].pop("resourceVersion", None)
        self._validate(rs, obj, create=False)
        obj = self._merge_update(rs, cluster, obj, current)
        current_rv = (current.get("metadata") or {}).get("resourceVersion")
        if dry_run:
            if expected and expected != current_rv:
                raise status.conflict(
                    rs.info.gvr.resource,
                    info.name,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                    rs.info.gvr.group,
                )
            obj["metadata"]["resourceVersion"] = current_rv
            return _json_response(obj)
        stored = await rs.aupdate(cluster, obj, expected_resource_version=expected, original_rv="")
        self._after_write(rs, stored)
        return _json_response(stored)

    async def _replace(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        dry_run = self._dry_run(request)
        obj = self._check_object(rs, info, await self._body(request, rs.info.kind))
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != info.name:
            raise status.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({info.name})"
            )
        meta["name"] = info.name
        cluster = await self._locate(rs, info, self._write_cluster(info, obj))
        current = await rs.aget(cluster, info.namespace, info.name)
        if current is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        expected = meta.get("resourceVersion") or None
        return await self._store_update(rs, info, cluster, obj, current, expected, dry_run)

    async def _patch(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        content_type = request_info.media_type(request.headers.get("Content-Type"))
        dry_run = self._dry_run(request)
        body = await self._body(request, rs.info.kind)
        cluster = await self._locate(rs, info)
        current = await rs.aget(cluster, info.namespace, info.name)
        apply = content_type == "application/apply-patch+yaml"
        if current is None:
            if apply and not info.subresource:  # server-side apply creates
                obj = self._check_object(rs, info, body)
                name = obj["metadata"].get("name")
                if name and name != info.name:
                    raise status.bad_request(
                        f"the name of the object ({name}) does not match the name on the URL "
                        f"({info.name})"
                    )
                obj["metadata"]["name"] = info.name
                obj["metadata"].pop("generateName", None)
                return await self._store_new(rs, info, obj, dry_run)
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        if content_type == "application/json-patch+json":
            patched = patches.apply_json_patch(current, body)
        elif content_type in request_info.PATCH_CONTENT_TYPES:
            if not isinstance(body, Mapping):
                raise status.bad_request(
                    _unrecognized(rs.info.kind)
                    + f"json: cannot unmarshal {validation.go_json_type(body)} into Go value of "
                    "type map[string]interface {}"
                )
            patched = patches.apply_merge_patch(current, body)
        else:
            raise status.unsupported_media_type("415: Unsupported Media Type", {})
        obj = self._check_object(rs, info, patched)
        if obj["metadata"].get("name") != info.name:
            raise status.bad_request("a patch must not change metadata.name")
        current_rv = (current.get("metadata") or {}).get("resourceVersion")
        expected = obj["metadata"].get("resourceVersion")
        return await self._store_update(
            rs,
            info,
            cluster,
            obj,
            current,
            expected if expected != current_rv else current_rv,
            dry_run,
        )

    async def _delete(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        dry_run = self._dry_run(request)
        options = await self._delete_options(request)
        preconditions = options.get("preconditions") or {}
        if options.get("dryRun"):
            dry_run = request_info.parse_dry_run(options["dryRun"], "DELETE") or dry_run
        cluster = await self._locate(rs, info)
        key = self._key(rs, info.namespace, info.name)
        entry = await rs.aget_entry(cluster, key)
        if entry is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        meta = entry.object.get("metadata") or {}
        uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
        if uid and uid != meta.get("uid"):
            raise status.precondition_failed(
                rs.info.kind,
                info.name,
                f"the UID in the precondition ({uid}) does not match the UID in record "
                f"({meta.get('uid', '')}). The object might have been deleted and then recreated",
                rs.info.gvr.group,
            )
        if rv and rv != meta.get("resourceVersion"):
            raise status.precondition_failed(
                rs.info.kind,
                info.name,
                f"the ResourceVersion in the precondition ({rv}) does not match the "
                f"ResourceVersion in record ({meta.get('resourceVersion', '')}). The object "
                "might have been modified",
                rs.info.gvr.group,
            )
        if dry_run:
            return _json_response(entry.object)
        final = await rs.adelete_by_key(cluster, key, expected_resource_version=rv or None)
        self._after_delete(rs, final)
        return _json_response(final)

    async def _delete_options(self, request: web.Request) -> Mapping[str, Any]:
        """The request's DeleteOptions (``{}`` without a body); 400 for what the API
        server's decoder rejects."""
        if not request.body_exists:
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        options = await self._body(request)
        if not isinstance(options, Mapping):
            raise status.bad_request(
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{validation.go_json_type(options)} into Go value of type {_TYPE_META_STRUCT}"
            )
        problem = _delete_options_problem(options)
        if problem is not None:
            raise status.bad_request(problem)
        return options

    # -- write forwarding (optional: ``write_forwarder``) -----------------------------------

    async def _forward_write(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        """Hand a write to ``write_forwarder`` (see ``ForwardedWrite`` for the cluster)."""
        method = request.method
        named_write = method in ("PUT", "PATCH", "DELETE")
        if not (named_write or method == "POST") or named_write != bool(info.name):
            raise status.method_not_allowed(_METHOD_NOT_ALLOWED)
        assert self.write_forwarder is not None
        raw = await request.read() if request.can_read_body else b""
        content_type = request.headers.get("Content-Type", _JSON).split(";")[0].strip()
        binary = "protobuf" in content_type or "cbor" in content_type  # forwarded as received
        if info.cluster is not None:
            cluster = info.cluster
        elif method in ("POST", "PUT") and not binary:
            body = await self._body(request)
            meta = body.get("metadata") if isinstance(body, Mapping) else None
            notes = meta.get("annotations") if isinstance(meta, Mapping) else None
            hint = notes.get(CLUSTER_ANNOTATION) if isinstance(notes, Mapping) else None
            if isinstance(hint, str) and self.storage.has_cluster(hint):
                cluster = hint
            elif method == "POST":
                cluster = self.default_cluster
            else:
                cluster = await self._locate(rs, info)
        elif method == "POST":
            cluster = self.default_cluster
        else:
            cluster = await self._locate(rs, info)
        code, answer = await self.write_forwarder(
            ForwardedWrite(
                cluster=cluster,
                method=method,
                resource=rs.info,
                namespace=info.namespace,
                name=info.name,
                subresource=info.subresource,
                query={k: v for k, v in request.query.items()},
                body=raw,
                content_type=content_type,
            )
        )
        return web.Response(body=answer, status=code, content_type=_JSON)

    # -- CRDs -----------------------------------------------------------------------------

    def _after_write(self, rs: ResourceStorageApi, obj: Obj) -> None:
        if rs.info.gvr == CRD_RESOURCE.gvr:
            with_status = _crd_status_versions(obj)
            for info in crd_resource_infos(obj):
                self.register_resource(info)
                self._custom_types.add(info.gvr)
                if info.gvr.version in with_status:
                    self._status_subresource.add(info.gvr)
                else:
                    self._status_subresource.discard(info.gvr)

    def _after_delete(self, rs: ResourceStorageApi, obj: Obj) -> None:
        """Deleting a CRD keeps its storage (objects stay readable); nothing to do."""


def _crd_status_versions(crd: Obj) -> set[str]:
    """The versions of a CustomResourceDefinition that declare a ``status`` subresource."""
    spec = crd.get("spec") or {}
    out = set()
    for version in spec.get("versions") or ():
        if isinstance(version, Mapping) and isinstance(version.get("name"), str):
            sub = version.get("subresources") or {}
            if isinstance(sub, Mapping) and "status" in sub:
                out.add(version["name"])
    return out


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
    if (
        not isinstance(group, str)
        or not isinstance(plural, str)
        or not isinstance(names, Mapping)
        or _crd_decode_problem(crd) is not None
        or _crd_errors(crd)
    ):
        raise status.invalid(
            "CustomResourceDefinition",
            str((crd.get("metadata") or {}).get("name", "")),
            "spec",
            "Invalid value: not a valid CustomResourceDefinition",
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


# -- write forwarding hook (``KubeApiServer(write_forwarder=...)``) and unknown clusters ------


def _unknown_cluster(name: str, known: Iterable[str]) -> errors.NotFoundError:
    """The 404 for ``/clusters/<name>/`` of a cluster that is not served, naming those that are."""
    names = ", ".join(sorted(known)) or "none"
    return errors.NotFoundError(
        status.make_status(
            404,
            "NotFound",
            f'cluster "{name}" not found; known clusters: {names}',
            {"name": name, "group": "cluster.clusterpedia.io", "kind": "clusters"},
        )
    )


@dataclass(frozen=True, slots=True)
class ForwardedWrite:
    """A write request handed to the ``write_forwarder`` instead of the storage.

    ``cluster`` is the member that owns it: the path's, else (creates) the
    object's ``CLUSTER_ANNOTATION`` or the default cluster, else (named writes)
    the cluster holding the object. ``body`` and ``content_type`` are as received.
    """

    cluster: str
    method: str
    resource: ResourceInfo
    namespace: str
    name: str
    subresource: str
    query: Mapping[str, str]
    body: bytes
    content_type: str


class WriteForwarder(Protocol):
    """Performs a write elsewhere; returns ``(HTTP status, JSON body)`` to answer with.

    May raise ``ApiError`` (answered as its ``Status``).
    """

    async def __call__(self, write: ForwardedWrite) -> tuple[int, bytes]: ...
