"""KubeApiServer validates writes and list options as kube-apiserver does (over real HTTP).

The same checks run against the genuine server in
``tests/real_apiserver/test_served_api.py``; these run without it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
import pytest

from kubemirror.multicluster import validation
from kubemirror.multicluster.resources import ResourceInfo
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, seed
from kubemirror.types import GroupVersionResource

from .conftest import wait_until

SUBDOMAIN = validation.dns1123_subdomain_errors("A")[0]
CM = "/api/v1/namespaces/default/configmaps"
MERGE = "application/merge-patch+json"


async def send(
    http: aiohttp.ClientSession,
    server: KubeApiServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with http.request(method, server.url + path, data=data,
                            headers={"Content-Type": content_type}) as resp:
        text = await resp.read()
        return resp.status, orjson.loads(text) if text else None


def cm(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta},
            "data": {"k": "v"}}


# -- names, labels, annotations ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["a/b", "..", ".", "A_b", "a%b", "-a", "a" * 254, "x/../y"])
async def test_invalid_names_are_422_and_nothing_is_stored(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession,
    name: str,
) -> None:
    code, body = await send(http, kube_api_server, "POST", CM, cm(name))
    assert (code, body["reason"]) == (422, "Invalid")
    first = body["details"]["causes"][0]
    assert first["field"] == "metadata.name"
    assert first["message"].startswith(f"Invalid value: {json.dumps(name)}: ")
    assert body["message"].startswith(f'ConfigMap "{name}" is invalid: metadata.name: ')
    assert kube_storage.resource_storage(GroupVersionResource("", "v1", "configmaps")).count() == 0


async def test_name_messages_are_kubernetes_own(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    _, body = await send(http, kube_api_server, "POST", CM, cm("a/b"))
    assert body["details"] == {"name": "a/b", "kind": "ConfigMap", "causes": [{
        "reason": "FieldValueInvalid", "field": "metadata.name",
        "message": f'Invalid value: "a/b": {SUBDOMAIN}'}]}
    assert SUBDOMAIN.startswith("a lowercase RFC 1123 subdomain must consist of")
    _, body = await send(http, kube_api_server, "POST", "/api/v1/namespaces",
                            {"metadata": {"name": "a.b"}})
    assert body["message"] == (
        'Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": must not contain dots')
    _, body = await send(http, kube_api_server, "POST", CM, {"metadata": {}})
    assert body["message"] == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required')
    _, body = await send(http, kube_api_server, "POST",
                            "/apis/apps/v1/namespaces/default/deployments",
                            {"metadata": {"name": "Bad"}})
    assert body["message"].startswith('Deployment.apps "Bad" is invalid: metadata.name: ')
    assert body["details"]["group"] == "apps"


async def test_namespace_of_the_request_is_validated(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    code, body = await send(http, kube_api_server, "POST",
                            "/api/v1/namespaces/Bad_NS/configmaps", cm("x"))
    assert (code, body["details"]["causes"][0]["field"]) == (422, "metadata.namespace")
    code, body = await send(http, kube_api_server, "POST", "/api/v1/configmaps", cm("x"))
    assert (code, body["details"]["causes"][0]) == (422, {
        "reason": "FieldValueRequired", "field": "metadata.namespace",
        "message": "Required value"})


async def test_generate_name(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    code, body = await send(http, kube_api_server, "POST", CM, {"metadata": {"generateName": 5}})
    assert (code, body["message"]) == (400, 'ConfigMap in version "v1" cannot be handled as a '
                                       "ConfigMap: json: cannot unmarshal number into Go struct "
                                       "field ObjectMeta.metadata.generateName of type string")
    code, body = await send(http, kube_api_server, "POST", CM,
                            {"metadata": {"generateName": "Bad_"}})
    assert [c["field"] for c in body["details"]["causes"]] == [
        "metadata.generateName", "metadata.name"]
    code, body = await send(http, kube_api_server, "POST", CM,
                            {"metadata": {"generateName": "x" * 100 + "-"}})
    assert code == 201
    assert len(body["metadata"]["name"]) == 63


async def test_labels_and_annotations(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    code, body = await send(http, kube_api_server, "POST", CM, cm("x", labels={
        "/b": "v", "ok": "bad value", "k": "x" * 64, "example.com/fine": "v.1_2-3"}))
    assert code == 422
    assert body["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "metadata.labels",
         "message": 'Invalid value: "/b": prefix part must be non-empty'},
        {"reason": "FieldValueInvalid", "field": "metadata.labels",
         "message": f'Invalid value: "{"x" * 64}": must be no more than 63 bytes'},
        {"reason": "FieldValueInvalid", "field": "metadata.labels",
         "message": 'Invalid value: "bad value": '
         + validation.label_value_errors("bad value")[0]},
    ]
    code, body = await send(http, kube_api_server, "POST", CM, cm("x", labels={"a": 5}))
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"].endswith(
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type "
        "string")
    code, body = await send(http, kube_api_server, "POST", CM,
                            cm("x", annotations={"k": "v" * (256 * 1024)}))
    assert (code, body["details"]["causes"]) == (422, [{
        "reason": "FieldValueTooLong", "field": "metadata.annotations",
        "message": "Too long: may not be more than 262144 bytes"}])
    code, body = await send(http, kube_api_server, "POST", CM,
                            cm("x", annotations={"k": "v" * 1000, "example.com/a": ""}))
    assert code == 201
    # updates are validated too
    code, body = await send(http, kube_api_server, "PATCH", f"{CM}/x",
                            {"metadata": {"labels": {"-": "x"}}}, content_type=MERGE)
    assert (code, body["reason"]) == (422, "Invalid")


async def test_runtime_registered_types_only_need_path_safe_names(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    kube_api_server.register_resource(ResourceInfo(
        GroupVersionResource("rbac.example", "v1", "roles"), kind="Role"))
    base = "/apis/rbac.example/v1/namespaces/default/roles"
    assert (await send(http, kube_api_server, "POST", base,
                       {"metadata": {"name": "system:Controller"}}))[0] == 201
    for name, detail in (("a/b", "may not contain '/'"), ("a%b", "may not contain '%'"),
                         ("..", "may not be '..'")):
        code, body = await send(http, kube_api_server, "POST", base, {"metadata": {"name": name}})
        assert (code, body["details"]["causes"][0]["message"]) == (
            422, f"Invalid value: {json.dumps(name)}: {detail}")


# -- bodies the decoder rejects: 400, never 500 -----------------------------------------------


@pytest.mark.parametrize(("raw", "content_type", "message"), [
    (b"[]", "application/json", "json: cannot unmarshal array into Go value of type struct"),
    (b"not json", "application/json", "invalid character 'o' in literal null (expecting 'u')"),
    (b"nice", "application/json", "invalid character 'i' in literal null (expecting 'u')"),
    (b"tr", "application/json", "unexpected end of JSON input"),
    (b"@", "application/json", "invalid character '@' looking for beginning of value"),
    (b"{bad", "application/json", "invalid character 'b'"),
    (b"", "application/json", "unexpected end of JSON input"),
    (b"- a\n- b\n", "application/yaml", "json: cannot unmarshal array"),
    (b"a: [1,\n", "application/yaml", "error converting YAML to JSON"),
    (b"metadata: {name: x}\ndata: !!set {a, b}\n", "application/yaml", "has no JSON form"),
    (b"metadata: {name: x}\ndata: {k: .nan}\n", "application/yaml", "not finite"),
    (b'{"metadata": {"name": "x"}, "data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     "application/json", "json parse error"),
])
async def test_bodies_that_are_not_objects_are_400(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession, raw: bytes, content_type: str,
    message: str,
) -> None:
    code, body = await send(http, kube_api_server, "POST", CM, raw=raw,
                            content_type=content_type)
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert body["message"].startswith(
        "the object provided is unrecognized (must be of type ConfigMap): couldn't get "
        "version/kind; json parse error: ")
    assert message in body["message"]


@pytest.mark.parametrize(("obj", "message"), [
    ({"apiVersion": "v1", "kind": "Pod"}, 'Pod in version "v1" cannot be handled as a ConfigMap: '
     "converting (v1.Pod) to (core.ConfigMap): unknown conversion"),
    ({"apiVersion": "apps/v1"}, 'ConfigMap in version "v1" cannot be handled as a ConfigMap: no '
     'kind "ConfigMap" is registered for version "apps/v1" in scheme '
     '"pkg/runtime/scheme.go:111"'),
    ({"apiVersion": "v2"}, "the API version in the data (v2) does not match the expected API "
     "version (v1)"),
    ({"apiVersion": 5}, "the object provided is unrecognized (must be of type ConfigMap): "
     "couldn't get version/kind; json parse error: json: cannot unmarshal number into Go struct "
     "field .apiVersion of type string"),
    ({"metadata": "x"}, 'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: '
     "cannot unmarshal string into Go struct field ConfigMap.metadata of type v1.ObjectMeta"),
])
async def test_wrong_type_or_metadata_is_400(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession, obj: dict[str, Any],
    message: str,
) -> None:
    code, body = await send(http, kube_api_server, "POST", CM, {"metadata": {"name": "x"}, **obj})
    assert (code, body["reason"], body["message"]) == (400, "BadRequest", message)


async def test_crd_with_bad_versions_is_400_and_registers_nothing(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    crd: dict[str, Any] = {"metadata": {"name": "widgets.ex.com"}, "spec": {
        "group": "ex.com", "scope": "Namespaced", "versions": "v1",
        "names": {"plural": "widgets", "kind": "Widget"}}}
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for versions in ("v1", ["v1"], [{"name": 5}], [{"name": "v1", "served": "yes"}]):
        crd["spec"]["versions"] = versions
        code, body = await send(http, kube_api_server, "POST", path, crd)
        assert (code, body["reason"]) == (400, "BadRequest"), body
    crd["spec"]["versions"] = [{"name": "v1/x", "served": True}]
    code, body = await send(http, kube_api_server, "POST", path, crd)
    assert (code, body["details"]["causes"][0]["field"]) == (422, "spec.versions[0].name")
    code, body = await send(http, kube_api_server, "POST", path, {**crd, "spec": "x"})
    assert (code, body["reason"]) == (400, "BadRequest")
    assert not any(rs.gvr.group == "ex.com" for rs in kube_storage.resource_storages())


async def test_delete_options_are_checked(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    (stored,) = seed(kube_storage, [cm("x", namespace="default")])
    for options, message in (
        ({"preconditions": "x"}, "json: cannot unmarshal string into Go struct field "
         "DeleteOptions.preconditions of type v1.Preconditions"),
        ({"preconditions": {"uid": 5}}, "json: cannot unmarshal number into Go struct field "
         "Preconditions.preconditions.uid of type types.UID"),
        ({"gracePeriodSeconds": "soon"}, "json: cannot unmarshal string into Go struct field "
         "DeleteOptions.gracePeriodSeconds of type int64"),
        ({"dryRun": "All"}, "json: cannot unmarshal string into Go struct field "
         "DeleteOptions.dryRun of type []string"),
    ):
        code, body = await send(http, kube_api_server, "DELETE", f"{CM}/x", options)
        assert (code, body["reason"], body["message"]) == (400, "BadRequest", message)
    code, body = await send(http, kube_api_server, "DELETE", f"{CM}/x", raw=b"garbage")
    assert (code, body["message"]) == (
        400, "couldn't get version/kind; json parse error: invalid character 'g' looking for "
        "beginning of value")
    code, body = await send(http, kube_api_server, "DELETE", f"{CM}/x",
                            {"preconditions": {"uid": "nope"}})
    assert (code, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on ConfigMap "x": the UID in the precondition (nope) does '
        f"not match the UID in record ({stored['metadata'].get('uid', '')}). The object might "
        "have been deleted and then recreated")
    code, body = await send(http, kube_api_server, "DELETE", f"{CM}/x",
                            {"preconditions": {"resourceVersion": "p.1.1"}})
    assert (code, body["reason"]) == (409, "Conflict")
    code, _ = await send(http, kube_api_server, "DELETE", f"{CM}/x", {"dryRun": ["All"]})
    assert code == 200
    assert (await send(http, kube_api_server, "GET", f"{CM}/x"))[0] == 200
    code, _ = await send(http, kube_api_server, "DELETE", f"{CM}/x", {"preconditions": {
        "resourceVersion": stored["metadata"]["resourceVersion"]}})
    assert code == 200
    assert (await send(http, kube_api_server, "GET", f"{CM}/x"))[0] == 404


async def test_dry_run(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    before = kube_storage.index
    code, body = await send(http, kube_api_server, "POST", f"{CM}?dryRun=All", cm("d"))
    assert (code, body["metadata"]["name"]) == (201, "d")
    code, body = await send(http, kube_api_server, "POST", f"{CM}?dryRun=All", cm("D"))
    assert code == 422
    code, body = await send(http, kube_api_server, "POST", f"{CM}?dryRun=Some", cm("d"))
    assert (code, body["message"]) == (422, 'CreateOptions.meta.k8s.io "" is invalid: dryRun: '
                                       'Unsupported value: ["Some"]: supported values: "All"')
    code, body = await send(http, kube_api_server, "PATCH", f"{CM}/d?dryRun=x", {},
                            content_type=MERGE)
    assert body["details"]["kind"] == "PatchOptions"
    assert kube_storage.index == before, "nothing was written"
    (stored,) = seed(kube_storage, [cm("e", namespace="default")])
    code, body = await send(http, kube_api_server, "PUT", f"{CM}/e?dryRun=All",
                            {**stored, "data": {"k": "2"}})
    assert (code, body["data"]) == (200, {"k": "2"})
    code, body = await send(http, kube_api_server, "POST", f"{CM}?dryRun=All", cm("e"))
    assert (code, body["reason"]) == (409, "AlreadyExists")
    code, now = await send(http, kube_api_server, "GET", f"{CM}/e")
    assert now == stored


async def test_crash_inputs_never_500(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod("p")])
    pods = "/api/v1/namespaces/default/pods"
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", pods, {"metadata": None}, "application/json"),
        ("POST", pods, None, "application/json"),
        ("PUT", f"{pods}/p", [1], "application/json"),
        ("PATCH", f"{pods}/p", [1], MERGE),
        ("PATCH", f"{pods}/p", {"op": "add"}, "application/json-patch+json"),
        ("PATCH", f"{pods}/p", [{"op": "replace", "path": "/metadata", "value": 5}],
         "application/json-patch+json"),
        ("PATCH", f"{pods}/p", {"metadata": {"finalizers": "x"}}, MERGE),
        ("PATCH", f"{pods}/p", {"metadata": {"generation": "x"}}, MERGE),
        ("PUT", f"{pods}/p", {"metadata": {"name": "p", "ownerReferences": {}}},
         "application/json"),
        ("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
         {"metadata": {"name": "a.b"}, "spec": {"names": [], "group": 1}}, "application/json"),
    ]
    for method, path, body, content_type in cases:
        code, answer = await send(http, kube_api_server, method, path,
                                  raw=orjson.dumps(body), content_type=content_type)
        assert 400 <= code < 500, (method, path, body, answer)
        assert answer["kind"] == "Status"


# -- status subresource -----------------------------------------------------------------------


async def test_status_subresource(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod("p", node="n1", phase="Pending")])
    base = "/api/v1/namespaces/default/pods/p"
    code, body = await send(http, kube_api_server, "PATCH", f"{base}/status", {
        "spec": {"nodeName": "n2"}, "status": {"phase": "Running"},
        "metadata": {"labels": {"x": "y"}}}, content_type=MERGE)
    assert code == 200, body
    assert (body["spec"]["nodeName"], body["status"]["phase"]) == ("n1", "Running")
    assert "x" not in (body["metadata"].get("labels") or {})
    code, body = await send(http, kube_api_server, "PATCH", base, {
        "spec": {"nodeName": "n3"}, "status": {"phase": "Failed"}}, content_type=MERGE)
    assert (body["spec"]["nodeName"], body["status"]["phase"]) == ("n3", "Running")
    code, body = await send(http, kube_api_server, "PUT", base, {**body, "status": {}})
    assert body["status"]["phase"] == "Running"
    code, body = await send(http, kube_api_server, "PUT", f"{base}/status",
                            {**body, "spec": {}, "status": {"phase": "Succeeded"}})
    assert (body["spec"]["nodeName"], body["status"]["phase"]) == ("n3", "Succeeded")
    seed(kube_storage, [cm("c", namespace="default")])
    code, body = await send(http, kube_api_server, "GET", f"{CM}/c/status")
    assert (code, body["message"]) == (404, "the server could not find the requested resource")


async def test_crd_status_subresource(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession
) -> None:
    crd = {"metadata": {"name": "widgets.ex.com"}, "spec": {
        "group": "ex.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "subresources": {"status": {}}},
                     {"name": "v2", "served": True, "storage": False}]}}
    code, body = await send(http, kube_api_server, "POST",
                            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert code == 201, body
    v1 = "/apis/ex.com/v1/namespaces/default/widgets"
    code, body = await send(http, kube_api_server, "POST", v1,
                            {"metadata": {"name": "w"}, "spec": {"a": 1}})
    assert code == 201
    code, body = await send(http, kube_api_server, "PATCH", f"{v1}/w/status",
                            {"spec": {"a": 2}, "status": {"ok": True}}, content_type=MERGE)
    assert (body["spec"], body["status"]) == ({"a": 1}, {"ok": True})
    code, body = await send(http, kube_api_server, "GET",
                            "/apis/ex.com/v2/namespaces/default/widgets/w/status")
    assert code == 404


# -- list options -----------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "message"), [
    ("resourceVersionMatch=Exact", "resourceVersionMatch: Forbidden: resourceVersionMatch is "
     "forbidden unless resourceVersion is provided"),
    ("resourceVersion=0&resourceVersionMatch=Exact", 'resourceVersionMatch: Forbidden: '
     'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("resourceVersion=0&resourceVersionMatch=Bogus", 'resourceVersionMatch: Unsupported value: '
     '"Bogus": supported values: "Exact", "NotOlderThan", ""'),
    ("sendInitialEvents=true", "sendInitialEvents: Forbidden: sendInitialEvents is forbidden "
     "for list"),
    ("watch=1&resourceVersionMatch=NotOlderThan", "resourceVersionMatch: Forbidden: "
     "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
    ("watch=1&sendInitialEvents=true", "resourceVersionMatch: Forbidden: sendInitialEvents "
     "requires setting resourceVersionMatch to NotOlderThan"),
])
async def test_list_options_are_422(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession, query: str, message: str
) -> None:
    code, body = await send(http, kube_api_server, "GET", f"{CM}?{query}")
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'
    assert body["details"]["kind"] == "ListOptions"


@pytest.mark.parametrize(("path", "selector", "message"), [
    ("/api/v1/configmaps", "spec.bogus", '"spec.bogus" is not a known field selector: only '
     '"metadata.name", "metadata.namespace"'),
    ("/api/v1/pods", "spec.bogus", "field label not supported: spec.bogus"),
    ("/api/v1/nodes", "metadata.namespace", "field label not supported: metadata.namespace"),
    ("/api/v1/pods?watch=1", "spec.bogus", "field label not supported: spec.bogus"),
])
async def test_unsupported_field_selectors_are_400(
    kube_api_server: KubeApiServer, http: aiohttp.ClientSession, path: str, selector: str,
    message: str,
) -> None:
    sep = "&" if "?" in path else "?"
    code, body = await send(http, kube_api_server, "GET", f"{path}{sep}fieldSelector={selector}=x")
    assert (code, body["reason"], body["message"]) == (400, "BadRequest", message)


async def test_field_selectors_with_api_server_defaults(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    seed(kube_storage, [make_pod("a", node="n1", phase="Pending"), make_pod("b", phase="Running")])
    seed(kube_storage, [{"apiVersion": "v1", "kind": "Event", "metadata": {
        "name": "e", "namespace": "default"}, "source": {"component": "kubelet"},
        "involvedObject": {"kind": "Pod", "name": "a"}, "type": "Normal"}])
    seed(kube_storage, [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}])

    async def names(path: str) -> list[str]:
        code, body = await send(http, kube_api_server, "GET", path)
        assert code == 200, body
        return [o["metadata"]["name"] for o in body["items"]]

    assert await names("/api/v1/pods?fieldSelector=spec.host%3Dn1") == ["a"]
    assert await names("/api/v1/pods?fieldSelector=spec.hostNetwork%3Dfalse") == ["a", "b"]
    assert await names("/api/v1/pods?fieldSelector=status.phase%3DRunning") == ["b"]
    assert await names("/api/v1/events?fieldSelector=source%3Dkubelet,"
                       "involvedObject.name%3Da") == ["e"]
    assert await names("/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse") == ["n1"]


async def test_future_resource_version_waits_then_times_out(
    kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    async with KubeApiServer(kube_storage, resource_version_wait=0.2) as server:
        future = f"{kube_storage.prefix}.{kube_storage.index + 5}"
        code, body = await send(http, server, "GET", f"{CM}?resourceVersion={future}"
                                "&resourceVersionMatch=NotOlderThan")
        assert (code, body["reason"]) == (504, "Timeout")
        assert body["message"] == (f"Timeout: Too large resource version: {future}, current: "
                                   f"{kube_storage.resource_version}")
        assert body["details"] == {"causes": [{"reason": "ResourceVersionTooLarge",
                                               "message": "Too large resource version"}],
                                   "retryAfterSeconds": 1}
    async with KubeApiServer(kube_storage, resource_version_wait=30) as server:
        future = f"{kube_storage.prefix}.{kube_storage.index + 1}"
        request = asyncio.ensure_future(send(
            http, server, "GET", f"/api/v1/pods?resourceVersion={future}"
            "&resourceVersionMatch=NotOlderThan"))
        runner = server._runner
        assert runner is not None
        assert runner.server is not None
        http_server = runner.server
        await wait_until(lambda: bool(http_server.connections))  # the request reached it
        seed(kube_storage, [make_pod("arrives")])
        code, body = await request
        assert code == 200
        assert [o["metadata"]["name"] for o in body["items"]] == ["arrives"]


async def test_streaming_watch_without_bookmarks_and_leaving_a_selection(
    kube_api_server: KubeApiServer, kube_storage: MemoryStorage, http: aiohttp.ClientSession
) -> None:
    (a,) = seed(kube_storage, [make_pod("a", labels={"app": "x"})])
    url = (f"{kube_api_server.url}/api/v1/pods?watch=1&sendInitialEvents=true"
           "&resourceVersionMatch=NotOlderThan&labelSelector=app%3Dx&timeoutSeconds=5")
    async with http.get(url) as resp:
        assert resp.status == 200
        first = orjson.loads(await resp.content.readline())
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
        moved = kube_storage.resource_storage(PODS).update(
            "default", {**a, "metadata": {**a["metadata"], "labels": {"app": "y"}}})
        left = orjson.loads(await resp.content.readline())
    assert left["type"] == "DELETED"
    assert left["object"]["metadata"]["labels"] == {"app": "x"}
    assert left["object"]["metadata"]["resourceVersion"] == moved["metadata"]["resourceVersion"]
