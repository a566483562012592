"""kubemirror's client side (kubeconfig loading, ``KubeClient``, ``Discovery``) against the
genuine kube-apiserver: every way of authenticating, every way of failing to, RBAC that
allows LIST but not WATCH, and discovery of every built-in group and of a new CRD.

Where a behaviour applies to both servers the ``api`` fixture runs the test against
kube-apiserver and kubemirror's own ``KubeApiServer``; the differences are asserted
explicitly (``api.kind``): kubemirror's server does no authentication or authorization
(anonymous requests get everything), reports version 1.32 where the real one reports
1.37, and serves only a subset of the built-in resource types.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import random
import re
import ssl
import subprocess
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kubemirror import errors
from kubemirror.cli import failures
from kubemirror.client import (
    ClientConfig,
    Discovery,
    KubeClient,
    ListOptions,
    load_kube_config,
    resource_path,
)
from kubemirror.envtest import ADMIN_USER, EnvTest
from kubemirror.envtest.pki import CertificateAuthority
from kubemirror.listwatch import ListWatch
from kubemirror.reflector import Reflector
from kubemirror.types import GroupVersionResource
from tests.cli.conftest import KUBECTL, run_cli, skip_without_kubectl
from tests.memory_lw import DictStore
from tests.polling import eventually
from tests.real_apiserver.conftest import (
    CONFIGMAPS,
    CRDS,
    NAMESPACES,
    REAL,
    ServerUnderTest,
    configmap,
    create_namespace,
    unique,
)

SERVICE_ACCOUNTS = GroupVersionResource("", "v1", "serviceaccounts")
ROLES = GroupVersionResource("rbac.authorization.k8s.io", "v1", "roles")
ROLE_BINDINGS = GroupVersionResource("rbac.authorization.k8s.io", "v1", "rolebindings")
SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
ANONYMOUS_LIST_NAMESPACES = (
    'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" '
    'in API group "" at the cluster scope'
)


async def whoami(client: KubeClient) -> dict[str, Any]:
    """The ``userInfo`` the server authenticated the client as (SelfSubjectReview API)."""
    review = await client.request(
        "POST",
        SELF_SUBJECT_REVIEWS,
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    info: dict[str, Any] = review["status"]["userInfo"]
    return info


async def namespace_names(client: KubeClient) -> set[str]:
    listed = await client.list(NAMESPACES, None, ListOptions())
    return {item["metadata"]["name"] for item in listed.items}


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def foreign_ca_pem() -> str:
    """A CA certificate that did not sign the server's certificate."""
    return CertificateAuthority("some-other-ca").cert_pem.decode()


# -- kubeconfig and authentication --------------------------------------------------------


async def test_kubeconfig_client_certificate_context(real_env: EnvTest) -> None:
    config = await load_kube_config(real_env.kubeconfig_path)
    assert (config.server, config.context_name, config.namespace) == (
        real_env.url, "envtest", "default")
    assert await config.authorization() is None  # the client certificate authenticates
    async with KubeClient(config) as client:
        core = await client.request("GET", "/api")
        assert (core["kind"], core["versions"]) == ("APIVersions", ["v1"])
        assert {"default", "kube-system", "kube-public"} <= await namespace_names(client)
        user = await whoami(client)
    assert user["username"] == ADMIN_USER
    assert user["groups"] == ["system:masters", "system:authenticated"]


async def test_kubeconfig_token_context(real_env: EnvTest) -> None:
    config = await load_kube_config(real_env.kubeconfig_path, context="envtest-token")
    assert config.context_name == "envtest-token"
    assert await config.authorization() == f"Bearer {real_env.admin_token}"
    async with KubeClient(config) as client:
        assert {"default", "kube-system", "kube-public"} <= await namespace_names(client)
        user = await whoami(client)
    # a static token user (--token-auth-file) has the uid of the file's third column
    assert user == {"username": ADMIN_USER, "uid": ADMIN_USER,
                    "groups": ["system:masters", "system:authenticated"]}


