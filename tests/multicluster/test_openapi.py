"""OpenAPI built from kubernetes_asyncio's models: schema shapes, the served documents,
and ``kubectl explain`` against ``KubeApiServer`` (and, for the field list of
``pods.spec``, against the real kube-apiserver)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubemirror.multicluster import openapi
from kubemirror.multicluster.resources import BUILTIN_RESOURCES
from kubemirror.multicluster.server import KubeApiServer

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None and os.environ.get("KUBEMIRROR_REQUIRE_KUBECTL") != "1",
    reason="kubectl is not installed (set KUBEMIRROR_REQUIRE_KUBECTL=1 to fail instead)",
)
CORE = "#/components/schemas/io.k8s.api.core.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# Fields of PodSpec in kube-apiserver v1.37 that the installed kubernetes_asyncio
# models (36.x, generated from Kubernetes 1.36) do not know yet. The explain output
# of KubeApiServer lists exactly the models' fields.
NEWER_THAN_MODELS = frozenset({"evictionResponders"})

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "listKind": "WidgetList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "A widget.",
                "properties": {"spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "description": "How big the widget is."},
                        "color": {"type": "string", "description": "Its colour."},
                    },
                }},
            }},
        }],
    },
}


def _schemas(group_version: str) -> dict[str, Any]:
    doc = openapi.v3_document(group_version, BUILTIN_RESOURCES)
    assert doc is not None
    schemas: dict[str, Any] = doc["components"]["schemas"]
    return schemas


def test_pod_schema_shapes() -> None:
    schemas = _schemas("api/v1")
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "version": "v1", "kind": "Pod"}]
    assert pod["properties"]["spec"] == {"allOf": [{"$ref": f"{CORE}PodSpec"}]}
    assert pod["properties"]["metadata"]["allOf"] == [
        {"$ref": f"#/components/schemas/{META}ObjectMeta"}
    ]
    spec = schemas["io.k8s.api.core.v1.PodSpec"]
    assert "x-kubernetes-group-version-kind" not in spec
    assert spec["required"] == ["containers"]
    containers = spec["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["items"] == {"$ref": f"{CORE}Container"}
    assert containers["description"].startswith("List of containers belonging to the pod.")
    assert spec["properties"]["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert spec["properties"]["activeDeadlineSeconds"]["type"] == "integer"
    assert spec["properties"]["hostNetwork"]["type"] == "boolean"
    meta = schemas[f"{META}ObjectMeta"]
    assert meta["properties"]["creationTimestamp"]["format"] == "date-time"
    assert "Populated by the system." in meta["properties"]["creationTimestamp"]["description"]
    assert schemas["io.k8s.api.core.v1.Container"]["required"] == ["name"]
    # every reference resolves inside the document
    refs = set(re.findall(r"'\$ref': '#/components/schemas/([^']+)'", repr(schemas)))
    assert refs <= set(schemas)


def test_group_documents_name_types_after_their_own_group() -> None:
    apps = _schemas("apis/apps/v1")
    deployment = apps["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}
    ]
    template = apps["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["template"]
    assert template["allOf"] == [{"$ref": f"{CORE}PodTemplateSpec"}]
    assert "io.k8s.api.core.v1.PersistentVolumeClaim" in apps  # statefulsets' claim templates
    assert "io.k8s.api.core.v1.Pod" not in apps
    event = _schemas("api/v1")["io.k8s.api.core.v1.Event"]  # CoreV1Event, not events.k8s.io
    assert event["x-kubernetes-group-version-kind"][0]["kind"] == "Event"
    assert "involvedObject" in event["properties"]
    lease = _schemas("apis/coordination.k8s.io/v1")["io.k8s.api.coordination.v1.Lease"]
    assert "holderIdentity" in _schemas("apis/coordination.k8s.io/v1")[
        "io.k8s.api.coordination.v1.LeaseSpec"]["properties"]
    assert lease["x-kubernetes-group-version-kind"][0]["group"] == "coordination.k8s.io"
    assert openapi.v3_document("apis/nope.example/v1", BUILTIN_RESOURCES) is None


def test_discovery_and_v2_documents() -> None:
    paths = openapi.discovery_document(BUILTIN_RESOURCES)["paths"]
    assert paths["api/v1"] == {"serverRelativeURL": "/openapi/v3/api/v1"}
    assert set(paths) == {"api/v1", "apis/apps/v1", "apis/networking.k8s.io/v1",
                          "apis/coordination.k8s.io/v1"}
    v2 = openapi.v2_document(BUILTIN_RESOURCES)
    assert v2["swagger"] == "2.0"
    assert v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"] == {
        "allOf": [{"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}]
    }
    assert "#/components/" not in repr(v2)
    assert "io.k8s.api.apps.v1.Deployment" in v2["definitions"]


def test_field_description_without_importing_models() -> None:
    text = openapi.field_description("V1PodSpec", "nodeName")
    assert text.startswith("NodeName indicates in which node this pod is scheduled.")
    assert "noqa" not in text
    assert openapi.field_description("V1PodSpec", "noSuchField") == ""
    assert openapi.field_description("V1NoSuchModel", "x") == ""


def test_crd_schema_becomes_a_component() -> None:
    from kubemirror.multicluster.crds import crd_resource_infos

    infos = [*BUILTIN_RESOURCES, *crd_resource_infos(CRD)]
    doc = openapi.v3_document("apis/example.com/v1", infos, openapi.crd_schemas([CRD]))
    assert doc is not None
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "version": "v1", "kind": "Widget"}
    ]
    assert widget["properties"]["spec"]["required"] == ["size"]
    assert f"{META}ObjectMeta" in doc["components"]["schemas"]


async def test_server_serves_the_documents(kube_api_server: KubeApiServer) -> None:
    async with aiohttp.ClientSession(kube_api_server.url) as http:
        async with http.get("/openapi/v3") as resp:
            assert resp.status == 200
            discovery = await resp.json()
        url = discovery["paths"]["apis/apps/v1"]["serverRelativeURL"]
        async with http.get(url) as resp:
            assert resp.status == 200
            apps = await resp.json()
        assert "io.k8s.api.apps.v1.Deployment" in apps["components"]["schemas"]
        patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
        assert patch["parameters"][0]["name"] == "fieldValidation"
        async with http.get("/openapi/v2", headers={"Accept": "application/json"}) as resp:
            assert resp.status == 200
            assert "io.k8s.api.core.v1.Pod" in (await resp.json())["definitions"]
        protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        async with http.get("/openapi/v2", headers={"Accept": protobuf}) as resp:
            assert resp.status == 406
        async with http.get("/openapi/v3/apis/nope.example/v1") as resp:
            assert resp.status == 404


async def _kubectl(server_url: str, cache: Path, *args: str) -> tuple[int, str, str]:
    assert KUBECTL is not None, "kubectl is required (KUBEMIRROR_REQUIRE_KUBECTL=1)"
    return await _run(KUBECTL, "--server", server_url, "--cache-dir", str(cache), *args)


async def _run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def explained_fields(output: str) -> dict[str, str]:
    """``name -> type`` of the FIELDS a plain ``kubectl explain`` printed."""
    return dict(re.findall(r"^  (\w+)\t<([^>]*)>", output, re.MULTILINE))


@pytest.mark.kubectl
@needs_kubectl
async def test_kubectl_explain_pods_spec(kube_api_server: KubeApiServer, tmp_path: Path) -> None:
    code, out, err = await _kubectl(kube_api_server.url, tmp_path, "explain", "pods.spec")
    assert code == 0, err
    assert out.startswith("KIND:       Pod\nVERSION:    v1\n")
    assert "FIELD: spec <PodSpec>" in out
    fields = explained_fields(out)
    assert fields["containers"] == "[]Container"
    assert fields["nodeSelector"] == "map[string]string"
    assert fields["nodeName"] == "string"
    assert "containers\t<[]Container> -required-" in out
    assert "NodeName indicates in which node this pod is scheduled." in out


@pytest.mark.kubectl
@needs_kubectl
async def test_kubectl_explain_nested_and_other_kinds(
    kube_api_server: KubeApiServer, tmp_path: Path
) -> None:
    code, out, err = await _kubectl(
        kube_api_server.url, tmp_path, "explain", "deployments.spec.template.spec.containers"
    )
    assert code == 0, err
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
    assert "FIELD: containers <[]Container>" in out
    assert "List of containers belonging to the pod." in out
    assert {"image", "name", "ports", "env"} <= set(explained_fields(out))
    code, out, err = await _kubectl(kube_api_server.url, tmp_path, "explain", "configmaps")
    assert code == 0, err
    assert {"data", "binaryData", "immutable", "metadata"} <= set(explained_fields(out))
    code, out, err = await _kubectl(kube_api_server.url, tmp_path, "explain", "services.spec.ports")
    assert code == 0, err
    assert explained_fields(out)["targetPort"] == "Object"  # IntOrString: see openapi.py
    code, out, err = await _kubectl(kube_api_server.url, tmp_path, "explain", "pods.spec.nope")
    assert code != 0
    assert 'field "nope" does not exist' in err


@pytest.mark.kubectl
@needs_kubectl
async def test_kubectl_explain_a_registered_crd(
    kube_api_server: KubeApiServer, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(kube_api_server.url) as http:
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        async with http.post(path, json=CRD) as resp:
            assert resp.status == 201, await resp.text()
    code, out, err = await _kubectl(kube_api_server.url, tmp_path, "explain", "widgets.spec")
    assert code == 0, err
    assert "size\t<integer> -required-" in out
    assert "How big the widget is." in out


@pytest.mark.kubectl
@pytest.mark.real_apiserver
@needs_kubectl
async def test_pods_spec_fields_match_the_real_server(
    kube_api_server: KubeApiServer, real_kube_apiserver: Any, tmp_path: Path
) -> None:
    """Same field names and types as kube-apiserver v1.37's explain, up to the fields
    the installed kubernetes_asyncio models do not have yet (``NEWER_THAN_MODELS``)."""
    assert KUBECTL is not None
    code, real_out, err = await _run(
        KUBECTL, "--kubeconfig", str(real_kube_apiserver.kubeconfig_path),
        "--cache-dir", str(tmp_path / "real"), "explain", "pods.spec",
    )
    assert code == 0, err
    code, own_out, err = await _kubectl(kube_api_server.url, tmp_path / "own", "explain",
                                        "pods.spec")
    assert code == 0, err
    real, own = explained_fields(real_out), explained_fields(own_out)
    assert len(own) > 40
    assert set(real) - set(own) <= NEWER_THAN_MODELS
    assert set(own) <= set(real)
    # the models type Quantity fields as str and IntOrString ones as object
    def model_type(real_type: str) -> str:
        return real_type.replace("Quantity", "string").replace("IntOrString", "Object")

    assert own == {k: model_type(real[k]) for k in own}
