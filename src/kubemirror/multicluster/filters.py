"""Which stored objects a LIST or WATCH request selects (multicluster layer).

An ``ObjectFilter`` combines the request's clusters, namespace, label selector
and field selector (parsed by ``kubemirror.selectors``) into one predicate over
stored objects. Selector text is parsed once, up front, so a bad selector is a
``BadRequestError`` (400) quoting the expression before any data is read.
Immutable, safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubemirror import errors, selectors
from kubemirror.multicluster import status
from kubemirror.types import Obj

__all__ = ["ObjectFilter"]


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """Selects stored objects by cluster, namespace, labels and fields.

    ``clusters`` empty means every cluster; ``namespace`` ``""`` means every
    namespace. Build with ``ObjectFilter.build`` to parse selector text.
    """

    clusters: frozenset[str] = frozenset()
    namespace: str = ""
    label_selector: selectors.LabelSelector | None = None
    field_selector: selectors.FieldSelector | None = None

    @classmethod
    def build(
        cls,
        *,
        clusters: frozenset[str] | tuple[str, ...] = (),
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ObjectFilter:
        """Parse the selectors; raises ``BadRequestError`` quoting a bad selector."""
        try:
            label = selectors.LabelSelector.parse(label_selector)
        except errors.SelectorError as exc:
            raise status.bad_request(f"unable to parse labelSelector: {exc}") from exc
        try:
            fields = selectors.FieldSelector.parse(field_selector)
        except errors.SelectorError as exc:
            raise status.bad_request(f"unable to parse fieldSelector: {exc}") from exc
        return cls(
            frozenset(clusters),
            namespace or "",
            None if label.is_empty() else label,
            None if fields.is_empty() else fields,
        )

    @property
    def selects_everything_in_scope(self) -> bool:
        """True when only cluster and namespace restrict the selection."""
        return self.label_selector is None and self.field_selector is None

    def matches_object(self, obj: Obj) -> bool:
        """Whether ``obj`` passes the label and field selectors (scope not checked)."""
        if self.label_selector is not None:
            meta = obj.get("metadata")
            labels = meta.get("labels") if isinstance(meta, Mapping) else None
            if not self.label_selector.matches(labels):
                return False
        return self.field_selector is None or self.field_selector.matches(obj)

    def in_scope(self, cluster: str, namespace: str) -> bool:
        """Whether an object of ``cluster``/``namespace`` is inside the requested scope."""
        if self.clusters and cluster not in self.clusters:
            return False
        return not self.namespace or namespace == self.namespace
