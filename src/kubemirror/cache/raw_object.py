"""RawObject and PartialDecoder: objects kept as the bytes received, with a partial view.

Part of the cache layer; what the compact store (``compact.CompactIndexer``) and
the client's compact decoding path (``KubeClient.list``/``watch`` with a
``decoder``) share. A ``PartialDecoder`` decodes only what keys and indices need
-- ``apiVersion``, ``kind``, the identifying ``metadata`` fields and any
configured ``view_paths`` -- with a typed msgspec decode that skips everything
else (``spec``, ``status``, ``managedFields``) without building it, and keeps the
object's JSON as the exact bytes received (``perf-baselines.md`` lessons 4 and 6:
~2x the throughput of a full decode, ~5x less memory).

A ``RawObject`` *is* a dict -- the partial view -- so key functions, index
functions and ``metadata.resourceVersion`` lookups work on it unchanged; its
``raw`` attribute holds the full JSON and ``decode()`` returns the whole object.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict, TypeVar

import msgspec
import orjson

from kubemirror import errors
from kubemirror.listing import ListPage

__all__ = [
    "DEFAULT_VIEW_METADATA",
    "PartialDecoder",
    "RawList",
    "RawObject",
    "split_list",
]

DEFAULT_VIEW_METADATA: tuple[str, ...] = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "generateName",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
)
"""The ``metadata`` fields every partial view holds (``managedFields`` is never in it)."""

ItemT = TypeVar("ItemT", bound="dict[str, Any]")

_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
_PATH_PART = re.compile(r"[A-Za-z_$][A-Za-z0-9_$\-]*\Z")
_MANAGED_FIELDS = b'"managedFields":'


class RawObject(dict[str, Any]):
    """A Kubernetes object as the JSON bytes received plus a partially decoded view.

    The dict content is the *view*: ``apiVersion``, ``kind``, the ``metadata``
    fields of ``DEFAULT_VIEW_METADATA`` that the object has, and the decoder's
    ``view_paths``; nothing else (no ``spec``/``status`` unless configured).
    ``raw`` is the complete object's JSON (minus ``metadata.managedFields`` when
    the decoder strips them); ``decode()`` returns a fresh full dict each call.

    Immutability: treat both as read-only, like any stored object. Not
    thread-safe to mutate; safe to share for reading.
    """

    __slots__ = ("raw",)

    raw: bytes

    def __init__(self, view: dict[str, Any], raw: bytes) -> None:
        super().__init__(view)
        self.raw = raw

    def decode(self) -> dict[str, Any]:
        """The whole object, freshly decoded (the caller owns it)."""
        result: dict[str, Any] = orjson.loads(self.raw)
        return result

    def __reduce__(self) -> Any:
        return (RawObject, (dict(self), self.raw))

    def __repr__(self) -> str:
        return f"RawObject({dict.__repr__(self)}, {len(self.raw)} bytes)"


class _Event(msgspec.Struct):
    type: str
    object: msgspec.Raw


_TYPE_MEMBER = b'{"type":"'
_OBJECT_MEMBER = b'","object":'
_FAST_TYPES = {etype.encode(): etype for etype in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")}


class _ListMeta(msgspec.Struct, rename={"continue_token": "continue"}):
    resourceVersion: str = ""
    continue_token: str = ""
    remainingItemCount: int | None = None


class RawList(msgspec.Struct):
    """A LIST body split, not decoded: each item is the span of JSON received.

    ``items`` are ``msgspec.Raw`` spans into the body (zero-copy; they keep the
    body alive), ``None`` when the body has no ``items``.
    """

    kind: str = ""
    apiVersion: str = ""
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: builtins.list[msgspec.Raw] | None = None

    @property
    def item_kind(self) -> str:
        """The kind of the items (``"Pod"`` for a ``PodList``); ``""`` if not a ``*List``."""
        return self.kind[:-4] if self.kind.endswith("List") else ""

    def list_page(self, items: Sequence[ItemT]) -> ListPage[ItemT]:
        """``items`` (this list's items, decoded) as a ``ListPage`` with this list's
        metadata and item kind."""
        meta = self.metadata
        return ListPage(
            items, meta.resourceVersion, meta.continue_token, meta.remainingItemCount,
            self.item_kind,
        )


_RAW_LIST_DECODER = msgspec.json.Decoder(RawList)


def split_list(body: bytes) -> RawList:
    """Split a LIST response body into raw item spans and the list's metadata.

    One validating pass that builds nothing per item; decode each span on its own
    (``orjson.loads(memoryview(raw))``) so a page never needs a parse buffer many
    times its size. Raises ``TransportError`` if the body is not JSON or not a list.
    """
    try:
        return _RAW_LIST_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise errors.TransportError(f"LIST response is not a list object: {exc}") from None


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    return TypedDict(name, fields, total=False)  # type: ignore[operator]


def _tree_type(name: str, tree: dict[str, Any]) -> Any:
    """Nested TypedDicts for a tree of path parts; a leaf (``None``) decodes as ``Any``."""
    fields = {
        part: Any if sub is None else sub if isinstance(sub, type) else _tree_type(
            f"{name}_{part}", sub)
        for part, sub in tree.items()
    }
    return _typed_dict(name, fields)


class PartialDecoder:
    """Decodes watch lines and LIST bodies into ``RawObject``s (partial view + bytes).

    ``view_paths`` are dotted field paths (``"spec.nodeName"``, ``"status.phase"``,
    ``"spec"`` for the whole subtree) decoded into the view besides
    ``apiVersion``, ``kind`` and ``DEFAULT_VIEW_METADATA``; index functions of a
    compact store see exactly that. ``strip_managed_fields`` cuts
    ``metadata.managedFields`` out of the kept bytes (about 30% of a Pod) by
    splicing the received bytes, never re-encoding them; objects whose bytes are
    not in the compact form the API server emits keep them (counted in
    ``unstripped``).

    Stateless apart from that counter; safe to share between streams of one
    event loop. Raises ``ConfigError`` naming a malformed path.
    """

    __slots__ = ("_event_decoder", "_view_decoder", "strip_managed_fields", "unstripped",
                 "view_paths")

    def __init__(
        self, view_paths: Iterable[str] = (), *, strip_managed_fields: bool = False
    ) -> None:
        self.view_paths = tuple(view_paths)
        self.strip_managed_fields = strip_managed_fields
        self.unstripped = 0
        tree: dict[str, Any] = {
            "apiVersion": None,
            "kind": None,
            "metadata": dict.fromkeys(DEFAULT_VIEW_METADATA),
        }
        for path in self.view_paths:
            parts = path.split(".")
            if not all(_PATH_PART.match(p) for p in parts):
                raise errors.ConfigError(
                    "view paths are dotted field names", field="view_paths", expression=path
                )
            node = tree
            for part in parts[:-1]:
                sub = node.get(part, {})
                if sub is None:  # a parent path already decodes the whole subtree
                    break
                node = node.setdefault(part, sub)
            else:
                node[parts[-1]] = None
        meta = tree["metadata"]
        if isinstance(meta, dict) and strip_managed_fields:
            meta["managedFields"] = msgspec.Raw  # located, then cut out of the bytes
        view_type = _tree_type("View", tree)
        self._view_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(view_type)
        self._event_decoder = msgspec.json.Decoder(_Event)

    def __repr__(self) -> str:
        return (f"PartialDecoder(view_paths={self.view_paths!r}, "
                f"strip_managed_fields={self.strip_managed_fields})")

    def view(self, raw: bytes | msgspec.Raw) -> RawObject:
        """A ``RawObject`` for one object's JSON. Raises ``msgspec.DecodeError``."""
        view: dict[str, Any] = self._view_decoder.decode(raw)
        data = raw if type(raw) is bytes else bytes(raw)
        if self.strip_managed_fields:
            meta = view.get("metadata")
            if meta is not None:
                managed = meta.pop("managedFields", None)
                if managed is not None:
                    data = self._strip(data, bytes(managed))
        return RawObject(view, data)

    def _strip(self, data: bytes, managed: bytes, lo: int = 0, hi: int | None = None) -> bytes:
        """``data[lo:hi]`` without its ``"managedFields":<managed>`` member (one copy)."""
        if hi is None:
            hi = len(data)
        head = len(_MANAGED_FIELDS)
        start = data.find(_MANAGED_FIELDS, lo, hi)
        if start >= 0 and not data.startswith(managed, start + head):
            start = data.find(_MANAGED_FIELDS + managed, lo, hi)  # an earlier key of that name
        if start < 0:
            self.unstripped += 1
            return data[lo:hi]
        end = start + head + len(managed)
        if data[end:end + 1] == b",":
            cut_from, cut_to = start, end + 1
        elif start > lo and data[start - 1:start] == b",":
            cut_from, cut_to = start - 1, end
        else:
            cut_from, cut_to = start, end
        with memoryview(data) as whole:
            return b"".join((whole[lo:cut_from], whole[cut_to:hi]))

    def event(self, line: bytes | memoryview) -> dict[str, Any]:
        """Decode one watch line; the object is a ``RawObject`` (a plain dict for ERROR).

        Raises ``MalformedEventError`` (with the line) as ``parse_watch_line`` does.

        Fast path (one typed pass over the object): when the line is
        ``{"type":"<T>","object":<object>}`` -- the API server's encoding -- the
        object's bytes are the slice between that prefix and the last brace, and
        the view is decoded from the slice, which must hold exactly one JSON value
        (a duplicate ``"object"`` or an extra member makes it fail). Anything else
        (other key order, extra keys, whitespace, an ERROR) takes the general path.
        """
        head = bytes(line[:40])
        end = head.find(_OBJECT_MEMBER, 9)
        if end > 0 and head.startswith(_TYPE_MEMBER) and line[-1:] == b"}":
            etype = _FAST_TYPES.get(head[9:end])
            if etype is not None:
                lo, hi = end + len(_OBJECT_MEMBER), len(line) - 1
                try:  # the slice must hold exactly one JSON value, or this raises
                    view = self._view_decoder.decode(memoryview(line)[lo:hi])
                except msgspec.DecodeError:
                    view = None
                if type(view) is dict:
                    meta = view.get("metadata")
                    if meta is None or type(meta.get("resourceVersion")) is not str:
                        raise errors.MalformedEventError(
                            line, "object has no metadata.resourceVersion")
                    managed = meta.pop("managedFields", None) if self.strip_managed_fields else None
                    if managed is None:
                        data = bytes(line[lo:hi])
                    else:
                        data = self._strip(bytes(line), bytes(managed), lo, hi)
                    return {"type": etype, "object": RawObject(view, data)}
        return self._event_slow(line)

    def _event_slow(self, line: bytes | memoryview) -> dict[str, Any]:
        try:
            event = self._event_decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise errors.MalformedEventError(line, f"invalid event: {exc}") from None
        etype = event.type
        if etype not in _EVENT_TYPES:
            raise errors.MalformedEventError(line, f"unknown event type {etype!r}")
        obj: dict[str, Any]
        try:
            if etype == "ERROR":
                obj = orjson.loads(bytes(event.object))
                if not isinstance(obj, dict):
                    raise errors.MalformedEventError(line, "event has no object")
            else:
                obj = self.view(event.object)
        except (msgspec.DecodeError, orjson.JSONDecodeError) as exc:
            raise errors.MalformedEventError(line, f"event has no object: {exc}") from None
        if etype != "ERROR":
            meta = obj.get("metadata")
            if meta is None or type(meta.get("resourceVersion")) is not str:
                raise errors.MalformedEventError(line, "object has no metadata.resourceVersion")
        return {"type": etype, "object": obj}

    def page(self, body: bytes, default_api_version: str = "") -> ListPage[RawObject]:
        """Decode one LIST response body. Raises ``TransportError`` if it is not a list.

        Items lacking ``kind`` get it and the list's ``apiVersion`` (or
        ``default_api_version`` when the list has none), as ``decode_list`` does.
        """
        doc = split_list(body)
        api_version = doc.apiVersion or default_api_version
        try:
            raws = doc.items or []
            kind = doc.item_kind
            prefix = b""
            if kind:
                prefix = orjson.dumps({"kind": kind, "apiVersion": api_version})[:-1] + b","
            view = self.view
            items = []
            for raw in raws:
                obj = view(raw)
                if kind and "kind" not in obj:
                    # LIST items omit kind/apiVersion; put them back as a GET would have them.
                    obj["kind"] = kind
                    obj["apiVersion"] = api_version
                    data = obj.raw
                    if data[:1] == b"{":
                        obj.raw = prefix + data[1:] if len(data) > 2 else prefix[:-1] + b"}"
                items.append(obj)
        except msgspec.DecodeError as exc:
            raise errors.TransportError(f"LIST response is not a list object: {exc}") from None
        return doc.list_page(items)
