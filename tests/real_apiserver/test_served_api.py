"""What the API answers to bad input, on the genuine kube-apiserver and on kubemirror's own.

Every test runs against both servers (the ``api`` fixture) and checks the same status
code, reason and message: object names, labels and annotations (422 Invalid with the
same ``details.causes``), bodies the typed decoder rejects (400), wrong
apiVersion/kind, write content types (415), DeleteOptions preconditions (409),
``dryRun``, the ``status`` subresource and unsupported field selectors. Where
kubemirror's message differs on purpose, the test says so and compares what is
shared.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.real_apiserver.conftest import ServerUnderTest, configmap, deployment

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
UNKNOWN_FORMAT = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json, application/yaml"
)


async def send(
    api: ServerUnderTest,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str | None = "application/json",
) -> tuple[int, Any]:
    """One request with exactly the given body and content type; (status, decoded body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": content_type} if content_type else {}
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session, \
            session.request(method, api.config.server + path, data=data, headers=headers,
                            ssl=api.config.ssl_context or False) as resp:
        text = await resp.read()
        return resp.status, json.loads(text) if text else None


def cm_path(api: ServerUnderTest, name: str = "") -> str:
    base = f"/api/v1/namespaces/{api.namespace}/configmaps"
    return f"{base}/{name}" if name else base


def status_of(code: int, body: Any) -> tuple[int, str, str]:
    return code, body["reason"], body["message"]


def invalid(kind: str, name: str, field: str, detail: str) -> str:
    return f'{kind} "{name}" is invalid: {field}: {detail}'


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a/b", "..", ".", "A_b", "a%b", "-a", "a" * 254])
async def test_invalid_object_names_are_422(api: ServerUnderTest, name: str) -> None:
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"name": name}})
    details = ["must be no more than 253 characters"] if len(name) > 253 else [SUBDOMAIN_MSG]
    causes = [{"reason": "FieldValueInvalid", "field": "metadata.name",
               "message": f"Invalid value: {json.dumps(name)}: {d}"} for d in details]
    assert status_of(code, body) == (422, "Invalid", invalid(
        "ConfigMap", name, "metadata.name", causes[0]["message"]))
    assert body["details"] == {"name": name, "kind": "ConfigMap", "causes": causes}
    code, _ = await send(api, "GET", cm_path(api))
    assert code == 200


async def test_a_slash_in_a_name_can_never_create_an_object(api: ServerUnderTest) -> None:
    code, body = await send(api, "POST", f"/api/v1/namespaces/{api.namespace}/pods",
                            {"metadata": {"name": "x/../../y"}, "spec": {"containers": [
                                {"name": "a", "image": "i"}]}})
    assert (code, body["reason"]) == (422, "Invalid")
    code, listed = await send(api, "GET", f"/api/v1/namespaces/{api.namespace}/pods")
    assert listed["items"] == []


async def test_missing_name_is_required(api: ServerUnderTest) -> None:
    bodies: list[dict[str, Any]] = [{"metadata": {}}, {}, {"metadata": {"name": ""}}]
    for body in bodies:
        code, answer = await send(api, "POST", cm_path(api), body)
        assert status_of(code, answer) == (422, "Invalid", invalid(
            "ConfigMap", "", "metadata.name",
            "Required value: name or generateName is required"))
        assert answer["details"] == {"kind": "ConfigMap", "causes": [{
            "reason": "FieldValueRequired", "field": "metadata.name",
            "message": "Required value: name or generateName is required"}]}


@pytest.mark.parametrize(("name", "detail"), [
    ("a.b", "must not contain dots"), ("Ab", LABEL_MSG), ("a_b.c", LABEL_MSG)])
