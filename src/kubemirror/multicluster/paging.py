"""LIST pages of the multi-cluster storage and their continue tokens (multicluster layer).

``EntryPage`` is what a storage's ``list`` returns: the page's ``StoredObject``
entries (so the server can send compact entries' bytes as they are) with the
list metadata of a ``listing.ListPage``. A continue token is the URL-safe
base64 of a small JSON object naming the storage instance (its resourceVersion
prefix), the resource type, the request it was issued for (``scope_key``:
clusters, namespace, selectors) and a position (``encode_continue``,
``decode_continue``): for both storages the page's index and its last
(cluster, key) (``key_position``), as kube-apiserver's tokens carry a
resourceVersion and a key. A token presented with another request is refused
(400), one from another storage instance is expired (410). The memory storage
cuts a page (``cut_page``) from each cluster's current entries in key order with
the writes since the token's index undone (``ClusterAtVersion``), so nothing is
kept between pages. Pure functions and immutable values are safe from any
thread; a ``ClusterAtVersion`` is read under its storage's lock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import status, watch_cache
from kubemirror.multicluster.filters import ObjectFilter
from kubemirror.multicluster.key_order import KeyOrder
from kubemirror.multicluster.list_request import ListScope
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.types import Obj

__all__ = [
    "ClusterAtVersion",
    "FUTURE_POSITION",
    "EntryPage",
    "Undone",
    "bad_continue",
    "check_paging",
    "continue_too_old",
    "count_after",
    "cut_page",
    "decode_continue",
    "encode_continue",
    "foreign_continue",
    "key_position",
    "key_token_position",
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


# -- key positions: where the next page starts ----------------------------------------------


def key_position(decoded: Mapping[str, Any]) -> tuple[int, tuple[str, str]] | None:
    """The list index and the last ``(cluster, key)`` of a decoded continue token of
    both storages (``None`` if malformed); see ``decode_continue``."""
    index, cluster, key = decoded.get("i"), decoded.get("c"), decoded.get("k")
    if (
        not isinstance(index, int)
        or isinstance(index, bool)
        or index < 0
        or not isinstance(cluster, str)
        or not isinstance(key, str)
    ):
        return None
    return index, (cluster, key)


FUTURE_POSITION = (
    "its resourceVersion is newer than the storage's (not a token this storage issued)"
)
"""Why a token whose index is beyond the storage's current one is refused: only a forged
token can carry one (a storage issues tokens at indexes it has reached, and a token of
another storage instance is told by its prefix)."""


def key_token_position(index: int, after: tuple[str, str]) -> dict[str, object]:
    """The position ``key_position`` reads: the next page holds the state at ``index``
    after the ``(cluster, key)`` ``after``."""
    return {"i": index, "c": after[0], "k": after[1]}


def continue_too_old(fresh_token: str) -> errors.GoneError:
    """410 Expired for a continue token whose version the storage can no longer rebuild,
    with ``fresh_token`` in ``metadata.continue`` (kube-apiserver's answer): it reads
    the rest of the list, after the same key, at the current version instead."""
    st = status.make_status(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter, or use the continue "
        "token in this status to read the rest at the current resource version: objects "
        "written since the first page may then be missing or appear twice.",
    )
    st["metadata"] = {"continue": fresh_token}
    return errors.GoneError(st)


# -- the memory storage's pages: current entries with later writes undone -------------------

Undone = Sequence[tuple[str, "watch_cache.StoredObject | None"]]
"""One cluster's keys written after a page's version, sorted, each with its state at that
version (``None``: it did not exist then)."""


class ClusterAtVersion:
    """One cluster's entries at a version: its current ``objects`` by key, the same in
    key order, loaded by ``load(cluster)`` on first use (so a page reads only the
    clusters it reaches; ``None`` when the cluster holds nothing now), and the keys
    written since, ``undone``. Not thread-safe (read under the storage's lock)."""

    __slots__ = ("_load", "_loaded", "_order", "cluster", "objects", "undone")

    def __init__(
        self,
        cluster: str,
        objects: Mapping[str, watch_cache.StoredObject],
        load: Callable[[str], KeyOrder | None],
        undone: Undone = (),
    ) -> None:
        self.cluster = cluster
        self.objects = objects
        self.undone = undone
        self._load = load
        self._order: KeyOrder | None = None
        self._loaded = False

    def order(self) -> KeyOrder | None:
        """The current entries in key order (loaded once, on the first call)."""
        if not self._loaded:
            self._order = self._load(self.cluster)
            self._loaded = True
        return self._order


def _in_namespace(key: str, namespace: str) -> bool:
    return not namespace or key.startswith(namespace + "/")


def _entries_from(
    part: ClusterAtVersion, namespace: str, after: str | None
) -> Iterator[watch_cache.StoredObject]:
    """``part``'s entries (of keys ``<namespace>/...`` when set) after the key ``after``,
    in key order, as they were at the version: current entries whose keys were not
    written since, merged with the undone states."""
    order = part.order()
    keys: Sequence[str] = order.keys if order is not None else ()
    entries: Sequence[watch_cache.StoredObject] = order.entries if order is not None else ()
    lo, hi = order.span(namespace, after) if order is not None else (0, 0)
    if not part.undone:
        for i in range(lo, hi):
            yield entries[i]
        return
    pending = [
        (key, state)
        for key, state in part.undone
        if (after is None or key > after) and _in_namespace(key, namespace)
    ]
    changed = {key for key, _ in pending}
    j = 0
    for i in range(lo, hi):
        key = keys[i]
        while j < len(pending) and pending[j][0] < key:
            state = pending[j][1]
            if state is not None:
                yield state
            j += 1
        if key not in changed:
            yield entries[i]
    for _, state in pending[j:]:
        if state is not None:
            yield state


def cut_page(
    parts: Sequence[ClusterAtVersion],
    namespace: str,
    after: tuple[str, str] | None,
    limit: int,
    flt: ObjectFilter,
) -> tuple[list[watch_cache.StoredObject], bool]:
    """The page of at most ``limit`` (0: no limit) entries ``flt`` selects after the
    ``(cluster, key)`` ``after``, from ``parts`` (sorted by cluster, already restricted
    to ``flt``'s clusters; ``namespace`` restricts keys), and whether more in-scope
    entries follow it. O(page + skipped entries + undone keys of the clusters read)."""
    page: list[watch_cache.StoredObject] = []
    select = None if flt.selects_everything_in_scope else flt.matches_object
    for part in parts:
        if after is not None and part.cluster < after[0]:
            continue
        start = after[1] if after is not None and part.cluster == after[0] else None
        for entry in _entries_from(part, namespace, start):
            if limit and len(page) == limit:
                return page, True
            if select is None or select(entry.selectable):
                page.append(entry)
    return page, False


def count_after(
    parts: Sequence[ClusterAtVersion], namespace: str, after: tuple[str, str]
) -> int:
    """How many entries ``parts`` hold at their version after ``after`` (the
    ``remainingItemCount`` of a page without selectors). O(clusters * log n + undone)."""
    total = 0
    for part in parts:
        if part.cluster < after[0]:
            continue
        start = after[1] if part.cluster == after[0] else None
        if start is None and not namespace:
            total += len(part.objects)  # the whole cluster: no need to load its order
        else:
            order = part.order()
            if order is not None:
                lo, hi = order.span(namespace, start)
                total += hi - lo
        for key, state in part.undone:
            if (start is None or key > start) and _in_namespace(key, namespace):
                total += (state is not None) - (key in part.objects)
    return total
