"""Shared type aliases, wire shapes and small protocols used across every layer.

Objects are plain decoded JSON. Read paths are typed with ``Obj`` (a read-only
``Mapping``) to state the immutability contract: values handed out by stores are
shared and must not be mutated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypedDict

__all__ = [
    "INITIAL_EVENTS_END_ANNOTATION",
    "Clock",
    "GroupVersionResource",
    "IndexFunc",
    "KeyFunc",
    "ListMeta",
    "MonotonicClock",
    "MutableObj",
    "Obj",
    "Status",
    "WatchEvent",
    "WatchEventType",
]

INITIAL_EVENTS_END_ANNOTATION: Final = "k8s.io/initial-events-end"
"""The annotation (value ``"true"``) of the BOOKMARK that ends a watch's initial events
(``sendInitialEvents=true``): the replayed state is complete."""

Obj = Mapping[str, Any]
"""A Kubernetes object as decoded JSON. Treat as read-only."""

MutableObj = dict[str, Any]
"""A Kubernetes object the caller owns and may mutate."""

KeyFunc = Callable[[Any], str]
"""Computes the store key of an object; raises ``KeyFuncError``."""

IndexFunc = Callable[[Any], list[str]]
"""Computes the index values of an object (zero or more)."""

WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]


class WatchEvent(TypedDict):
    """One line of a Kubernetes watch stream."""

    type: WatchEventType
    object: dict[str, Any]


ListMeta = TypedDict(
    "ListMeta",
    {"resourceVersion": str, "continue": str, "remainingItemCount": int},
    total=False,
)
"""``metadata`` of a Kubernetes list (``continue`` is a keyword, hence this form)."""


class Status(TypedDict, total=False):
    """A Kubernetes ``Status`` (errors and some delete responses)."""

    kind: Literal["Status"]
    apiVersion: Literal["v1"]
    metadata: dict[str, Any]
    status: Literal["Success", "Failure"]
    message: str
    reason: str
    details: dict[str, Any]
    code: int


class Clock(Protocol):
    """A source of monotonic time in seconds; injectable so tests never sleep."""

    def now(self) -> float: ...


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    def now(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    """A resource type: ``group`` is ``""`` for the core group."""

    group: str
    version: str
    resource: str

    @property
    def api_version(self) -> str:
        """``v1`` for core, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.resource}.{self.version}.{self.group}" if self.group else (
            f"{self.resource}.{self.version}"
        )