async def test_namespace_and_service_names_are_dns_labels(
    api: ServerUnderTest, name: str, detail: str
) -> None:
    code, body = await send(api, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    message = f"Invalid value: {json.dumps(name)}: {detail}"
    assert status_of(code, body) == (422, "Invalid", invalid(
        "Namespace", name, "metadata.name", message))
    service = {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}
    code, body = await send(api, "POST", f"/api/v1/namespaces/{api.namespace}/services", service)
    assert status_of(code, body) == (422, "Invalid", invalid(
        "Service", name, "metadata.name", message))


async def test_generate_name_is_validated(api: ServerUnderTest) -> None:
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"generateName": "Bad_"}})
    assert (code, body["reason"]) == (422, "Invalid")
    causes = body["details"]["causes"]
    assert causes[0] == {"reason": "FieldValueInvalid", "field": "metadata.generateName",
                         "message": f'Invalid value: "Bad_": {SUBDOMAIN_MSG}'}
    assert [c["field"] for c in causes] == ["metadata.generateName", "metadata.name"]
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"generateName": "x" * 300}})
    assert (code, body["details"]["causes"][0]["field"]) == (422, "metadata.generateName")
    assert len(body["details"]["name"]) == 63
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"generateName": "ok-"}})
    assert code == 201
    assert body["metadata"]["name"].startswith("ok-")


# -- labels and annotations -------------------------------------------------------------------


async def test_invalid_labels_are_422_with_every_cause(api: ServerUnderTest) -> None:
    labels = {"a/b/c": "x", "-a": "y", "ok": "bad value", "k": "x" * 64, "Example.COM/x": "v",
              "example.com/": "v", "/b": "v", "a" * 64: "v"}
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"name": "l",
                                                                      "labels": labels}})
    assert (code, body["reason"]) == (422, "Invalid")
    causes = body["details"]["causes"]
    assert {c["field"] for c in causes} == {"metadata.labels"}
    messages = sorted(c["message"] for c in causes)
    assert len(messages) == 9
    assert 'Invalid value: "/b": prefix part must be non-empty' in messages
    assert f'Invalid value: "{"a" * 64}": name part must be no more than 63 bytes' in messages
    assert f'Invalid value: "{"x" * 64}": must be no more than 63 bytes' in messages
    assert 'Invalid value: "example.com/": name part must be non-empty' in messages
    assert any(m.startswith('Invalid value: "bad value": a valid label must be an empty string')
               for m in messages)
    assert any(m.startswith('Invalid value: "a/b/c": a valid label key must consist')
               for m in messages)
    assert any(m.startswith('Invalid value: "Example.COM/x": prefix part a lowercase RFC 1123')
               for m in messages)


async def test_annotations_keys_and_total_size(api: ServerUnderTest) -> None:
    big = {"ok": "y" * (256 * 1024)}
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"name": "a",
                                                                      "annotations": big}})
    assert status_of(code, body) == (422, "Invalid", invalid(
        "ConfigMap", "a", "metadata.annotations", "Too long: may not be more than 262144 bytes"))
    assert body["details"]["causes"] == [{"reason": "FieldValueTooLong",
                                          "field": "metadata.annotations",
                                          "message": "Too long: may not be more than 262144 bytes"}]
    code, body = await send(api, "POST", cm_path(api), {"metadata": {
        "name": "b", "annotations": {"a/b/c": "x"}}})
    assert (code, body["details"]["causes"][0]["field"]) == (422, "metadata.annotations")


# -- the typed decoder: 400 -------------------------------------------------------------------


@pytest.mark.parametrize(("meta", "detail"), [
    ({"generateName": 5}, "json: cannot unmarshal number into Go struct field "
     "ObjectMeta.metadata.generateName of type string"),
    ({"name": 5}, "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name "
     "of type string"),
    ({"name": "x", "labels": {"a": 5}}, "json: cannot unmarshal number into Go struct field "
     "ObjectMeta.metadata.labels of type string"),
    ({"name": "x", "labels": {"a": True}}, "json: cannot unmarshal bool into Go struct field "
     "ObjectMeta.metadata.labels of type string"),
    ({"name": "x", "labels": "x"}, "json: cannot unmarshal string into Go struct field "
     "ObjectMeta.metadata.labels of type map[string]string"),
    ({"name": "x", "annotations": {"a": 5}}, "json: cannot unmarshal number into Go struct "
     "field ObjectMeta.metadata.annotations of type string"),
    ({"name": "x", "namespace": 5}, "json: cannot unmarshal number into Go struct field "
     "ObjectMeta.metadata.namespace of type string"),
    ("x", "json: cannot unmarshal string into Go struct field ConfigMap.metadata of type "
     "v1.ObjectMeta"),
], ids=["generateName", "name", "label-number", "label-bool", "labels-string", "annotation",
        "namespace", "metadata-string"])
