"""Writes forwarded to the member cluster that owns the object (multicluster layer).

``MemberWriteForwarder`` is a ``KubeApiServer(write_forwarder=...)``: the server
picks the member (the path's cluster, the object's cluster annotation or the
default cluster for creates, the owning cluster for named writes) and hands
over the request; the forwarder sends it to that member through its
``KubeClient`` and answers with the member's status code and body, errors as
the member's ``Status``. The mirror's additions are undone on the way out (the
``CLUSTER_ANNOTATION`` is dropped, ``<prefix>.<index>.<rv>`` resourceVersions
become the member's ``<rv>``). A successful write is answered once the storage
holds it (read-your-writes: the stored object at the member's new
resourceVersion, or its absence after a delete), as a read would return it,
with the mirror's resourceVersion, so a watch can start from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import yaml

from kubemirror import errors, keys
from kubemirror.client import transport
from kubemirror.multicluster import resource_version as rvs
from kubemirror.multicluster import status
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from kubemirror.multicluster.storage_api import Storage
from kubemirror.multicluster.synchro import wait_for_object
from kubemirror.multicluster.writes import ForwardedWrite
from kubemirror.types import GroupVersionResource

__all__ = ["MemberWriteForwarder", "unmirror_body"]

log = logging.getLogger(__name__)

_ANNOTATION_POINTER = "/metadata/annotations/" + CLUSTER_ANNOTATION.replace("~", "~0").replace(
    "/", "~1"
)


def _member_rv(rv: Any) -> Any:
    """The member's resourceVersion inside a mirror one (anything else unchanged)."""
    if not isinstance(rv, str) or rv.count(".") < 2:
        return rv
    try:
        return rvs.parse_memory_resource_version(rv)[2]
    except errors.ApiError:
        return rv


def _unmirror_metadata(meta: Any) -> None:
    if not isinstance(meta, dict):
        return
    if "resourceVersion" in meta:
        meta["resourceVersion"] = _member_rv(meta["resourceVersion"])
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and CLUSTER_ANNOTATION in annotations:
        del annotations[CLUSTER_ANNOTATION]
        if not annotations:
            del meta["annotations"]


def unmirror_body(method: str, content_type: str, body: Any) -> Any:
    """``body`` as the member should see it: the mirror's annotation and versions undone."""
    if method == "PATCH" and content_type == "application/json-patch+json":
        if not isinstance(body, list):
            return body
        out = []
        for op in body:
            if isinstance(op, dict):
                path = op.get("path")
                if path == _ANNOTATION_POINTER:
                    continue
                if path == "/metadata/resourceVersion" and "value" in op:
                    op = {**op, "value": _member_rv(op["value"])}
                elif path == "/metadata" and isinstance(op.get("value"), dict):
                    _unmirror_metadata(op["value"])
            out.append(op)
        return out
    if not isinstance(body, dict):
        return body
    if method == "DELETE":
        preconditions = body.get("preconditions")
        if isinstance(preconditions, dict) and "resourceVersion" in preconditions:
            preconditions["resourceVersion"] = _member_rv(preconditions["resourceVersion"])
        return body
    _unmirror_metadata(body.get("metadata"))
    return body


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise status.bad_request(f"the request body is not valid JSON: {exc}") from exc


def _path(write: ForwardedWrite, namespace: str) -> str:
    info = write.resource
    name = write.name or None
    path = transport.resource_path(info.gvr, namespace if info.namespaced else None, name)
    return f"{path}/{write.subresource}" if write.subresource and name else path


