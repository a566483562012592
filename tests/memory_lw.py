"""An in-memory collection and ListerWatcher for deterministic reflector fault injection.

FAKE, on purpose: the end-to-end tests run against kubemirror's real API server
over HTTP. This fake exists only to produce, at an exact point of a stream,
conditions a real server cannot be told to produce on demand: an expired continue
token on page 3, a 410 on the N-th watch, an ``Expired`` ERROR event after K events,
a corrupt line between two valid ones, a stream that ends mid-sync.
``fault_sequences`` and ``apply_step`` drive the property tests that interleave
writes with such faults.
"""

from __future__ import annotations

import asyncio
import collections
import copy
from dataclasses import dataclass
from typing import Any, Literal, Self

from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.listwatch import ListOptions, ListPage
from kubemirror.reflector import INITIAL_EVENTS_END_ANNOTATION
from kubemirror.types import WatchEvent

Fault = Literal["end", "malformed", "gone_event", "error_event", "transport_error"]


def _gone(msg: str = "too old resource version") -> errors.GoneError:
    return errors.GoneError({"kind": "Status", "code": 410, "reason": "Expired", "message": msg})


class MemoryServer:
    """A single collection with a bounded event log (events at or below ``oldest_rv`` are gone)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, WatchEvent]] = []
        self.rv = 0
        self.oldest_rv = 0
        self._changed: asyncio.Event | None = None

    def _emit(self, etype: Any, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, {"type": etype, "object": obj}))
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def wake(self) -> None:
        """Wake every stream waiting for news (closed ones then end)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def changed(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    @staticmethod
    def key(name: str, namespace: str) -> str:
        return f"{namespace}/{name}" if namespace else name

    def put(self, name: str, namespace: str = "default", **data: Any) -> dict[str, Any]:
        """Create or update an object (a new dict every time: never mutated later)."""
        self.rv += 1
        key = self.key(name, namespace)
        etype = "MODIFIED" if key in self.objects else "ADDED"
        meta: dict[str, Any] = {"name": name, "resourceVersion": str(self.rv)}
        if namespace:
            meta["namespace"] = namespace
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
        self.objects[key] = obj
        self._emit(etype, obj)
        return obj

    def remove(self, name: str, namespace: str = "default") -> None:
        key = self.key(name, namespace)
        old = self.objects.pop(key)
        self.rv += 1
        final = copy.deepcopy(old)
        final["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("DELETED", final)

    def bookmark(self) -> None:
        """Queue a BOOKMARK at the current RV (watchers see it in order)."""
        obj = {"kind": "ConfigMap", "metadata": {"resourceVersion": str(self.rv)}}
        self.history.append((self.rv, {"type": "BOOKMARK", "object": obj}))
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def compact(self) -> None:
        """Forget the whole event history: any watch from an older RV gets 410."""
        self.oldest_rv = self.rv

    def state(self) -> dict[str, dict[str, Any]]:
        return dict(self.objects)


@dataclass
class WatchScript:
    """Faults for one watch: ``(after_n_events, fault)`` pairs, applied in order."""

    faults: list[tuple[int, Fault]]


class MemoryStream:
    """One open watch on a ``MemoryServer``; see the module docstring (fault-injection fake)."""

    def __init__(
        self, server: MemoryServer, from_rv: int, script: WatchScript, initial: list[WatchEvent]
    ) -> None:
        self.server = server
        history = server.history
        if from_rv >= server.rv:
            self.seq = len(history)
        else:
            self.seq = next(i for i, (rv, _) in enumerate(history) if rv > from_rv)
        self.script = collections.deque(script.faults)
        self.delivered = 0
        self.pending: collections.deque[WatchEvent] = collections.deque(initial)
        self.closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        if self.closed:
            raise StopAsyncIteration
        if self.script and self.script[0][0] <= self.delivered:
            _, fault = self.script.popleft()
            if fault == "end":
                raise StopAsyncIteration
            if fault == "malformed":
                self.delivered += 1
                raise errors.MalformedEventError(b'{"type":"MODIF', "invalid JSON")
            if fault == "gone_event":
                return {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                    "reason": "Expired", "message": "gone"}}
            if fault == "error_event":
                return {"type": "ERROR", "object": {"kind": "Status", "code": 500,
                                                    "reason": "InternalError", "message": "boom"}}
            raise errors.TransportError("connection reset by fault script")
        if self.pending:
            self.delivered += 1
            return self.pending.popleft()
        history = self.server.history
        while self.seq >= len(history):
            await self.server.changed().wait()
            if self.closed:
                raise StopAsyncIteration
        event = history[self.seq][1]
        self.seq += 1
        self.delivered += 1
        return event

    async def aclose(self) -> None:
        self.closed = True


class MemoryListerWatcher:
    """A ``ListerWatcher`` over a ``MemoryServer`` with scripted faults (fault-injection fake).

    ``watch_scripts`` applies to successive watches; ``gone_on_watch`` counts how
    many upcoming watch calls fail with 410; ``expire_continue`` makes continue
    tokens expire; ``streaming`` enables ``sendInitialEvents``.
    """

    def __init__(self, server: MemoryServer, *, streaming: bool = False) -> None:
        self.server = server
        self.streaming = streaming
        self.list_calls: list[ListOptions] = []
        self.watch_calls: list[ListOptions] = []
        self.watch_scripts: collections.deque[WatchScript] = collections.deque()
        self.gone_on_watch = 0
        self.fail_on_list = 0
        self.fail_on_watch = 0
        self.expire_continue = False
        self.streams: list[MemoryStream] = []
        self._online: asyncio.Event | None = None
        self._snapshots: dict[int, list[dict[str, Any]]] = {}

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]:
        self.list_calls.append(opts)
        if self.fail_on_list:
            self.fail_on_list -= 1
            raise errors.TransportError("connection refused by fault script")
        if opts.continue_token:
            if self.expire_continue:
                raise _gone("continue token expired")
            snap_rv_s, offset_s = opts.continue_token.split(":")
            snap_rv, offset = int(snap_rv_s), int(offset_s)
            items = self._snapshots[snap_rv]
        else:
            snap_rv, offset = self.server.rv, 0
            items = [self.server.objects[k] for k in sorted(self.server.objects)]
            self._snapshots[snap_rv] = items
        end = offset + opts.limit if opts.limit else len(items)
        token = f"{snap_rv}:{end}" if end < len(items) else ""
        return ListPage(items=list(items[offset:end]), resource_version=str(snap_rv),
                          continue_token=token)

    def disconnect(self) -> None:
        """Drop the open watch and hold every new one until ``reconnect()``."""
        if self._online is None:
            self._online = asyncio.Event()
        if self.streams:
            self.streams[-1].closed = True
        self.server.wake()

    def reconnect(self) -> None:
        if self._online is not None:
            self._online.set()
            self._online = None

    async def watch(self, opts: ListOptions) -> MemoryStream:
        while self._online is not None:
            await self._online.wait()
        self.watch_calls.append(opts)
        if self.fail_on_watch:
            self.fail_on_watch -= 1
            raise errors.TransportError("connection refused by fault script")
        if self.gone_on_watch:
            self.gone_on_watch -= 1
            raise _gone()
        script = self.watch_scripts.popleft() if self.watch_scripts else WatchScript([])
        initial: list[WatchEvent] = []
        if opts.send_initial_events:
            if not self.streaming:
                raise errors.InvalidError({"kind": "Status", "code": 422, "reason": "Invalid",
                                           "message": "sendInitialEvents is forbidden"})
            from_rv = self.server.rv
            for k in sorted(self.server.objects):
                initial.append({"type": "ADDED", "object": self.server.objects[k]})
            initial.append({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {
                "resourceVersion": str(from_rv),
                "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"}}}})
        else:
            from_rv = int(opts.resource_version or self.server.rv)
            if from_rv < self.server.oldest_rv:
                raise _gone()
        stream = MemoryStream(self.server, from_rv, script, initial)
        self.streams.append(stream)
        return stream

    def __str__(self) -> str:
        return "memory-configmaps"


