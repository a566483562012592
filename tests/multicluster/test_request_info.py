"""Sans-I/O request parsing: URL paths, list/watch query parameters, Accept headers."""

from __future__ import annotations

import pytest

from kubemirror import errors
from kubemirror.multicluster.request_info import (
    RequestInfo,
    accepts_table,
    parse_list_query,
    parse_request_path,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", RequestInfo("root", "/")),
        ("/version", RequestInfo("other", "/version")),
        ("/api", RequestInfo("discovery", "/api")),
        ("/api/v1", RequestInfo("discovery", "/api/v1", version="v1")),
        ("/apis", RequestInfo("discovery", "/apis", core=False)),
        ("/apis/apps", RequestInfo("discovery", "/apis/apps", group="apps", core=False)),
        (
            "/apis/apps/v1/",
            RequestInfo("discovery", "/apis/apps/v1", group="apps", version="v1", core=False),
        ),
        ("/api/v1/pods", RequestInfo("resource", "/api/v1/pods", version="v1", resource="pods")),
        (
            "/api/v1/namespaces/ns/pods/p",
            RequestInfo(
                "resource",
                "/api/v1/namespaces/ns/pods/p",
                version="v1",
                namespace="ns",
                resource="pods",
                name="p",
            ),
        ),
        (
            "/api/v1/namespaces/ns",
            RequestInfo(
                "resource", "/api/v1/namespaces/ns", version="v1", resource="namespaces", name="ns"
            ),
        ),
        (
            "/api/v1/namespaces/ns/pods/p/status",
            RequestInfo(
                "resource",
                "/api/v1/namespaces/ns/pods/p/status",
                version="v1",
                namespace="ns",
                resource="pods",
                name="p",
                subresource="status",
            ),
        ),
        (
            "/api/v1/watch/namespaces/ns/pods",
            RequestInfo(
                "resource",
                "/api/v1/watch/namespaces/ns/pods",
                version="v1",
                namespace="ns",
                resource="pods",
                watch_path=True,
            ),
        ),
        (
            "/clusters/east/apis/apps/v1/deployments",
            RequestInfo(
                "resource",
                "/apis/apps/v1/deployments",
                cluster="east",
                group="apps",
                version="v1",
                resource="deployments",
                core=False,
            ),
        ),
        ("/clusters/east/api", RequestInfo("discovery", "/api", cluster="east")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_parse_request_path(path: str, expected: RequestInfo) -> None:
    assert parse_request_path(path) == expected


def test_parse_list_query() -> None:
    query = parse_list_query(
        {
            "labelSelector": "app=web",
            "fieldSelector": "metadata.name=x",
            "limit": "50",
            "continue": "tok",
            "resourceVersion": "p.5",
            "resourceVersionMatch": "NotOlderThan",
            "watch": "true",
            "allowWatchBookmarks": "1",
            "sendInitialEvents": "false",
            "timeoutSeconds": "30",
        },
        namespace="ns",
        clusters=("east",),
    )
    opts = query.options
    assert query.watch
    assert query.timeout_seconds == 30
    assert (query.scope.namespace, query.scope.clusters, opts.limit) == ("ns", ("east",), 50)
    assert (opts.label_selector, opts.field_selector) == ("app=web", "metadata.name=x")
    assert (opts.continue_token, opts.resource_version) == ("tok", "p.5")
    assert opts.allow_watch_bookmarks
    assert opts.send_initial_events is False
    assert parse_list_query({}, watch_path=True).watch
    assert parse_list_query({}).options.send_initial_events is None


@pytest.mark.parametrize(
    "query",
    [{"limit": "ten"}, {"limit": "-1"}, {"watch": "maybe"}, {"timeoutSeconds": "1.5"}],
    ids=["limit-word", "limit-negative", "watch-word", "timeout-float"],
)
def test_bad_query_parameters(query: dict[str, str]) -> None:
    with pytest.raises(errors.BadRequestError) as info:
        parse_list_query(query)
    assert next(iter(query)) in str(info.value)


@pytest.mark.parametrize(
    ("accept", "table"),
    [
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", True),
        ("application/json", False),
        ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io", False),
        ("", False),
    ],
    ids=["kubectl", "json", "json-first", "empty"],
)
def test_accepts_table(accept: str, table: bool) -> None:
    assert accepts_table(accept) is table