class MemberWriteForwarder:
    """Sends writes to the members' ``clients`` and waits until ``storage`` mirrors them.

    ``clients`` maps cluster names to their ``KubeClient``. ``mirrored(cluster,
    gvr)`` says whether the storage mirrors that resource of that member (default:
    every one); when it does not, the answer is not waited for. ``wait_timeout``
    bounds the read-your-writes wait (the member's answer is returned after it,
    logged). ``describe(exc)`` words a transport failure for the 503 Status.
    """

    def __init__(
        self,
        storage: Storage,
        clients: Mapping[str, transport.KubeClient],
        *,
        mirrored: Callable[[str, GroupVersionResource], bool] | None = None,
        wait_timeout: float = 10.0,
        describe: Callable[[BaseException], str] = str,
    ) -> None:
        self.storage = storage
        self.clients = clients
        self.mirrored = mirrored
        self.wait_timeout = wait_timeout
        self.describe = describe

    async def __call__(self, write: ForwardedWrite) -> tuple[int, bytes]:
        """Forward ``write``; ``(status code, JSON body)`` to answer with."""
        client = self.clients.get(write.cluster)
        if client is None:
            raise errors.ApiError(
                status.make_status(
                    405,
                    "MethodNotAllowed",
                    f"cannot write to cluster {write.cluster!r}: it is not a member cluster",
                )
            )
        content_type = write.content_type or "application/json"
        body: Any
        if "protobuf" in content_type or "cbor" in content_type:
            body = write.body or None  # forwarded as received (kubectl create sends protobuf)
        else:
            body = _parse(write.body)
            if body is not None:
                body = unmirror_body(write.method, content_type, body)
            if write.method != "PATCH" and body is not None:
                content_type = "application/json"
        namespace = write.namespace
        if not namespace and write.resource.namespaced and isinstance(body, dict):
            meta = body.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("namespace"), str):
                namespace = meta["namespace"]
        try:
            answer = await client.request(
                write.method,
                _path(write, namespace),
                params=dict(write.query),
                body=body,
                content_type=content_type,
            )
        except errors.ApiError as exc:
            st = status.status_of(exc)
            return int(st.get("code") or 500), orjson.dumps(st)
        except errors.TransportError as exc:
            st = status.make_status(
                503,
                "ServiceUnavailable",
                f"cluster {write.cluster} is unreachable: {self.describe(exc)}",
            )
            return 503, orjson.dumps(st)
        code = 201 if write.method == "POST" else 200
        if not isinstance(answer, dict) or write.query.get("dryRun"):
            return code, orjson.dumps(answer)
        return code, await self._mirrored_answer(write, namespace, answer)

    async def _mirrored_answer(
        self, write: ForwardedWrite, namespace: str, answer: dict[str, Any]
    ) -> bytes:
        """The stored object once the mirror has the write (the member's answer otherwise)."""
        gvr = write.resource.gvr
        is_status = answer.get("kind") == "Status"
        meta = answer.get("metadata") if not is_status else None
        meta = meta if isinstance(meta, dict) else {}
        name = str(meta.get("name") or write.name)
        namespace = str(meta.get("namespace") or namespace)
        original_rv = str(meta.get("resourceVersion") or "")
        lingering = (
            bool(meta.get("finalizers")) or int(meta.get("deletionGracePeriodSeconds") or 0) > 0
        )
        gone = write.method == "DELETE" and (is_status or not lingering)
        if self.mirrored is not None and not self.mirrored(write.cluster, gvr):
            return orjson.dumps(answer if is_status else self._stamped(write.cluster, answer))
        try:
            entry = await wait_for_object(
                self.storage,
                gvr,
                write.cluster,
                namespace,
                name,
                original_rv=original_rv,
                gone=gone,
                timeout=self.wait_timeout,
            )
        except TimeoutError:
            log.warning(
                "cluster %s: %s %s/%s: the mirror did not see the write within %.0f s",
                write.cluster,
                write.method,
                gvr,
                keys.object_key(namespace, name),
                self.wait_timeout,
            )
            entry = None
        if entry is not None and not gone:
            return entry.encoded()
        return orjson.dumps(answer if is_status else self._stamped(write.cluster, answer))

    def _stamped(self, cluster: str, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` as the mirror serves objects: cluster annotation, mirror resourceVersion."""
        meta = dict(obj.get("metadata") or {})
        annotations = dict(meta.get("annotations") or {})
        annotations[CLUSTER_ANNOTATION] = cluster
        meta["annotations"] = annotations
        meta["resourceVersion"] = rvs.to_memory_resource_version(
            self.storage.prefix, self.storage.index, str(meta.get("resourceVersion") or "")
        )
        return {**obj, "metadata": meta}