async def test_mistyped_metadata_is_a_bad_request(
    api: ServerUnderTest, meta: Any, detail: str
) -> None:
    code, body = await send(api, "POST", cm_path(api), {"metadata": meta})
    assert status_of(code, body) == (400, "BadRequest", 'ConfigMap in version "v1" cannot be '
                                     f"handled as a ConfigMap: {detail}")


@pytest.mark.parametrize(("raw", "shown"), [
    (b"[]", "json: cannot unmarshal array into Go value of type struct { APIVersion string "
     '"json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'),
    (b"not json", ""), (b"{bad", ""), (b'"text"', "json: cannot unmarshal string into Go value"),
])
async def test_bodies_that_are_not_objects(api: ServerUnderTest, raw: bytes, shown: str) -> None:
    code, body = await send(api, "POST", cm_path(api), raw=raw)
    assert (code, body["reason"]) == (400, "BadRequest")
    head = ("the object provided is unrecognized (must be of type ConfigMap): couldn't get "
            "version/kind; json parse error: ")
    assert body["message"].startswith(head + shown), body["message"]


@pytest.mark.parametrize(("path", "obj", "message"), [
    ("deployments", {"apiVersion": "apps/v1beta1", "kind": "Deployment"},
     "the API version in the data (apps/v1beta1) does not match the expected API version "
     "(apps/v1)"),
    ("deployments", {"apiVersion": "apps/v1", "kind": "ReplicaSet"},
     'ReplicaSet in version "v1" cannot be handled as a Deployment: converting (v1.ReplicaSet) '
     "to (apps.Deployment): unknown conversion"),
    ("deployments", {"apiVersion": "v1", "kind": "Deployment"},
     'Deployment in version "v1" cannot be handled as a Deployment: no kind "Deployment" is '
     'registered for version "v1" in scheme "pkg/runtime/scheme.go:111"'),
    ("configmaps", {"apiVersion": "v1", "kind": "Pod"},
     'Pod in version "v1" cannot be handled as a ConfigMap: converting (v1.Pod) to '
     "(core.ConfigMap): unknown conversion"),
    ("configmaps", {"apiVersion": "bogus/v9", "kind": "ConfigMap"},
     'ConfigMap in version "v9" cannot be handled as a ConfigMap: no kind "ConfigMap" is '
     'registered for version "bogus/v9" in scheme "pkg/runtime/scheme.go:111"'),
])
async def test_wrong_api_version_or_kind_for_the_endpoint(
    api: ServerUnderTest, path: str, obj: dict[str, Any], message: str
) -> None:
    prefix = "/apis/apps/v1" if path == "deployments" else "/api/v1"
    code, body = await send(api, "POST", f"{prefix}/namespaces/{api.namespace}/{path}",
                            {**obj, "metadata": {"name": "x"}})
    assert status_of(code, body) == (400, "BadRequest", message)


async def test_namespace_and_name_must_match_the_request(api: ServerUnderTest) -> None:
    mismatch = ("the namespace of the provided object does not match the namespace sent on the "
                "request")
    code, body = await send(api, "POST", cm_path(api), {"metadata": {"name": "x",
                                                                      "namespace": "elsewhere"}})
    assert status_of(code, body) == (400, "BadRequest", mismatch)
    assert (await send(api, "POST", cm_path(api), configmap("x")))[0] == 201
    code, body = await send(api, "PUT", cm_path(api, "x"), {"metadata": {"name": "y"}})
    assert status_of(code, body) == (
        400, "BadRequest", "the name of the object (y) does not match the name on the URL (x)")
    code, body = await send(api, "PUT", cm_path(api, "x"), {"metadata": {
        "name": "x", "namespace": "elsewhere"}})
    assert status_of(code, body) == (400, "BadRequest", mismatch)


