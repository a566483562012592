"""Multi-cluster resource versions: ``<prefix>.<index>.<original rv>`` (multicluster layer).

Clusterpedia memory storage v2 scheme. ``index`` is a storage-wide increasing
integer that orders every event across clusters and resources; ``prefix`` names
the storage instance, so a version minted by another instance (or before a
restart) is recognised and answered with ``410 Expired`` instead of being
misread. Objects carry ``<prefix>.<index>.<original rv>`` (the member cluster's
own version is kept); lists and bookmarks carry ``<prefix>.<index>``. A watch may
also start from JSON ``{"<cluster>": "<original rv>"}`` to resume across
instances. Pure functions, safe from any thread; they raise ``GoneError`` for a
foreign prefix and ``BadRequestError`` for text that does not parse, each with a
proper ``Status``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from kubemirror.multicluster import status

__all__ = [
    "WatchStart",
    "new_prefix",
    "parse_list_resource_version",
    "parse_memory_resource_version",
    "parse_watch_resource_version",
    "to_list_resource_version",
    "to_memory_resource_version",
]


def new_prefix() -> str:
    """A fresh random instance prefix (8 lowercase hex digits, never containing ``.``)."""
    return secrets.token_hex(4)


def to_memory_resource_version(prefix: str, index: int, original_rv: str) -> str:
    """Return ``"<prefix>.<index>.<original_rv>"`` (an object's resourceVersion)."""
    return f"{prefix}.{index}.{original_rv}"


def to_list_resource_version(prefix: str, index: int) -> str:
    """Return ``"<prefix>.<index>"`` (a list's or a bookmark's resourceVersion)."""
    return f"{prefix}.{index}"


def _parse_index(rv: str, text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise status.bad_request(f"invalid resource version {rv!r}: index {text!r} is not a number")
    return int(text)


def parse_memory_resource_version(rv: str) -> tuple[str, int, str]:
    """Split an object resourceVersion into ``(prefix, index, original rv)``.

    The original part may itself contain dots. Raises ``BadRequestError`` when
    ``rv`` does not have three parts or the index is not a non-negative integer.
    """
    parts = rv.split(".", 2)
    if len(parts) != 3 or not parts[0]:
        raise status.bad_request(
            f"invalid resource version {rv!r}: expected <prefix>.<index>.<original>"
        )
    return parts[0], _parse_index(rv, parts[1]), parts[2]


def parse_list_resource_version(rv: str, prefix: str | None = None) -> int:
    """Return the index of a list resourceVersion ``"<prefix>.<index>"``.

    An object's three-part version is accepted too (its index is used), since
    clients legitimately pass either. When ``prefix`` is given and differs,
    raises ``GoneError`` (410 Expired: the version belongs to another storage
    instance). Raises ``BadRequestError`` when ``rv`` does not parse.
    """
    parts = rv.split(".", 2)
    if len(parts) < 2 or not parts[0]:
        raise status.bad_request(f"invalid resource version {rv!r}: expected <prefix>.<index>")
    index = _parse_index(rv, parts[1])
    if prefix is not None and parts[0] != prefix:
        raise status.expired(
            f"too old resource version: {rv!r} was issued by another storage instance"
        )
    return index


@dataclass(frozen=True, slots=True)
class WatchStart:
    """Where a watch begins, decoded from its ``resourceVersion`` parameter.

    Exactly one form applies: ``index`` set (events after that index), or
    ``cluster_versions`` set (a JSON ``{"cluster": "original rv"}`` map: events
    newer than those per-cluster versions), or neither (``""``/``"0"``: the current
    state first, then changes; ``any_version`` tells ``"0"`` apart).
    """

    index: int | None = None
    cluster_versions: dict[str, str] | None = None
    any_version: bool = False


def parse_watch_resource_version(rv: str, prefix: str) -> WatchStart:
    """Decode a watch ``resourceVersion`` for the storage instance ``prefix``.

    Accepts ``""``, ``"0"``, ``"<prefix>.<index>"``, ``"<prefix>.<index>.<orig>"`` and
    JSON ``{"cluster": "rv"}``. Raises ``GoneError`` for a version from another
    instance and ``BadRequestError`` for anything else.
    """
    if rv == "":
        return WatchStart()
    if rv == "0":
        return WatchStart(any_version=True)
    if rv.startswith("{"):
        try:
            decoded = json.loads(rv)
        except ValueError as exc:
            raise status.bad_request(f"invalid resource version {rv!r}: {exc}") from exc
        if not isinstance(decoded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in decoded.items()
        ):
            raise status.bad_request(
                f"invalid resource version {rv!r}: expected a JSON object of cluster to version"
            )
        return WatchStart(cluster_versions=dict(decoded))
    return WatchStart(index=parse_list_resource_version(rv, prefix))
