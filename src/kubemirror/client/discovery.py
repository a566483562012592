"""API discovery: which resources the server has, and resolving user-typed names to them.

Part of the ``client/`` layer. Reads the legacy discovery documents (``/api``,
``/api/v1``, ``/apis``, ``/apis/<group>/<version>``), so CRDs and aggregated
APIs are found too, and resolves what users type as kubectl does: plurals
(``pods``), singulars (``pod``), kinds (``Pod``), short names (``po``,
``deploy``), and ``resource.group`` or ``resource.version.group``
(``deployments.apps``). Parsing and matching are pure functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubemirror import errors
from kubemirror.client import transport
from kubemirror.types import GroupVersionResource

__all__ = [
    "ApiResource",
    "Discovery",
    "find_resource",
    "parse_resource_list",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One resource type the server serves (an entry of an ``APIResourceList``)."""

    gvr: GroupVersionResource
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    preferred: bool = True

    def matches(self, name: str) -> bool:
        """True if ``name`` (case-insensitive) is this resource's plural, singular, kind or
        a short name."""
        lowered = name.lower()
        return (
            lowered == self.gvr.resource
            or lowered == self.singular
            or lowered == self.kind.lower()
            or lowered in self.short_names
        )


def parse_resource_list(
    doc: Mapping[str, Any], *, preferred: bool = True
) -> list[ApiResource]:
    """The resources of an ``APIResourceList`` document, without subresources (``pods/log``)."""
    group_version = str(doc.get("groupVersion") or "")
    group, _, version = group_version.rpartition("/")
    result = []
    for entry in doc.get("resources") or []:
        name = str(entry.get("name") or "")
        if not name or "/" in name:
            continue
        kind = str(entry.get("kind") or "")
        result.append(
            ApiResource(
                gvr=GroupVersionResource(group, version, name),
                kind=kind,
                namespaced=bool(entry.get("namespaced")),
                singular=str(entry.get("singularName") or kind.lower()),
                short_names=tuple(str(s).lower() for s in entry.get("shortNames") or ()),
                verbs=tuple(str(v) for v in entry.get("verbs") or ()),
                preferred=preferred,
            )
        )
    return result


def find_resource(resources: Sequence[ApiResource], name: str) -> ApiResource | None:
    """Resolve ``name`` against ``resources`` (in discovery order; preferred versions win).

    ``name`` may be qualified: ``deployments.apps`` (resource.group) or
    ``deployments.v1.apps`` (resource.version.group). Returns ``None`` if nothing
    matches.
    """
    candidates: list[tuple[str, str | None, str | None]] = [(name, None, None)]
    if "." in name:
        head, _, rest = name.partition(".")
        candidates = [(head, rest, None)]
        rest_version, _, rest_group = rest.partition(".")
        if rest_group:
            candidates.append((head, rest_group, rest_version))
        candidates.append((name, None, None))
    for resource, group, version in candidates:
        matches = [
            r
            for r in resources
            if (group is None or r.gvr.group == group)
            and (version is None or r.gvr.version == version)
            and r.matches(resource)
        ]
        if matches:
            preferred = [r for r in matches if r.preferred]
            return (preferred or matches)[0]
    return None