async def test_crd_with_mistyped_versions_is_a_bad_request(api: ServerUnderTest) -> None:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.ex.com"},
        "spec": {"group": "ex.com", "scope": "Namespaced", "versions": "v1",
                 "names": {"plural": "widgets", "kind": "Widget"}}}
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    head = ('CustomResourceDefinition in version "v1" cannot be handled as a '
            "CustomResourceDefinition: json: cannot unmarshal string into Go struct field "
            "CustomResourceDefinitionSpec.spec.versions of type ")
    code, body = await send(api, "POST", path, crd)
    assert status_of(code, body) == (400, "BadRequest",
                                     head + "[]v1.CustomResourceDefinitionVersion")
    crd["spec"]["versions"] = ["v1"]
    code, body = await send(api, "POST", path, crd)
    assert status_of(code, body) == (400, "BadRequest", head + "v1.CustomResourceDefinitionVersion")
    crd["spec"]["versions"] = [{"name": 5}]
    code, body = await send(api, "POST", path, crd)
    assert status_of(code, body) == (400, "BadRequest", (
        'CustomResourceDefinition in version "v1" cannot be handled as a '
        "CustomResourceDefinition: json: cannot unmarshal number into Go struct field "
        "CustomResourceDefinitionVersion.spec.versions.name of type string"))
    code, body = await send(api, "POST", path, {**crd, "metadata": {"name": "x"}, "spec": {}})
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith(
        'CustomResourceDefinition.apiextensions.k8s.io "x" is invalid: [metadata.name: Invalid '
        'value: "x": must be spec.names.plural+"."+spec.group, spec.group: Required value')


# -- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_writes_with_a_foreign_content_type_are_415(
    api: ServerUnderTest, content_type: str
) -> None:
    code, body = await send(api, "POST", cm_path(api), configmap("c"), content_type=content_type)
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    # kube-apiserver also lists application/vnd.kubernetes.protobuf, which kubemirror does not take
    assert body["message"].startswith(UNKNOWN_FORMAT)
    assert (await send(api, "POST", cm_path(api), configmap("c")))[0] == 201
    for patch_type in ("application/json", content_type):
        code, body = await send(api, "PATCH", cm_path(api, "c"), {"data": {"a": "b"}},
                                content_type=patch_type)
        assert (code, body["reason"], body["message"], body["details"]) == (
            415, "UnsupportedMediaType", "415: Unsupported Media Type", {})
    code, body = await send(api, "DELETE", cm_path(api, "c"), {}, content_type=content_type)
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")


async def test_yaml_body(api: ServerUnderTest) -> None:
    code, body = await send(api, "POST", cm_path(api), raw=b"metadata:\n  name: yml\n",
                            content_type="application/yaml")
    assert (code, body["metadata"]["name"]) == (201, "yml")


# -- DeleteOptions, dryRun --------------------------------------------------------------------