async def test_kubeconfig_written_with_a_token(real_env: EnvTest, tmp_path: Path) -> None:
    path = real_env.write_kubeconfig(tmp_path / "token.yaml", token=real_env.admin_token)
    assert path.stat().st_mode & 0o777 == 0o600
    config = await load_kube_config(path)
    assert config.context_name == "envtest"
    assert await config.authorization() == f"Bearer {real_env.admin_token}"
    async with KubeClient(config) as client:
        assert (await whoami(client))["username"] == ADMIN_USER


async def test_kubectl_style_kubeconfig_with_file_paths(real_env: EnvTest, tmp_path: Path) -> None:
    """``certificate-authority``/``client-certificate``/``client-key`` as file paths (what
    ``kubectl config set-cluster --certificate-authority=...`` writes), not ``-data``."""
    path = write_yaml(tmp_path / "config", {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {
            "server": real_env.url, "certificate-authority": str(real_env.ca_file)}}],
        "users": [{"name": "u", "user": {
            "client-certificate": str(real_env.admin_cert_file),
            "client-key": str(real_env.admin_key_file)}}],
        "contexts": [{"name": "files", "context": {
            "cluster": "c", "user": "u", "namespace": "kube-system"}}],
        "current-context": "files",
    })
    config = await load_kube_config(path)
    assert (config.server, config.context_name, config.namespace) == (
        real_env.url, "files", "kube-system")
    async with KubeClient(config) as client:
        assert (await whoami(client))["username"] == ADMIN_USER
        assert {"default", "kube-system", "kube-public"} <= await namespace_names(client)


async def test_wrong_ca_fails_tls_verification(real_env: EnvTest, tmp_path: Path) -> None:
    kubeconfig = real_env.kubeconfig()
    kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        foreign_ca_pem().encode()).decode()
    path = write_yaml(tmp_path / "wrong-ca.yaml", kubeconfig)
    from_kubeconfig = await load_kube_config(path)  # loading does not contact the server
    explicit = ClientConfig.for_server(real_env.url, ca_data=foreign_ca_pem(),
                                       token=real_env.admin_token)
    for config in (from_kubeconfig, explicit):
        async with KubeClient(config) as client:
            with pytest.raises(errors.TransportError) as caught:
                await client.request("GET", "/api")
        assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)
        cause = failures.root_cause(caught.value)
        assert isinstance(cause, ssl.SSLCertVerificationError)
        assert cause.verify_message == "unable to get local issuer certificate"
        explained = failures.explain(caught.value, server=real_env.url)
        assert explained is not None
        assert explained.message == (
            f"cannot reach the cluster at {real_env.url}: TLS certificate verification failed "
            "(unable to get local issuer certificate)")
        assert "certificate-authority" in explained.hint
        assert "\n" not in str(explained)
    # the command prints the same, on one line
    result = await run_cli("watch", "configmaps", "--kubeconfig", str(path), within=25)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [f"error: {failures.one_line(str(explained))}"]


async def test_wrong_bearer_token_is_401(real_env: EnvTest) -> None:
    async with KubeClient(real_env.token_client_config("not-a-valid-token")) as client:
        with pytest.raises(errors.UnauthorizedError) as caught:
            await client.list(CONFIGMAPS, "default", ListOptions())
    assert caught.value.code == 401
    assert caught.value.status == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    }
    explained = failures.explain(caught.value, server=real_env.url)
    assert explained is not None
    assert explained.message == (
        f"the cluster at {real_env.url} rejected the credentials (401 Unauthorized)")


async def test_client_certificate_of_another_ca_is_401(real_env: EnvTest, tmp_path: Path) -> None:
    """TLS lets the foreign certificate through; kube-apiserver's authenticator rejects it."""
    cert, key = CertificateAuthority("intruder-ca").client_pair(
        ADMIN_USER, groups=("system:masters",)).write(tmp_path, "intruder")
    config = ClientConfig.for_server(real_env.url, ca_file=real_env.ca_file,
                                     cert_file=cert, key_file=key)
    async with KubeClient(config) as client:
        with pytest.raises(errors.UnauthorizedError) as caught:
            await client.request("GET", "/api")
    assert (caught.value.code, caught.value.reason) == (401, "Unauthorized")


