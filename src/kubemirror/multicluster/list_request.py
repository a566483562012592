"""What a LIST or WATCH of the multi-cluster storage asks for, and its checks (multicluster layer).

A storage call takes the call's ``listing.ListOptions`` (the ``metav1.ListOptions``
every layer shares) and a ``ListScope``: the clusters and the namespace the
request addresses, which come from the URL path rather than the query.
``validate_list_options`` checks the resourceVersion and streaming parameters as
kube-apiserver's ``ValidateListOptions`` does; ``object_filter`` parses the
selectors of a scope and options into an ``ObjectFilter``. Pure functions and
immutable values, safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubemirror.listing import ListOptions
from kubemirror.multicluster import status
from kubemirror.multicluster.filters import ObjectFilter, field_spec
from kubemirror.multicluster.resources import ResourceInfo

__all__ = ["ListScope", "object_filter", "validate_list_options"]


@dataclass(frozen=True, slots=True)
class ListScope:
    """Where a LIST or WATCH of the storage looks: ``clusters`` (empty: every cluster)
    and ``namespace`` (``None``: every namespace, or a cluster-scoped type)."""

    clusters: tuple[str, ...] = ()
    namespace: str | None = None


def object_filter(
    scope: ListScope, opts: ListOptions, info: ResourceInfo | None = None
) -> ObjectFilter:
    """The parsed scope and selectors; raises ``BadRequestError`` for a bad selector (or,
    with the resource type's ``info``, a field selector the type does not support)."""
    return ObjectFilter.build(
        clusters=scope.clusters,
        namespace=scope.namespace,
        label_selector=opts.label_selector,
        field_selector=opts.field_selector,
        fields=field_spec(info.gvr.group, info.kind) if info is not None else None,
    )


def validate_list_options(opts: ListOptions, *, watch: bool) -> None:
    """Check the resourceVersion and streaming parameters of a LIST (``watch=False``) or
    WATCH as kube-apiserver's ``ValidateListOptions``; raises ``InvalidError`` (422,
    ``ListOptions``) listing every problem."""
    problems: list[status.FieldError] = []
    match = opts.resource_version_match
    if watch:
        if opts.send_initial_events is not None and match != "NotOlderThan":
            problems.append(
                status.FieldError(
                    "Forbidden",
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            )
        if match:
            if opts.send_initial_events is None:
                problems.append(
                    status.FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless "
                        "sendInitialEvents is provided",
                    )
                )
            if match != "NotOlderThan":
                problems.append(
                    status.FieldError(
                        "NotSupported",
                        "resourceVersionMatch",
                        'supported values: "NotOlderThan"',
                        match,
                    )
                )
    else:
        if match:
            if not opts.resource_version:
                problems.append(
                    status.FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    )
                )
            if opts.continue_token:
                problems.append(
                    status.FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden when continue is provided",
                    )
                )
            if match not in ("Exact", "NotOlderThan"):
                problems.append(
                    status.FieldError(
                        "NotSupported",
                        "resourceVersionMatch",
                        'supported values: "Exact", "NotOlderThan", ""',
                        match,
                    )
                )
            if match == "Exact" and opts.resource_version == "0":
                problems.append(
                    status.FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                )
        if opts.send_initial_events is not None:
            problems.append(
                status.FieldError(
                    "Forbidden", "sendInitialEvents", "sendInitialEvents is forbidden for list"
                )
            )
    if problems:
        raise status.invalid_fields("ListOptions", "", problems, "meta.k8s.io")