async def test_delete_preconditions(api: ServerUnderTest) -> None:
    code, obj = await send(api, "POST", cm_path(api), configmap("x"))
    assert code == 201
    uid, rv = obj["metadata"]["uid"], obj["metadata"]["resourceVersion"]
    code, body = await send(api, "DELETE", cm_path(api, "x"), {"preconditions": "x"})
    assert status_of(code, body) == (400, "BadRequest", "json: cannot unmarshal string into Go "
                                     "struct field DeleteOptions.preconditions of type "
                                     "v1.Preconditions")
    code, body = await send(api, "DELETE", cm_path(api, "x"), {"preconditions": {"uid": "nope"}})
    assert status_of(code, body) == (409, "Conflict", (
        f'Operation cannot be fulfilled on ConfigMap "x": the UID in the precondition (nope) does '
        f"not match the UID in record ({uid}). The object might have been deleted and then "
        "recreated"))
    assert body["details"] == {"name": "x", "kind": "ConfigMap"}
    code, body = await send(api, "DELETE", cm_path(api, "x"),
                            {"preconditions": {"resourceVersion": "1"}})
    assert status_of(code, body) == (409, "Conflict", (
        'Operation cannot be fulfilled on ConfigMap "x": the ResourceVersion in the precondition '
        f"(1) does not match the ResourceVersion in record ({rv}). The object might have been "
        "modified"))
    code, body = await send(api, "DELETE", cm_path(api, "x"), [1])
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith(
        "couldn't get version/kind; json parse error: json: cannot unmarshal array into Go value")
    assert (await send(api, "GET", cm_path(api, "x")))[0] == 200, "still there"
    code, _ = await send(api, "DELETE", cm_path(api, "x"),
                         {"preconditions": {"uid": uid, "resourceVersion": rv}})
    assert code == 200
    assert (await send(api, "GET", cm_path(api, "x")))[0] == 404


async def test_dry_run_writes_store_nothing(api: ServerUnderTest) -> None:
    code, body = await send(api, "POST", cm_path(api) + "?dryRun=All", configmap("dry"))
    assert (code, body["metadata"]["name"]) == (201, "dry")
    assert "resourceVersion" not in body["metadata"]
    assert (await send(api, "GET", cm_path(api, "dry")))[0] == 404
    code, body = await send(api, "POST", cm_path(api) + "?dryRun=All",
                            {"metadata": {"name": "Bad_"}})
    assert (code, body["reason"]) == (422, "Invalid")
    code, body = await send(api, "POST", cm_path(api) + "?dryRun=bogus", configmap("dry"))
    assert status_of(code, body) == (422, "Invalid", (
        'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["bogus"]: '
        'supported values: "All"'))
    code, obj = await send(api, "POST", cm_path(api), configmap("real", {"k": "1"}))
    assert code == 201
    code, body = await send(api, "PUT", cm_path(api, "real") + "?dryRun=All",
                            {**obj, "data": {"k": "2"}})
    assert (code, body["data"]) == (200, {"k": "2"})
    code, body = await send(api, "PATCH", cm_path(api, "real") + "?dryRun=All",
                            {"data": {"k": "3"}}, content_type="application/merge-patch+json")
    assert (code, body["data"]) == (200, {"k": "3"})
    code, body = await send(api, "DELETE", cm_path(api, "real") + "?dryRun=All")
    assert code == 200
    code, now = await send(api, "GET", cm_path(api, "real"))
    assert (code, now["data"], now["metadata"]["resourceVersion"]) == (
        200, {"k": "1"}, obj["metadata"]["resourceVersion"])


# -- the status subresource -------------------------------------------------------------------


async def test_status_subresource_changes_only_status(api: ServerUnderTest) -> None:
    path = f"/apis/apps/v1/namespaces/{api.namespace}/deployments"
    code, created = await send(api, "POST", path, deployment("d"))
    assert code == 201, created
    merge = "application/merge-patch+json"
    code, body = await send(api, "PATCH", f"{path}/d/status", {
        "spec": {"replicas": 5}, "status": {"replicas": 3},
        "metadata": {"labels": {"new": "x"}}}, content_type=merge)
    assert code == 200, body
    assert (body["spec"]["replicas"], body["status"]["replicas"]) == (1, 3)
    assert body["metadata"]["labels"] == {"app": "d"}
    assert body["metadata"]["generation"] == 1
    code, body = await send(api, "PATCH", f"{path}/d", {
        "spec": {"replicas": 2}, "status": {"replicas": 9}}, content_type=merge)
    assert code == 200, body
    assert (body["spec"]["replicas"], body["status"]["replicas"]) == (2, 3)
    assert body["metadata"]["generation"] == 2
    code, body = await send(api, "PUT", f"{path}/d/status", {
        **body, "spec": {**body["spec"], "replicas": 7}, "status": {"replicas": 4}})
    assert code == 200, body
    assert (body["spec"]["replicas"], body["status"]["replicas"]) == (2, 4)
    code, body = await send(api, "GET", f"{path}/d/status")
    assert (code, body["status"]["replicas"]) == (200, 4)
    # types without a status subresource have no such path
    await send(api, "POST", cm_path(api), configmap("c"))
    code, body = await send(api, "PATCH", cm_path(api, "c") + "/status", {"data": {"a": "b"}},
                            content_type=merge)
    assert (code, body["reason"], body["message"]) == (
        404, "NotFound", "the server could not find the requested resource")