async def test_no_credentials_is_the_anonymous_user(real_env: EnvTest) -> None:
    """kube-apiserver's anonymous auth is on: no credentials is ``system:anonymous``, which
    RBAC lets read /version, /healthz, /readyz, /livez (system:public-info-viewer) and
    nothing else: 403 Forbidden, not 401."""
    anonymous = ClientConfig(real_env.url, ssl_context=real_env.ssl_context())
    async with KubeClient(anonymous) as client:
        assert (await client.request("GET", "/version"))["minor"] == "37"
        assert await client.request_bytes("GET", "/readyz") == b"ok"
        with pytest.raises(errors.UnauthorizedError) as on_path:
            await client.request("GET", "/api")
        with pytest.raises(errors.UnauthorizedError) as on_list:
            await client.list(NAMESPACES, None, ListOptions())
    assert (on_path.value.code, on_path.value.reason) == (403, "Forbidden")
    assert on_path.value.status["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/api"')
    assert on_path.value.status["details"] == {}
    assert (on_list.value.code, on_list.value.reason) == (403, "Forbidden")
    assert on_list.value.status["message"] == ANONYMOUS_LIST_NAMESPACES
    assert on_list.value.status["details"] == {"kind": "namespaces"}


async def test_version_and_anonymous_list(api: ServerUnderTest, request: pytest.FixtureRequest
                                          ) -> None:
    """/version needs no credentials on either server; a LIST does on the real one only."""
    if api.kind == REAL:
        env: EnvTest = request.getfixturevalue("real_env")
        anonymous = ClientConfig(api.config.server, ssl_context=env.ssl_context())
    else:
        anonymous = ClientConfig(api.config.server)
    async with KubeClient(anonymous) as client:
        version = await client.request("GET", "/version")
        assert version["major"] == "1"
        assert version["minor"] == ("37" if api.kind == REAL else "32")
        if api.kind == REAL:
            with pytest.raises(errors.UnauthorizedError) as caught:
                await client.list(NAMESPACES, None, ListOptions())
            assert caught.value.status["message"] == ANONYMOUS_LIST_NAMESPACES
        else:  # kubemirror's server authenticates nobody and authorizes everything
            assert api.namespace in await namespace_names(client)


async def test_missing_object_is_a_not_found_status(api: ServerUnderTest) -> None:
    """The 404 ``Status`` is the same on both servers."""
    with pytest.raises(errors.NotFoundError) as caught:
        await api.client.get(CONFIGMAPS, "absent", api.namespace)
    assert caught.value.status == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "absent" not found', "reason": "NotFound",
        "details": {"name": "absent", "kind": "configmaps"}, "code": 404,
    }
    assert (caught.value.code, caught.value.reason) == (404, "NotFound")
    with pytest.raises(errors.NotFoundError) as cluster_scoped:
        await api.client.get(NAMESPACES, "absent-namespace")
    assert cluster_scoped.value.status["details"] == {"name": "absent-namespace",
                                                      "kind": "namespaces"}


# -- RBAC: allowed to list, not to watch ----------------------------------------------------


async def list_only_token(admin: KubeClient, namespace: str, name: str = "reader") -> str:
    """A ServiceAccount whose Role grants get and list (not watch) on configmaps in
    ``namespace``, and a real token for it from the TokenRequest API."""
    await admin.create(SERVICE_ACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": name}}, namespace)
    await admin.create(ROLES, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "configmap-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }, namespace)
    await admin.create(ROLE_BINDINGS, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "configmap-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "configmap-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }, namespace)
    answer = await admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 600}},
    )
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["expirationSeconds"] == 600
    token: str = answer["status"]["token"]
    assert token.count(".") == 2  # a signed JWT
    return token