class Discovery:
    """A cached view of the server's resource types, refreshed when a name is not found.

    Use from one event loop; concurrent ``resolve`` calls share one refresh.
    ``resources()`` returns an immutable snapshot. A group version that fails
    to load (for example an unavailable aggregated API) is logged and skipped.
    """

    def __init__(self, client: transport.KubeClient) -> None:
        self._client = client
        self._resources: tuple[ApiResource, ...] | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def resources(self) -> tuple[ApiResource, ...]:
        """Every known resource type (loaded on first use)."""
        if self._resources is None:
            await self.refresh()
        assert self._resources is not None
        return self._resources

    def invalidate(self) -> None:
        """Forget the cache; the next call reloads it."""
        self._resources = None

    async def refresh(self) -> None:
        """Reload every discovery document now."""
        async with self._lock:
            generation = self.refreshes
            await self._load()
            log.debug("discovery refreshed (generation %d)", generation + 1)

    async def _load(self) -> None:
        client = self._client
        core = await client.request("GET", "/api")
        group_versions: list[tuple[str, bool]] = [
            (str(v), i == 0) for i, v in enumerate(core.get("versions") or ["v1"])
        ]
        groups = await client.request("GET", "/apis")
        for group in groups.get("groups") or []:
            preferred_gv: str | None = (group.get("preferredVersion") or {}).get("groupVersion")
            versions = [str(v.get("groupVersion")) for v in group.get("versions") or []]
            if preferred_gv and preferred_gv in versions:
                versions.remove(preferred_gv)
                versions.insert(0, preferred_gv)
            first = preferred_gv or (versions[0] if versions else "")
            group_versions.extend((gv, gv == first) for gv in versions)
        docs = await asyncio.gather(
            *(self._fetch(gv) for gv, _ in group_versions), return_exceptions=False
        )
        resources: list[ApiResource] = []
        for (_gv, preferred), doc in zip(group_versions, docs, strict=True):
            if doc is not None:
                resources.extend(parse_resource_list(doc, preferred=preferred))
        self._resources = tuple(resources)
        self.refreshes += 1

    async def _fetch(self, group_version: str) -> Mapping[str, Any] | None:
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        try:
            doc: Mapping[str, Any] = await self._client.request("GET", path)
        except (errors.ApiError, errors.TransportError) as exc:
            log.warning("discovery of %s failed, skipping it: %s", group_version, exc)
            return None
        return doc

    async def resolve(self, name: str) -> ApiResource:
        """The resource type ``name`` designates; refreshes once on a miss.

        Raises ``ResourceNotFoundError`` naming ``name`` when the server has none.
        """
        found = find_resource(await self.resources(), name)
        if found is None:
            await self.refresh()
            found = find_resource(await self.resources(), name)
        if found is None:
            raise errors.ResourceNotFoundError(name)
        return found

    async def require(self, gvr: GroupVersionResource) -> None:
        """Fail fast when the server's discovery says it does not serve ``gvr``.

        Reads ``gvr``'s group-version document (and, when that is missing, the group
        list). Raises ``ResourceNotFoundError`` naming ``gvr`` when the document lacks
        it, or the group list lacks its group version. A server without discovery
        documents, or any failure (unreachable, 5xx, 403), proves nothing: the caller's
        LIST decides and its retries apply.
        """
        gv = f"{gvr.group}/{gvr.version}" if gvr.group else gvr.version
        name = f"{gvr.resource}.{gvr.version}.{gvr.group}" if gvr.group else gvr.resource
        doc = await self._optional(f"/apis/{gv}" if gvr.group else f"/api/{gv}")
        if doc is not None:
            resources = doc.get("resources") or []
            if gvr.resource not in {str(r.get("name")) for r in resources
                                    if isinstance(r, Mapping)}:
                raise errors.ResourceNotFoundError(name)
            return
        groups = await self._optional("/apis") if gvr.group else None
        if groups is not None:
            served = {str(v.get("groupVersion")) for g in groups.get("groups") or []
                      if isinstance(g, Mapping) for v in g.get("versions") or []
                      if isinstance(v, Mapping)}
            if gv not in served:
                raise errors.ResourceNotFoundError(name)

    async def _optional(self, path: str) -> Mapping[str, Any] | None:
        """The document at ``path``, or None when it is missing or cannot be read."""
        try:
            doc: Mapping[str, Any] = await self._client.request("GET", path)
        except (errors.ApiError, errors.TransportError) as exc:
            log.debug("discovery document %s not read: %s", path, exc)
            return None
        return doc if isinstance(doc, Mapping) else None

    async def resolve_all(self, names: Iterable[str]) -> list[ApiResource]:
        """``resolve`` for several names."""
        return [await self.resolve(n) for n in names]