# -- field selectors --------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "field", "message"), [
    ("configmaps", "spec.bogus", '"spec.bogus" is not a known field selector: only '
     '"metadata.name", "metadata.namespace"'),
    ("pods", "spec.bogus", "field label not supported: spec.bogus"),
    ("pods", "metadata.uid", "field label not supported: metadata.uid"),
    ("services", "spec.clusterIPs", "field label not supported: spec.clusterIPs"),
    ("secrets", "spec.bogus", "field label not supported: spec.bogus"),
    ("events", "source.component", "field label not supported: source.component"),
    ("nodes", "metadata.namespace", "field label not supported: metadata.namespace"),
    ("namespaces", "metadata.namespace", "field label not supported: metadata.namespace"),
    ("apps/replicasets", "status.replicas", '"status.replicas" is not a known field selector: '
     'only "metadata.name", "metadata.namespace"'),
])
async def test_unsupported_field_selectors(
    api: ServerUnderTest, path: str, field: str, message: str
) -> None:
    prefix = f"/apis/apps/v1/{path[5:]}" if path.startswith("apps/") else f"/api/v1/{path}"
    code, body = await send(api, "GET", f"{prefix}?fieldSelector={field}%3Dx")
    assert status_of(code, body) == (400, "BadRequest", message)


@pytest.mark.parametrize(("path", "fields"), [
    ("pods", ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
              "status.nominatedNodeName", "spec.host"]),
    ("services", ["spec.clusterIP", "spec.type"]),
    ("secrets", ["type"]),
    ("namespaces", ["status.phase", "metadata.name"]),
    ("nodes", ["spec.unschedulable"]),
    ("events", ["involvedObject.kind", "involvedObject.name", "involvedObject.uid", "reason",
                "reportingComponent", "source", "type"]),
    ("replicationcontrollers", ["status.replicas"]),
])
async def test_supported_field_selectors(
    api: ServerUnderTest, path: str, fields: list[str]
) -> None:
    for field in fields:
        code, body = await send(api, "GET", f"/api/v1/{path}?limit=1&fieldSelector={field}%3Dx")
        assert code == 200, (field, body)


async def test_pod_field_selectors_select(api: ServerUnderTest) -> None:
    pods = f"/api/v1/namespaces/{api.namespace}/pods"
    for name, node in (("a", "n1"), ("b", None)):
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
        if node:
            spec["nodeName"] = node
        code, body = await send(api, "POST", pods, {"metadata": {"name": name}, "spec": spec,
                                                    "status": {"phase": "Pending"}})
        assert code == 201, body

    async def names(selector: str) -> list[str]:
        code, body = await send(api, "GET", f"{pods}?fieldSelector={selector}")
        assert code == 200, body
        return [o["metadata"]["name"] for o in body["items"]]

    assert await names("spec.nodeName%3Dn1") == ["a"]
    assert await names("spec.host%3Dn1") == ["a"]
    assert await names("spec.nodeName%3D") == ["b"]
    assert await names("spec.hostNetwork%3Dfalse") == ["a", "b"]
    assert await names("status.phase%3DPending,spec.nodeName!%3Dn1") == ["b"]
