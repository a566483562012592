"""The ``ListerWatcher`` seam between the reflector and the API, and ``ListWatch`` over a client.

Part of the ``reflector`` layer (client-go ``tools/cache`` ``ListerWatcher`` and
``ListWatch``). A ``ListerWatcher`` lists one page of a resource and opens a
watch on it (a ``Lister`` only lists); ``ListWatch`` does so through a ``KubeClient`` for one
group/version/resource, namespace and label/field selector.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Self

from kubemirror.cache.raw_object import PartialDecoder
from kubemirror.client import discovery, transport
from kubemirror.listing import ListOptions, ListPage
from kubemirror.types import GroupVersionResource, WatchEvent

__all__ = [
    "EventStream",
    "ListOptions",
    "ListPage",
    "ListWatch",
    "Lister",
    "ListerWatcher",
]


class EventStream(Protocol):
    """An open watch: an async iterator of ``WatchEvent`` that must be closed.

    Iteration ends when the server ends the watch normally. It may raise
    ``MalformedEventError`` (a bad line; later lines may still be read),
    ``TransportError`` or ``ApiError``.
    """

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> WatchEvent: ...

    async def aclose(self) -> None: ...


class Lister(Protocol):
    """Lists one collection: one page of it, and the resourceVersion it was read at.

    The half of ``ListerWatcher`` that says what the collection holds now (a
    drift check needs no more); ``watcher.KVLister`` lists a kvstore prefix so.
    """

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]: ...


class ListerWatcher(Lister, Protocol):
    """Lists and watches one collection; what a ``Reflector`` consumes.

    ``list`` returns one page (follow ``continue_token``); ``watch`` opens a
    stream from ``opts.resource_version``. Both raise ``ApiError`` subclasses
    (``GoneError`` when the RV or continue token expired) and ``TransportError``.
    """

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]: ...

    async def watch(self, opts: ListOptions) -> EventStream: ...


class ListWatch:
    """A ``ListerWatcher`` for one resource through a ``KubeClient``.

    ``namespace=None`` (or ``""``) watches all namespaces or a cluster-scoped
    resource. The selectors given here are added to every call's options.
    Stateless; safe to share between reflectors of the same event loop.
    """

    def __init__(
        self,
        client: transport.KubeClient,
        gvr: GroupVersionResource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        decoder: PartialDecoder | None = None,
    ) -> None:
        self.client = client
        self.decoder = decoder
        self.gvr = gvr
        self.namespace = namespace or None
        self.label_selector = label_selector
        self.field_selector = field_selector

    @classmethod
    async def for_resource(
        cls,
        client: transport.KubeClient,
        name: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resolver: discovery.Discovery | None = None,
        decoder: PartialDecoder | None = None,
    ) -> ListWatch:
        """A ``ListWatch`` for a resource named as users type it (``po``, ``deployments.apps``).

        ``resolver`` shares one discovery cache between calls. ``namespace`` is
        ignored for cluster-scoped resources. Raises ``ResourceNotFoundError``.
        """
        resource = await (resolver or discovery.Discovery(client)).resolve(name)
        return cls(
            client,
            resource.gvr,
            namespace if resource.namespaced else None,
            label_selector=label_selector,
            field_selector=field_selector,
            decoder=decoder,
        )

    def _options(self, opts: ListOptions) -> ListOptions:
        if self.label_selector or self.field_selector:
            return dataclasses.replace(
                opts,
                label_selector=opts.label_selector or self.label_selector,
                field_selector=opts.field_selector or self.field_selector,
            )
        return opts

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]:
        return await self.client.list(self.gvr, self.namespace, self._options(opts),
                                      decoder=self.decoder)

    async def watch(self, opts: ListOptions) -> EventStream:
        return await self.client.watch(self.gvr, self.namespace, self._options(opts),
                                       decoder=self.decoder)

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        sel = f" [{self.label_selector}]" if self.label_selector else ""
        return f"{self.gvr}{where}{sel}"