def forbidden(namespace: str, verb: str, where: str | None = None) -> str:
    return (f'configmaps is forbidden: User "system:serviceaccount:{namespace}:reader" '
            f'cannot {verb} resource "configmaps" in API group "" in the namespace '
            f'"{where or namespace}"')


async def test_service_account_may_list_but_not_watch(
    real_env: EnvTest, real_client: KubeClient, namespace: str
) -> None:
    created = await real_client.create(CONFIGMAPS, configmap("visible"), namespace)
    token = await list_only_token(real_client, namespace)
    async with KubeClient(real_env.token_client_config(token)) as client:
        user = await whoami(client)
        assert user["username"] == f"system:serviceaccount:{namespace}:reader"
        assert user["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                  "system:authenticated"]
        listed = await client.list(CONFIGMAPS, namespace, ListOptions())
        assert [item["metadata"]["name"] for item in listed.items] == ["visible"]
        assert await client.get(CONFIGMAPS, "visible", namespace) == created

        with pytest.raises(errors.UnauthorizedError) as on_watch:
            await client.watch(CONFIGMAPS, namespace,
                               ListOptions(resource_version=listed.resource_version))
        with pytest.raises(errors.UnauthorizedError) as elsewhere:
            await client.list(CONFIGMAPS, "default", ListOptions())
        with pytest.raises(errors.UnauthorizedError) as on_create:
            await client.create(CONFIGMAPS, configmap("nope"), namespace)

    assert (on_watch.value.code, on_watch.value.reason) == (403, "Forbidden")
    assert on_watch.value.status["message"] == forbidden(namespace, "watch")
    assert on_watch.value.status["details"] == {"kind": "configmaps"}
    assert str(on_watch.value) == f"403 Forbidden: {forbidden(namespace, 'watch')}"
    assert elsewhere.value.status["message"] == forbidden(namespace, "list", "default")
    assert on_create.value.status["message"] == forbidden(namespace, "create")
    explained = failures.explain(on_watch.value, server=real_env.url)
    assert explained is not None
    assert explained.message == (
        f"the cluster at {real_env.url} forbids it: {forbidden(namespace, 'watch')}")


async def test_reflector_without_watch_permission_syncs_then_retries_the_403(
    real_env: EnvTest, real_client: KubeClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Like client-go's reflector: the LIST fills the store, the forbidden WATCH is logged
    (one warning line naming the verb and resource) and retried with backoff."""
    await real_client.create(CONFIGMAPS, configmap("one"), namespace)
    token = await list_only_token(real_client, namespace)
    store = DictStore()
    caplog.set_level("WARNING", logger="kubemirror.reflector")
    async with KubeClient(real_env.token_client_config(token)) as client:
        reflector = Reflector(ListWatch(client, CONFIGMAPS, namespace), store, name="cm")
        async with reflector:
            await eventually(lambda: reflector.stats.errors >= 2, within=15,
                             what="two forbidden watches")
    assert reflector.has_synced()
    assert list(store.items) == [f"{namespace}/one"]
    assert reflector.stats.watches >= 2  # attempts, none of which opened
    assert reflector.stats.events == 0
    assert reflector.stats.last_error.startswith("UnauthorizedError(")
    warnings = [r.getMessage() for r in caplog.records if r.name == "kubemirror.reflector"]
    assert warnings[0] == (
        f"cm: 403 Forbidden: {forbidden(namespace, 'watch')} "
        f"(resourceVersion {reflector.last_sync_resource_version}); retrying")
    assert all("\n" not in w for w in warnings)


async def test_watch_command_without_watch_permission_exits_1(
    real_env: EnvTest, real_client: KubeClient, namespace: str, tmp_path: Path
) -> None:
    """``kubemirror watch`` checks the WATCH before starting: one line naming the missing
    verb, exit 1 (it used to sync, then retry the 403 forever and exit 0)."""
    token = await list_only_token(real_client, namespace)
    kubeconfig = real_env.write_kubeconfig(tmp_path / "reader.yaml", token=token)
    result = await run_cli("watch", "cm", "-n", namespace, "--kubeconfig", str(kubeconfig),
                           "-o", "json", "--duration", "20", within=25)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"error: the cluster at {real_env.url} forbids it: {forbidden(namespace, 'watch')}. "
        "Ask for list and watch permission on the resource, or use another --context"
    ]


# -- discovery -------------------------------------------------------------------------------


async def test_discovery_has_every_group_version_the_server_lists(real_client: KubeClient) -> None:
    """Compared with the server's own /api, /apis and per-version resource lists."""
    discovery = Discovery(real_client)
    resources = await discovery.resources()
    found = {(r.gvr.group, r.gvr.version, r.gvr.resource): r for r in resources}
    assert len(found) == len(resources)  # no duplicates

    core = await real_client.request("GET", "/api")
    group_versions: list[tuple[str, str, bool]] = [("", "v1", True)]
    assert core["versions"] == ["v1"]
    groups = (await real_client.request("GET", "/apis"))["groups"]
    for group in groups:
        preferred = group["preferredVersion"]["groupVersion"]
        assert preferred in [v["groupVersion"] for v in group["versions"]]
        group_versions.extend((group["name"], v["version"], v["groupVersion"] == preferred)
                              for v in group["versions"])
    assert len(groups) >= 20
    assert {"apps", "batch", "rbac.authorization.k8s.io", "apiextensions.k8s.io",
            "coordination.k8s.io", "networking.k8s.io"} <= {g["name"] for g in groups}

    expected: dict[tuple[str, str, str], tuple[str, bool, tuple[str, ...], bool]] = {}
    for group, version, is_preferred in group_versions:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        doc = await real_client.request("GET", path)
        top_level = [e for e in doc["resources"] if "/" not in e["name"]]
        assert top_level, f"{path} serves no resource"
        for entry in top_level:
            expected[(group, version, entry["name"])] = (
                entry["kind"], entry["namespaced"], tuple(entry["verbs"]), is_preferred)
    assert {key: (r.kind, r.namespaced, r.verbs, r.preferred) for key, r in found.items()} == (
        expected)
    # every preferred groupVersion has its resources
    preferred_gvs = {(g, v) for g, v, p in group_versions if p}
    assert preferred_gvs == {(r.gvr.group, r.gvr.version) for r in resources if r.preferred}


# (name typed by the user) -> (group, version, resource, kind, namespaced); kubectl resolves
# them the same (test_resolve_agrees_with_kubectl checks it).
BUILT_IN_NAMES: dict[str, tuple[str, str, str, str, bool]] = {
    "po": ("", "v1", "pods", "Pod", True),
    "pods": ("", "v1", "pods", "Pod", True),
    "pod": ("", "v1", "pods", "Pod", True),
    "Pod": ("", "v1", "pods", "Pod", True),
    "deploy": ("apps", "v1", "deployments", "Deployment", True),
    "deployments.apps": ("apps", "v1", "deployments", "Deployment", True),
    "deployments.v1.apps": ("apps", "v1", "deployments", "Deployment", True),
    "cm": ("", "v1", "configmaps", "ConfigMap", True),
    "svc": ("", "v1", "services", "Service", True),
    "ns": ("", "v1", "namespaces", "Namespace", False),
    "no": ("", "v1", "nodes", "Node", False),
    "ep": ("", "v1", "endpoints", "Endpoints", True),
    "secrets": ("", "v1", "secrets", "Secret", True),
    "ev": ("", "v1", "events", "Event", True),  # core wins over events.k8s.io
    "crd": ("apiextensions.k8s.io", "v1", "customresourcedefinitions",
            "CustomResourceDefinition", False),
    "crds": ("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "CustomResourceDefinition", False),
    "customresourcedefinitions.apiextensions.k8s.io": (
        "apiextensions.k8s.io", "v1", "customresourcedefinitions",
        "CustomResourceDefinition", False),
    "leases.coordination.k8s.io": ("coordination.k8s.io", "v1", "leases", "Lease", True),
    "ing": ("networking.k8s.io", "v1", "ingresses", "Ingress", True),
    "sts": ("apps", "v1", "statefulsets", "StatefulSet", True),
    "ds": ("apps", "v1", "daemonsets", "DaemonSet", True),
    "rs": ("apps", "v1", "replicasets", "ReplicaSet", True),
    "rc": ("", "v1", "replicationcontrollers", "ReplicationController", True),
}

# Served by kube-apiserver only (kubemirror's server has no such resource type).
REAL_ONLY_NAMES: dict[str, tuple[str, str, str, str, bool]] = {
    "sa": ("", "v1", "serviceaccounts", "ServiceAccount", True),
    "pvc": ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    "pv": ("", "v1", "persistentvolumes", "PersistentVolume", False),
    "quota": ("", "v1", "resourcequotas", "ResourceQuota", True),
    "limits": ("", "v1", "limitranges", "LimitRange", True),
    "jobs": ("batch", "v1", "jobs", "Job", True),
    "cj": ("batch", "v1", "cronjobs", "CronJob", True),
    "hpa": ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    "horizontalpodautoscalers.v1.autoscaling": (
        "autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    "pdb": ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    "netpol": ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    "sc": ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
    "csr": ("certificates.k8s.io", "v1", "certificatesigningrequests",
            "CertificateSigningRequest", False),
    "pc": ("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False),
    "roles.rbac.authorization.k8s.io": ("rbac.authorization.k8s.io", "v1", "roles", "Role",
                                        True),
    "events.events.k8s.io": ("events.k8s.io", "v1", "events", "Event", True),
    "apiservices": ("apiregistration.k8s.io", "v1", "apiservices", "APIService", False),
    "selfsubjectreviews": ("authentication.k8s.io", "v1", "selfsubjectreviews",
                           "SelfSubjectReview", False),
}


def resolved(resource: Any) -> tuple[str, str, str, str, bool]:
    gvr = resource.gvr
    return (gvr.group, gvr.version, gvr.resource, resource.kind, resource.namespaced)


@pytest.mark.parametrize("name", list(BUILT_IN_NAMES))
async def test_resolve_built_in_names(api: ServerUnderTest, name: str) -> None:
    discovery = Discovery(api.client)
    assert resolved(await discovery.resolve(name)) == BUILT_IN_NAMES[name]
    assert discovery.refreshes == 1  # found in the first load


@pytest.mark.parametrize("name", list(REAL_ONLY_NAMES))
async def test_resolve_names_only_the_real_server_serves(api: ServerUnderTest, name: str) -> None:
    discovery = Discovery(api.client)
    if api.kind == REAL:
        assert resolved(await discovery.resolve(name)) == REAL_ONLY_NAMES[name]
        assert discovery.refreshes == 1
    else:
        with pytest.raises(errors.ResourceNotFoundError):
            await discovery.resolve(name)
        assert discovery.refreshes == 2  # a miss reloads once


async def test_unknown_name_is_not_found_after_one_refresh(api: ServerUnderTest) -> None:
    discovery = Discovery(api.client)
    with pytest.raises(errors.ResourceNotFoundError) as caught:
        await discovery.resolve("nosuchthings")
    assert caught.value.name == "nosuchthings"
    assert str(caught.value) == "the server has no resource type 'nosuchthings'"
    assert discovery.refreshes == 2


def kubectl_list_path(kubeconfig: Path, cache: Path, name: str) -> str:
    """The URL path ``kubectl get NAME -n default`` lists: where kubectl resolved NAME to."""
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache),
         "get", name, "-n", "default", "-v=6"],
        capture_output=True, text=True, timeout=20, check=False)
    urls: list[str] = re.findall(r"GET (https://\S+)\?limit=500 ", proc.stderr)
    assert len(urls) == 1, proc.stderr
    return urllib.parse.urlsplit(urls[0]).path


@skip_without_kubectl
@pytest.mark.kubectl
async def test_resolve_agrees_with_kubectl(real_env: EnvTest, real_client: KubeClient,
                                           tmp_path: Path) -> None:
    discovery = Discovery(real_client)
    for name in (*BUILT_IN_NAMES, *REAL_ONLY_NAMES):
        kubectl = await asyncio.to_thread(kubectl_list_path, real_env.kubeconfig_path, tmp_path,
                                          name)
        resource = await discovery.resolve(name)
        ours = resource_path(resource.gvr, "default" if resource.namespaced else None)
        assert ours == kubectl, name


async def test_resolve_a_new_custom_resource_definition(real_client: KubeClient,
                                                        namespace: str) -> None:
    group = f"{unique('g')}.kubemirror.example"
    plural = "widgets"
    crd_name = f"{plural}.{group}"
    discovery = Discovery(real_client)
    await discovery.resources()
    await real_client.create(CRDS, {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": "Widget",
                      "listKind": "WidgetList", "shortNames": ["wdg"]},
            "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    })

    async def established() -> bool:
        crd = await real_client.get(CRDS, crd_name)
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not await established():
        assert loop.time() < deadline, f"{crd_name} not Established within 15 s"
        await asyncio.sleep(0.02)

    # Discovery serves the new group a moment after Established: reload until it does.
    while True:
        discovery.invalidate()
        try:
            widget = await discovery.resolve("wdg")
            break
        except errors.ResourceNotFoundError:
            assert loop.time() < deadline, f"{group} not in discovery within 15 s"
            await asyncio.sleep(0.02)
    expected = (group, "v1alpha1", plural, "Widget", True)
    assert resolved(widget) == expected
    assert widget.short_names == ("wdg",)
    assert widget.singular == "widget"
    assert set(widget.verbs) == {"create", "delete", "deletecollection", "get", "list",
                                 "patch", "update", "watch"}
    for name in (plural, "widget", "Widget", crd_name, f"{plural}.v1alpha1.{group}"):
        assert resolved(await discovery.resolve(name)) == expected, name

    # and the resolved resource is usable
    gvr = widget.gvr
    created = await real_client.create(gvr, {"apiVersion": f"{group}/v1alpha1", "kind": "Widget",
                                             "metadata": {"name": "w1"}, "size": 3}, namespace)
    assert (await real_client.get(gvr, "w1", namespace)) == created
    assert created["size"] == 3



# -- connections ----------------------------------------------------------------------------


def test_lists_cancelled_mid_answer_leave_no_socket_behind_the_event_loop(
    real_env: EnvTest,
) -> None:
    """A LIST cancelled while the server answers (a reflector stopped, a deadline) leaves
    no TLS socket open once the client and its event loop are closed.

    aiohttp closes such a connection with a TLS close handshake; on CPython < 3.12.8 its
    socket can outlive the loop for good (python/cpython gh-118950), a ResourceWarning
    when collected. Each round is a whole program run (its own loop); before the fix,
    20-24 of 300 rounds leaked a socket here.
    """

    async def seed() -> str:
        async with KubeClient(real_env.client_config) as client:
            ns = await create_namespace(client)
            blob = "x" * 20_000
            for start in range(0, 300, 30):  # a 6 MB list: answers take a while
                await asyncio.gather(*(
                    client.create(CONFIGMAPS, configmap(f"cm-{i}", {"v": blob}), ns)
                    for i in range(start, start + 30)))
            return ns

    async def cancelled_list(ns: str, after: float) -> None:
        async with KubeClient(real_env.client_config) as client:
            listing = asyncio.create_task(client.list(CONFIGMAPS, ns, ListOptions()))
            await asyncio.sleep(after)
            listing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listing

    ns = asyncio.run(seed())
    rounds = random.Random(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(80):
            asyncio.run(cancelled_list(ns, rounds.uniform(0.005, 0.08)))
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
