"""Sans-I/O tests for kubemirror.client.transport (the HTTP round trips are in test_http.py)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.cache.raw_object import PartialDecoder
from kubemirror.client.transport import (
    LineSplitter,
    decode_list,
    error_from_response,
    map_transport_errors,
    parse_watch_line,
    resource_path,
)
from kubemirror.types import GroupVersionResource

PODS = GroupVersionResource("", "v1", "pods")
DEPLOYMENTS = GroupVersionResource("apps", "v1", "deployments")


@pytest.mark.parametrize(
    ("gvr", "namespace", "name", "path"),
    [
        (PODS, None, None, "/api/v1/pods"),
        (PODS, "", None, "/api/v1/pods"),
        (PODS, "web", None, "/api/v1/namespaces/web/pods"),
        (PODS, "web", "p1", "/api/v1/namespaces/web/pods/p1"),
        (DEPLOYMENTS, "web", None, "/apis/apps/v1/namespaces/web/deployments"),
        (GroupVersionResource("", "v1", "nodes"), None, "n1", "/api/v1/nodes/n1"),
    ],
    ids=["all-pods", "empty-ns", "ns-pods", "one-pod", "grouped", "cluster-scoped"],
)
def test_resource_path(
    gvr: GroupVersionResource, namespace: str | None, name: str | None, path: str
) -> None:
    assert resource_path(gvr, namespace, name) == path


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10))
def test_line_splitter_yields_the_same_lines_for_any_chunking(
    lines: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    splitter = LineSplitter()
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out.extend(bytes(line) for line in splitter.feed(data[pos:pos + step]))
        pos += step
        i += 1
    assert out == lines
    assert splitter.tail == b""


def test_parse_watch_line_accepts_memoryview_slices() -> None:
    chunk = b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"5"}}}\n{"type":"X"}\n'
    first, second = LineSplitter().feed(chunk)
    assert parse_watch_line(first)["object"]["metadata"]["resourceVersion"] == "5"
    with pytest.raises(errors.MalformedEventError, match="unknown event type") as caught:
        parse_watch_line(second)
    assert caught.value.line == b'{"type":"X"}'


def test_parse_watch_line_accepts_events() -> None:
    line = orjson.dumps({"type": "MODIFIED", "object": {"metadata": {"name": "a",
                                                                      "resourceVersion": "7"}}})
    event = parse_watch_line(line)
    assert event["type"] == "MODIFIED"
    assert event["object"]["metadata"]["resourceVersion"] == "7"
    status = parse_watch_line(b'{"type":"ERROR","object":{"kind":"Status","code":410}}')
    assert status["type"] == "ERROR"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"type":"MODIFIED","object":{"metadata"', "invalid JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"type":"RENAMED","object":{}}', "unknown event type"),
        (b'{"type":"ADDED"}', "no object"),
        (b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}', "resourceVersion"),
        (b'\x00\xff garbage', "invalid JSON"),
    ],
    ids=["truncated", "array", "bad-type", "no-object", "no-rv", "binary"],
)
def test_parse_watch_line_rejects_malformed_lines(line: bytes, reason: str) -> None:
    with pytest.raises(errors.MalformedEventError, match=reason) as info:
        parse_watch_line(line)
    assert info.value.line == line[:200]


@pytest.mark.parametrize(
    ("code", "body", "cls", "reason"),
    [
        (410, b'{"kind":"Status","code":410,"reason":"Expired","message":"too old"}',
         errors.GoneError, "Expired"),
        (404, b'{"kind":"Status","reason":"NotFound","message":"pods \\"x\\" not found"}',
         errors.NotFoundError, "NotFound"),
        (401, b"Unauthorized", errors.UnauthorizedError, "Unauthorized"),
        (500, b"<html>oops</html>", errors.ApiError, "Internal Server Error"),
        (422, b"", errors.InvalidError, "Unprocessable"),
    ],
    ids=["gone-status", "status-without-code", "plain-text", "html", "empty"],
)
def test_error_from_response_maps_status_bodies(
    code: int, body: bytes, cls: type[errors.ApiError], reason: str
) -> None:
    http_reasons = {410: "Gone", 404: "Not Found", 401: "Unauthorized",
                    500: "Internal Server Error", 422: "Unprocessable"}
    err = error_from_response(code, http_reasons[code], body)
    assert type(err) is cls
    assert err.code == code
    assert err.reason == reason




def test_decode_list_splits_the_page_and_puts_back_the_kind_lists_omit() -> None:
    pods = [{"metadata": {"name": f"p{i}", "namespace": "ns"}, "spec": {"x": [i, None]}}
            for i in range(3)]
    pods.append({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "own"}})
    body = orjson.dumps({"kind": "PodList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": "42", "continue": "tok",
                                      "remainingItemCount": 7}, "items": pods})
    result = decode_list(body, PODS)
    assert result.items == [{**p, "kind": "Pod", "apiVersion": "v1"} for p in pods]
    assert (result.resource_version, result.continue_token, result.remaining_item_count,
            result.kind) == ("42", "tok", 7, "Pod")


def test_decode_list_of_an_empty_collection_and_a_last_page() -> None:
    result = decode_list(b'{"kind":"PodList","metadata":{"resourceVersion":"9"},"items":null}',
                         PODS)
    assert (result.items, result.resource_version, result.continue_token) == ([], "9", "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"items": [{"metadata": {}}, 3]}', "item 1 is int, not an object"),
        (b'{"items": {"a": 1}}', "not a list object"),
        (b'{"items": [{"metadata": {}]}', "not a list object"),
        (b"<html>", "not a list object"),
        (b"[]", "not a list object"),
    ],
    ids=["item-not-object", "items-not-array", "truncated-item", "not-json", "array-body"],
)
def test_decode_list_rejects_bodies_that_are_not_lists_of_objects(
    body: bytes, message: str
) -> None:
    with pytest.raises(errors.TransportError, match=message):
        decode_list(body, PODS)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(st.dictionaries(st.text(), _json, max_size=5), max_size=6))
def test_decode_list_equals_decoding_the_whole_body(items: list[dict[str, object]]) -> None:
    body = orjson.dumps({"metadata": {"resourceVersion": "1"}, "items": items})
    assert decode_list(body, PODS).items == orjson.loads(body)["items"]


@pytest.mark.parametrize("list_api_version", ["v1", None],
                         ids=["list-has-apiVersion", "list-lacks-it"])
def test_compact_pages_and_decode_list_fill_in_the_same_kind_and_api_version(
    list_api_version: str | None,
) -> None:
    doc: dict[str, object] = {
        "kind": "PodList", "metadata": {"resourceVersion": "3"},
        "items": [{"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"x": 1}}],
    }
    if list_api_version:
        doc["apiVersion"] = list_api_version
    body = orjson.dumps(doc)
    dicts = decode_list(body, PODS).items
    raws = PartialDecoder().page(body, PODS.api_version).items
    assert [raw.decode() for raw in raws] == dicts
    assert [(raw["kind"], raw["apiVersion"]) for raw in raws] == [("Pod", "v1")]


@pytest.mark.parametrize(
    "failure",
    [ConnectionResetError("reset by peer"), TimeoutError(), aiohttp.ServerDisconnectedError()],
    ids=["socket", "timeout", "aiohttp"],
)
def test_map_transport_errors_wraps_connection_failures(failure: BaseException) -> None:
    with (
        pytest.raises(errors.TransportError, match=r"^GET /api/v1/pods: ") as caught,
        map_transport_errors("GET /api/v1/pods"),
    ):
        raise failure
    assert caught.value.__cause__ is failure


def test_map_transport_errors_lets_api_errors_through() -> None:
    gone = errors.GoneError({"code": 410, "reason": "Expired", "message": "too old"})
    with pytest.raises(errors.GoneError), map_transport_errors("LIST pods"):
        raise gone
