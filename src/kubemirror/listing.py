"""The LIST/WATCH vocabulary every layer speaks: ``ListOptions``, ``ListPage``, ``WatchEvent``.

A bottom layer (just above ``types``), so the client, the cache's decoders, the
reflector's ``ListerWatcher`` seam and the multi-cluster storage and server share
one description of a LIST or WATCH call and one page type. ``ListOptions`` is
``metav1.ListOptions``: the query of one call, with no notion of where it is sent
(a client adds the URL, the multi-cluster storage its ``ListScope``).
``ListPage`` is what a decoder or a storage returns for one LIST page.
``WatchEvent`` (``types.WatchEvent``) is one event of a WATCH. Pure values, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kubemirror.types import Obj, WatchEvent

__all__ = ["ListOptions", "ListPage", "WatchEvent"]

ItemT_co = TypeVar("ItemT_co", covariant=True, bound=Obj)


@dataclass(frozen=True, slots=True)
class ListOptions:
    """The query of one LIST or WATCH call (``metav1.ListOptions``).

    Empty strings and zeros mean "not set"; ``send_initial_events`` is ``None``
    when not set (kube-apiserver tells "false" from absent). Immutable; derive
    variants with ``dataclasses.replace``.
    """

    label_selector: str = ""
    field_selector: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    limit: int = 0
    continue_token: str = ""
    timeout_seconds: int = 0
    allow_watch_bookmarks: bool = False
    send_initial_events: bool | None = None

    def to_query(self, *, watch: bool = False) -> dict[str, str]:
        """The URL query parameters, in the API server's spelling (``limit`` and
        ``continue`` only for a LIST, the bookmark and streaming flags only for a WATCH)."""
        query: dict[str, str] = {}
        if watch:
            query["watch"] = "true"
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        if self.resource_version:
            query["resourceVersion"] = self.resource_version
        if self.resource_version_match:
            query["resourceVersionMatch"] = self.resource_version_match
        if self.limit and not watch:
            query["limit"] = str(self.limit)
        if self.continue_token and not watch:
            query["continue"] = self.continue_token
        if self.timeout_seconds:
            query["timeoutSeconds"] = str(self.timeout_seconds)
        if watch and self.allow_watch_bookmarks:
            query["allowWatchBookmarks"] = "true"
        if watch and self.send_initial_events is not None:
            query["sendInitialEvents"] = "true" if self.send_initial_events else "false"
        return query


@dataclass(frozen=True, slots=True)
class ListPage(Generic[ItemT_co]):
    """One LIST page: the items, the list's resourceVersion and its continue token.

    ``continue_token`` is ``""`` on the last page; ``remaining_item_count`` is
    ``None`` unless the server counted what follows. ``kind`` is the item kind
    (``"Pod"``) when the list named it, ``""`` otherwise. The item type says who
    owns the items: ``KubeClient.list`` returns fresh ``dict``s the caller owns, a
    ``PartialDecoder`` ``RawObject``s, a storage shared objects (do not mutate).
    """

    items: Sequence[ItemT_co]
    resource_version: str
    continue_token: str = ""
    remaining_item_count: int | None = None
    kind: str = ""
