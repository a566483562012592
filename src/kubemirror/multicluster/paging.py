"""LIST pages of the multi-cluster storage and their continue tokens (multicluster layer).

``EntryPage`` is what a storage's ``list`` returns: the page's ``StoredObject``
entries (so the server can send compact entries' bytes as they are) with the
list metadata of a ``listing.ListPage``. A
continue token is the URL-safe base64 of a small JSON object naming the storage
instance (its resourceVersion prefix), the resource type, the request it was
issued for (``scope_key``: clusters, namespace, selectors) and a position that
each storage defines (``encode_continue``, ``decode_continue``); a token
presented with another request is refused (400), one from another storage
instance is expired (410). The memory storage cuts its pages from a
``Snapshot`` of the selected entries (``cut_page``) and keeps the rest of a
paged LIST in ``Snapshots`` for its continue tokens. Pure functions and
immutable values are safe from any thread; ``Snapshots`` is guarded by its
owner's lock.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import status, watch_cache
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import Obj

__all__ = [
    "EntryPage",
    "Snapshot",
    "Snapshots",
    "bad_continue",
    "check_paging",
    "cut_page",
    "decode_continue",
    "encode_continue",
    "foreign_continue",
    "scope_key",
    "snapshot_position",
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


# -- the memory storage's pages: snapshots kept for continue tokens -----------------------


@dataclass(slots=True)
class Snapshot:
    """The entries a LIST selected, in (cluster, key) order, at storage ``index``;
    ``bound_to`` is the ``scope_key`` of the request that took it."""

    entries: list[watch_cache.StoredObject]
    index: int
    bound_to: str = ""


def cut_page(
    entries: Sequence[watch_cache.StoredObject], offset: int, limit: int, flt: ObjectFilter
) -> tuple[Sequence[watch_cache.StoredObject], int]:
    """The page of at most ``limit`` (0: no limit) entries from ``offset`` that ``flt``
    selects, and the offset after it. Entries outside ``flt``'s scope or selectors are
    skipped unless the filter selects everything in scope (then a slice, no copy
    when unlimited)."""
    if flt.selects_everything_in_scope:
        if not limit and not offset:
            return entries, len(entries)
        page = entries[offset : (offset + limit if limit else None)]
        return page, offset + len(page)
    selected: list[watch_cache.StoredObject] = []
    end = offset
    total = len(entries)
    while end < total and (not limit or len(selected) < limit):
        entry = entries[end]
        end += 1
        if flt.in_scope(entry.cluster, entry.namespace) and flt.matches_object(entry.selectable):
            selected.append(entry)
    return selected, end


def snapshot_position(decoded: Mapping[str, Any]) -> tuple[str, int] | None:
    """The snapshot id and offset of a decoded memory-storage continue token (``None``
    if malformed); see ``decode_continue``."""
    snapshot_id, offset = decoded.get("s"), decoded.get("o")
    if (
        not isinstance(snapshot_id, str)
        or not isinstance(offset, int)
        or isinstance(offset, bool)
        or offset < 0
    ):
        return None
    return snapshot_id, offset


class Snapshots:
    """The snapshots of paged LISTs a memory storage keeps for their continue tokens.

    Least recently used first out beyond the capacity given to ``keep``. Not
    thread-safe: call with the owning storage's lock held. O(1) per call but the
    evictions.
    """

    def __init__(self) -> None:
        self._kept: collections.OrderedDict[str, Snapshot] = collections.OrderedDict()

    def keep(self, snapshot: Snapshot, capacity: int) -> str:
        """Keep ``snapshot`` under a new random id (returned); evict the least recently
        used beyond ``capacity``."""
        snapshot_id = secrets.token_hex(8)
        self._kept[snapshot_id] = snapshot
        while len(self._kept) > capacity:
            self._kept.popitem(last=False)
        return snapshot_id

    def resume(self, snapshot_id: str, bound_to: str) -> Snapshot:
        """The snapshot a continue token names, for a request with ``scope_key``
        ``bound_to``; ``BadRequestError`` if another request took it, ``GoneError``
        (410 Expired) once it was evicted."""
        snapshot = self._kept.get(snapshot_id)
        if snapshot is None:
            raise status.expired(
                "The provided continue parameter is too old to display a consistent "
                "list result. You can start a new list without the continue parameter."
            )
        if snapshot.bound_to != bound_to:
            raise foreign_continue()
        self._kept.move_to_end(snapshot_id)
        return snapshot

    def drop(self, snapshot_id: str) -> None:
        """Forget a snapshot whose last page was read (absent ids are ignored)."""
        self._kept.pop(snapshot_id, None)
