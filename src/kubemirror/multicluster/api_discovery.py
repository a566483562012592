"""Discovery and OpenAPI of the served API: what kubectl reads before anything else.

Part of the served API (multicluster layer): ``/version``, ``/api``, ``/apis``, the
group and resource lists of every registered type (legacy discovery), and OpenAPI
v2/v3 documents built by ``openapi`` (in a worker thread: the first one imports the
``kubernetes_asyncio`` models). Reads the storage's registered types only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from kubemirror import errors
from kubemirror.multicluster import request_info, status
from kubemirror.multicluster.bodies import JSON
from kubemirror.multicluster.crds import CRD_RESOURCE
from kubemirror.multicluster.storage_api import Storage

__all__ = ["METHOD_NOT_ALLOWED", "discovery", "json_response", "openapi", "version"]

METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"


def json_response(body: Any, status_code: int = 200) -> web.Response:
    """``body`` encoded as a JSON response."""
    return web.Response(body=orjson.dumps(body), status=status_code, content_type=JSON)


def version() -> dict[str, str]:
    """What ``/version`` answers."""
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


async def openapi(
    request: web.Request, storage: Storage, path: str
) -> web.StreamResponse:
    """OpenAPI v3 (``/openapi/v3``, ``/openapi/v3/<group-version>``) and v2
    (``/openapi/v2``, JSON only), for ``kubectl explain`` and server-side field
    validation. Schemas come from ``kubernetes_asyncio``'s models and the stored
    CRDs' ``openAPIV3Schema`` (see ``openapi``); a document is built in a worker
    thread, since the first one imports the models. Raises ``NotFoundError`` for
    an unknown group-version, ``NotAcceptable`` (406) for v2 in protobuf only."""
    from kubemirror.multicluster import openapi

    infos = [rs.info for rs in storage.resource_storages()]
    if path == "/openapi/v3":
        return json_response(openapi.discovery_document(infos))
    accept = request.headers.get("Accept", "")
    if path == "/openapi/v2" and accept and not any(
        t in accept for t in ("json", "*/*", "application/*")
    ):
        raise errors.ApiError(
            status.make_status(406, "NotAcceptable", "only application/json is supported")
        )
    crds = openapi.crd_schemas(
        (await storage.resource_storage(CRD_RESOURCE.gvr).alist()).items
    )
    loop = asyncio.get_running_loop()
    if path == "/openapi/v2":
        v2 = await loop.run_in_executor(None, openapi.v2_document, infos, crds)
        return json_response(v2)
    group_version = path[len("/openapi/v3/") :].strip("/")
    doc = await loop.run_in_executor(None, openapi.v3_document, group_version, infos, crds)
    if doc is None:
        raise errors.NotFoundError(
            status.make_status(404, "NotFound", f"no OpenAPI document for {group_version}")
        )
    return json_response(doc)


def _groups(storage: Storage) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for rs in storage.resource_storages():
        gvr = rs.info.gvr
        if gvr.group:
            versions = groups.setdefault(gvr.group, [])
            if gvr.version not in versions:
                versions.append(gvr.version)
    return groups


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs[0],
    }


def _resource_list(storage: Storage, group: str, version: str) -> dict[str, Any] | None:
    resources = []
    for rs in storage.resource_storages():
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


def discovery(
    request: web.Request, info: request_info.RequestInfo, storage: Storage, address: str
) -> web.Response:
    """The discovery document ``info`` asks for (``address``: this server's host:port)."""
    if request.method in ("POST", "PUT", "PATCH"):
        raise status.method_not_allowed(METHOD_NOT_ALLOWED)
    if info.core:
        if not info.version:
            return json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": address}
                    ],
                }
            )
        body = _resource_list(storage, "", info.version)
    elif not info.group:
        groups = _groups(storage)
        return json_response(
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_api_group(g, vs) for g, vs in sorted(groups.items())],
            }
        )
    elif not info.version:
        versions = _groups(storage).get(info.group)
        body = _api_group(info.group, versions) if versions else None
    else:
        body = _resource_list(storage, info.group, info.version)
    if body is None:
        raise errors.NotFoundError(
            status.make_status(404, "NotFound", f"the server could not find {info.path}")
        )
    return json_response(body)
