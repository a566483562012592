"""LIST pages of the multi-cluster storage and their continue tokens (multicluster layer).

``EntryPage`` is what a storage's ``list`` returns: the page's ``StoredObject``
entries (so the server can send compact entries' bytes as they are) with the
list metadata of a ``listing.ListPage``. A
continue token is the URL-safe base64 of a small JSON object naming the storage
instance (its resourceVersion prefix), the resource type, the request it was
issued for (``scope_key``: clusters, namespace, selectors) and a position that
each storage defines (``encode_continue``, ``decode_continue``); a token
presented with another request is refused (400), one from another storage
instance is expired (410). Pure functions and immutable values, safe from any
thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import status, watch_cache
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import Obj

__all__ = [
    "EntryPage",
    "bad_continue",
    "check_paging",
    "decode_continue",
    "encode_continue",
    "foreign_continue",
    "scope_key",
]

PositionT = TypeVar("PositionT")


@dataclass(frozen=True, slots=True)
class EntryPage:
    """One LIST page of a storage: stored entries, the list resourceVersion and the
    continue token. ``remaining_item_count`` is set only for a paged list without
    selectors. Entries are shared; do not mutate them or their objects."""

    entries: Sequence[watch_cache.StoredObject]
    resource_version: str
    continue_token: str = ""
    remaining_item_count: int | None = None

    @property
    def items(self) -> list[Obj]:
        """The objects of the page (shared; do not mutate)."""
        return [entry.object for entry in self.entries]


def scope_key(scope: ListScope, opts: ListOptions) -> str:
    """What a continue token is bound to: clusters, namespace and selectors."""
    parts = (",".join(scope.clusters), scope.namespace or "")
    text = "\x00".join((*parts, opts.label_selector, opts.field_selector))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_paging(opts: ListOptions) -> None:
    """The paging checks of a LIST every storage makes: ``BadRequestError`` for a
    negative ``limit`` or a ``continue`` token given with a resourceVersion."""
    if opts.limit < 0:
        raise status.bad_request(f"invalid limit {opts.limit}: must not be negative")
    if opts.continue_token and opts.resource_version not in ("", "0"):
        raise status.bad_request("specifying resource version is not allowed when using continue")


def bad_continue(reason: str) -> errors.BadRequestError:
    """The 400 for a continue token that does not decode (``reason`` says why)."""
    return status.bad_request(f"invalid continue token: continue key is not valid: {reason}")


def foreign_continue() -> errors.BadRequestError:
    """The 400 for a continue token issued for another resource, scope or selector."""
    return bad_continue(
        "it was issued for another request (a different resource, cluster, namespace, "
        "label selector or field selector)"
    )


def _resource(info: ResourceInfo) -> str:
    return info.gvr.api_version + "/" + info.gvr.resource


def encode_continue(
    prefix: str, info: ResourceInfo, scope: str, position: Mapping[str, object]
) -> str:
    """The token of a page of ``info``'s type in the storage ``prefix`` names, bound to
    the request ``scope`` (a ``scope_key``); ``position`` says where the next page
    starts (JSON values; the keys ``p``, ``r`` and ``q`` are taken)."""
    raw = orjson.dumps({"p": prefix, "r": _resource(info), "q": scope, **position})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(
    token: str,
    prefix: str,
    info: ResourceInfo,
    scope: str,
    position: Callable[[Mapping[str, Any]], PositionT | None],
) -> PositionT:
    """The position ``encode_continue`` put in ``token`` (read from the decoded object
    by ``position``, which returns ``None`` for a malformed one). Raises
    ``BadRequestError`` when the token does not decode or was issued for another
    resource type or request, ``GoneError`` (410 Expired) when another storage
    instance issued it."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise bad_continue("illegal base64 data") from None
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_continue("not a JSON object") from None
    if not isinstance(decoded, dict):
        raise bad_continue("not a JSON object")
    found = position(decoded)
    if found is None:
        raise bad_continue("incorrect encoded start position")
    if decoded.get("p") != prefix:
        raise status.expired(
            "The provided continue parameter was issued by another storage instance; "
            "start a new list without the continue parameter."
        )
    if decoded.get("r") != _resource(info) or decoded.get("q") != scope:
        raise foreign_continue()
    return found