class DictStore:
    """A minimal recording store keyed by namespace/name (test double for the Store protocol)."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.calls: list[str] = []
        self.replace_rvs: list[str] = []
        self.resyncs = 0

    @staticmethod
    def _key(obj: Any) -> str:
        meta = obj["metadata"]
        ns = meta.get("namespace")
        return f"{ns}/{meta['name']}" if ns else str(meta["name"])

    def add(self, obj: Any) -> None:
        self.calls.append("add")
        self.items[self._key(obj)] = obj

    def update(self, obj: Any) -> None:
        self.calls.append("update")
        self.items[self._key(obj)] = obj

    def delete(self, obj: Any) -> None:
        self.calls.append("delete")
        self.items.pop(self._key(obj), None)

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        self.calls.append("replace")
        self.replace_rvs.append(resource_version)
        self.items = {self._key(o): o for o in objs}

    def resync(self) -> None:
        self.resyncs += 1


FaultStep = tuple[str, str]
"""``("put", name)``, ``("remove", name)``, or ``(fault, "")`` for a fault ``apply_step`` knows."""

OUTAGE_STEPS: list[FaultStep] = [
    ("put", "a"), ("put", "b"), ("disconnect", ""), ("remove", "a"), ("put", "b"),
    ("compact", ""), ("reconnect", ""),
]
"""Writes during an outage that outlives the event log: the explicit property example."""


def fault_sequences(*faults: str) -> st.SearchStrategy[list[FaultStep]]:
    """Up to 40 steps, each a put or remove of one of six names or one of ``faults``."""
    return st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from("abcdef")),
            st.tuples(st.just("remove"), st.sampled_from("abcdef")),
            st.tuples(st.sampled_from(faults), st.just("")),
        ),
        max_size=40,
    )


def apply_step(server: MemoryServer, lw: MemoryListerWatcher, op: str, name: str) -> None:
    """Apply one ``FaultStep`` to ``server`` (writes, compaction, a bookmark) or to ``lw``'s
    watches (410 on the next watch, an outage, the open watch ending or hitting a
    corrupt line). Removing a missing object does nothing; an unknown ``op`` raises
    ``ValueError``."""
    if op == "put":
        server.put(name, n=str(server.rv))
    elif op == "remove":
        if server.key(name, "default") in server.objects:
            server.remove(name)
    elif op == "compact":
        server.compact()
    elif op == "bookmark":
        server.bookmark()
    elif op == "gone":
        lw.gone_on_watch += 1
    elif op == "disconnect":
        lw.disconnect()
    elif op == "reconnect":
        lw.reconnect()
    elif op in ("drop", "malformed"):
        lw.watch_scripts.append(WatchScript([(0, "end" if op == "drop" else "malformed")]))
        if lw.streams:
            lw.streams[-1].closed = True
            server.wake()
    else:
        raise ValueError(f"unknown fault step {op!r}")
