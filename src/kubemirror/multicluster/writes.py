"""POST, PUT, PATCH and DELETE of the served API, and writes forwarded to members.

Part of the served API (multicluster layer). A body is decoded (``bodies``), checked
against the endpoint's type as kube-apiserver's decoder does (400), validated with
its rules and messages (422, ``validation``), then stored in the cluster the request
names (the path's, the object's ``CLUSTER_ANNOTATION``, or the default). Writes to
``.../status`` change only ``.status``; writes to an object of a type with a status
subresource keep the stored ``.status``. ``dryRun`` and delete preconditions are
honoured. With a ``write_forwarder``, writes go to the owning member instead.
Runs on the server's loop.
"""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from kubemirror.multicluster import bodies, crds, placement, request_info, status, validation
from kubemirror.multicluster import patch as patches
from kubemirror.multicluster.api_discovery import METHOD_NOT_ALLOWED, json_response
from kubemirror.multicluster.bodies import JSON
from kubemirror.multicluster.crds import CRD_RESOURCE
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from kubemirror.multicluster.storage_api import ResourceStorageApi
from kubemirror.types import MutableObj, Obj

if TYPE_CHECKING:
    from kubemirror.multicluster.server import KubeApiServer

__all__ = ["ForwardedWrite", "WriteForwarder", "Writes"]

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class Writes:
    """The write handlers of ``server`` (its storage, type rules and write forwarder)."""

    __slots__ = ("server",)

    def __init__(self, server: KubeApiServer) -> None:
        self.server = server

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
                for other in self.server.storage.resource_storages()
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
                bodies.unrecognized(kind)
                + f"json: cannot unmarshal {validation.go_json_type(body)} into Go value of type "
                + bodies.TYPE_META_STRUCT
            )
        obj: MutableObj = dict(body)
        for field in ("apiVersion", "kind"):
            value = obj.get(field)
            if value is not None and not isinstance(value, str):
                raise status.bad_request(
                    bodies.unrecognized(kind)
                    + f"json: cannot unmarshal {validation.go_json_type(value)} into Go struct "
                    f"field .{field} of type string"
                )
        self._check_type(rs, obj.get("apiVersion") or "", obj.get("kind") or "")
        problem = validation.decode_error_message(kind, obj)
        if problem is None and rs.gvr == CRD_RESOURCE.gvr:
            problem = crds.crd_decode_problem(obj)
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
            meta,
            rule=self.server.type_rules.name_rule(rs.gvr),
            namespaced=rs.info.namespaced,
            check_name=create,
        )
        if rs.gvr == CRD_RESOURCE.gvr:
            problems += crds.crd_errors(obj)
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
        if isinstance(named, str) and self.server.storage.has_cluster(named):
            return named
        return self.server.default_cluster

    async def create(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        dry_run = self._dry_run(request)
        obj = self._check_object(rs, info, await bodies.read_body(request, rs.info.kind))
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
            crds.crd_resource_infos(obj)  # validates before anything is stored
        if dry_run:
            key = placement.stored_key(rs, str(meta.get("namespace") or ""), meta["name"])
            if await rs.aget_entry(cluster, key) is not None:
                raise status.already_exists(rs.info.gvr.resource, meta["name"], rs.info.gvr.group)
            return json_response(obj, 201)
        stored = await rs.acreate(cluster, obj)
        self._after_write(rs, stored)
        return json_response(stored, 201)

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
        if self.server.type_rules.has_status(rs.gvr):
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
            return json_response(obj)
        stored = await rs.aupdate(
            cluster, obj, expected_resource_version=expected, original_rv=""
        )
        self._after_write(rs, stored)
        return json_response(stored)

    async def replace(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        dry_run = self._dry_run(request)
        obj = self._check_object(rs, info, await bodies.read_body(request, rs.info.kind))
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != info.name:
            raise status.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({info.name})"
            )
        meta["name"] = info.name
        cluster = await self.server.locate_cluster(rs, info, self._write_cluster(info, obj))
        current = await rs.aget(cluster, info.namespace, info.name)
        if current is None:
            raise status.not_found(rs.info.gvr.resource, info.name, rs.info.gvr.group)
        expected = meta.get("resourceVersion") or None
        return await self._store_update(rs, info, cluster, obj, current, expected, dry_run)

    async def patch(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        content_type = request_info.media_type(request.headers.get("Content-Type"))
        dry_run = self._dry_run(request)
        body = await bodies.read_body(request, rs.info.kind)
        cluster = await self.server.locate_cluster(rs, info)
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
                    bodies.unrecognized(rs.info.kind)
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

    async def delete(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        dry_run = self._dry_run(request)
        options = await bodies.read_delete_options(request)
        preconditions = options.get("preconditions") or {}
        if options.get("dryRun"):
            dry_run = request_info.parse_dry_run(options["dryRun"], "DELETE") or dry_run
        cluster = await self.server.locate_cluster(rs, info)
        key = placement.stored_key(rs, info.namespace, info.name)
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
            return json_response(entry.object)
        # deleting a CRD keeps its types served (their objects stay readable)
        final = await rs.adelete_by_key(cluster, key, expected_resource_version=rv or None)
        return json_response(final)

    # -- write forwarding (optional: ``write_forwarder``) -----------------------------------

    async def forward(
        self, request: web.Request, rs: ResourceStorageApi, info: request_info.RequestInfo
    ) -> web.Response:
        """Hand a write to ``write_forwarder`` (see ``ForwardedWrite`` for the cluster)."""
        method = request.method
        named_write = method in ("PUT", "PATCH", "DELETE")
        if not (named_write or method == "POST") or named_write != bool(info.name):
            raise status.method_not_allowed(METHOD_NOT_ALLOWED)
        assert self.server.write_forwarder is not None
        raw = await request.read() if request.can_read_body else b""
        content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip()
        binary = "protobuf" in content_type or "cbor" in content_type  # forwarded as received
        if info.cluster is not None:
            cluster = info.cluster
        elif method in ("POST", "PUT") and not binary:
            body = await bodies.read_body(request)
            meta = body.get("metadata") if isinstance(body, Mapping) else None
            notes = meta.get("annotations") if isinstance(meta, Mapping) else None
            hint = notes.get(CLUSTER_ANNOTATION) if isinstance(notes, Mapping) else None
            if isinstance(hint, str) and self.server.storage.has_cluster(hint):
                cluster = hint
            elif method == "POST":
                cluster = self.server.default_cluster
            else:
                cluster = await self.server.locate_cluster(rs, info)
        elif method == "POST":
            cluster = self.server.default_cluster
        else:
            cluster = await self.server.locate_cluster(rs, info)
        code, answer = await self.server.write_forwarder(
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
        return web.Response(body=answer, status=code, content_type=JSON)

    def _after_write(self, rs: ResourceStorageApi, obj: Obj) -> None:
        """A stored CRD: serve the types it defines."""
        if rs.info.gvr == CRD_RESOURCE.gvr:
            for info in self.server.type_rules.crd_written(obj):
                self.server.register_resource(info)
