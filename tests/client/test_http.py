"""kubemirror.client over real HTTP(S) against the project's API server.

TLS with a generated CA, bearer tokens, client certificates, an exec credential
plugin, discovery (including a CRD created at run time) and error mapping.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kubemirror import errors
from kubemirror.client import ClientConfig, Discovery, KubeClient, ListOptions, load_kube_config
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import PODS, make_pod, new_storage
from kubemirror.types import GroupVersionResource
from tests.certs import Pki, make_pki
from tests.client.kubeconfigs import exec_user, one_context, write
from tests.faultproxy import FaultProxy

TOKEN = "t0ken-very-secret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.load_verify_locations(pki.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest_asyncio.fixture
async def tls_server(pki: Pki) -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(new_storage(), ssl_context=server_tls(pki), tokens={TOKEN},
                             ca_data=pki.ca_cert.read_bytes()) as server:
        yield server


@pytest_asyncio.fixture
async def plain_server() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(new_storage()) as server:
        yield server


async def test_tls_and_bearer_token_from_kubeconfig(tls_server: KubeApiServer,
                                                    tmp_path: Path) -> None:
    path = tls_server.write_kubeconfig(tmp_path / "config", token=TOKEN)
    async with KubeClient(await load_kube_config(path)) as client:
        created = await client.create(PODS, make_pod("web-1"), "default")
        page = await client.list(PODS, "default", ListOptions())
        assert [p["metadata"]["name"] for p in page.items] == ["web-1"]
        assert page.items[0]["kind"] == "Pod"  # filled in from the list kind
        got = await client.get(PODS, "web-1", "default")
        assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_wrong_token_is_unauthorized(tls_server: KubeApiServer, tmp_path: Path) -> None:
    path = tls_server.write_kubeconfig(tmp_path / "config", token="wrong")
    async with KubeClient(await load_kube_config(path)) as client:
        with pytest.raises(errors.UnauthorizedError) as info:
            await client.list(PODS, "default", ListOptions())
    assert info.value.code == 401
    assert "wrong" not in str(info.value)


async def test_untrusted_server_certificate_is_a_chained_transport_error(
    tls_server: KubeApiServer,
) -> None:
    config = ClientConfig.for_server(tls_server.url, token=TOKEN)  # system CAs only
    async with KubeClient(config) as client:
        with pytest.raises(errors.TransportError) as info:
            await client.list(PODS, "default", ListOptions())
    assert isinstance(info.value.__cause__, Exception)
    assert "certificate" in str(info.value).lower()


async def test_client_certificate_authentication(pki: Pki, tmp_path: Path) -> None:
    context = server_tls(pki, require_client_cert=True)
    async with KubeApiServer(new_storage(), ssl_context=context) as server:
        path = write(tmp_path / "config", one_context(
            {"server": server.url, "certificate-authority": str(pki.ca_cert)},
            {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)},
        ))
        async with KubeClient(await load_kube_config(path)) as client:
            page = await client.list(PODS, None, ListOptions())
            assert page.items == []
        no_cert = ClientConfig.for_server(server.url, ca_file=pki.ca_cert)
        async with KubeClient(no_cert) as client:
            with pytest.raises(errors.TransportError):
                await client.list(PODS, None, ListOptions())


async def test_exec_plugin_token_is_sent(tls_server: KubeApiServer, tmp_path: Path,
                                         pki: Pki) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',\n"
        f"  'kind': 'ExecCredential', 'status': {{'token': {TOKEN!r}}}}}))\n"
    )
    path = write(tmp_path / "config", one_context(
        {"server": tls_server.url, "certificate-authority": str(pki.ca_cert)},
        exec_user(plugin, "client.authentication.k8s.io/v1beta1"),
    ))
    async with KubeClient(await load_kube_config(path)) as client:
        assert (await client.list(PODS, None, ListOptions())).items == []


async def watch_until_error(client: KubeClient, resource_version: str) -> None:
    """Open a watch; raise the error it answers with (at open or as an ERROR event)."""
    stream = await client.watch(PODS, "default", ListOptions(
        resource_version=resource_version, timeout_seconds=1))
    async with stream:
        async for event in stream:
            if event["type"] == "ERROR":
                raise errors.api_error_from_status(event["object"])


async def test_errors_are_mapped_and_connection_failures_wrapped(
    plain_server: KubeApiServer,
) -> None:
    async with KubeClient(ClientConfig(plain_server.url)) as client:
        with pytest.raises(errors.NotFoundError) as not_found:
            await client.get(PODS, "missing", "default")
        assert not_found.value.reason == "NotFound"
        await client.create(PODS, make_pod("a"), "default")
        with pytest.raises(errors.ConflictError):
            await client.create(PODS, make_pod("a"), "default")
        with pytest.raises(errors.GoneError):
            await watch_until_error(client, "0another0instance.5")
        with pytest.raises(errors.BadRequestError):
            await client.list(PODS, "default", ListOptions(label_selector="a in (b"))
    async with KubeClient(ClientConfig("http://127.0.0.1:1")) as client:
        with pytest.raises(errors.TransportError) as refused:
            await client.list(PODS, None, ListOptions())
        assert isinstance(refused.value.__cause__, OSError)


async def test_watch_streams_events_and_ends_at_timeout(plain_server: KubeApiServer) -> None:
    async with KubeClient(ClientConfig(plain_server.url)) as client:
        page = await client.list(PODS, "default", ListOptions())
        await client.create(PODS, make_pod("a"), "default")
        await client.delete(PODS, "a", "default")
        stream = await client.watch(PODS, "default", ListOptions(
            resource_version=page.resource_version, timeout_seconds=1))
        seen = []
        async with stream:
            async for event in stream:
                if event["type"] != "BOOKMARK":
                    seen.append((event["type"], event["object"]["metadata"]["name"]))
        assert seen == [("ADDED", "a"), ("DELETED", "a")]
        assert stream.lines >= 2


async def test_discovery_resolves_names_and_finds_new_crds(plain_server: KubeApiServer) -> None:
    async with KubeClient(ClientConfig(plain_server.url)) as client:
        discovery = Discovery(client)
        for name in ("pods", "po", "pod", "Pod"):
            assert (await discovery.resolve(name)).gvr == PODS
        deploy = await discovery.resolve("deploy")
        assert deploy.gvr == GroupVersionResource("apps", "v1", "deployments")
        assert (await discovery.resolve("deployments.apps")).gvr == deploy.gvr
        assert not (await discovery.resolve("nodes")).namespaced
        refreshes = discovery.refreshes
        with pytest.raises(errors.ResourceNotFoundError, match="widgets"):
            await discovery.resolve("widgets")
        assert discovery.refreshes == refreshes + 1  # a miss refreshes once
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                               "shortNames": ["wd"]},
                     "versions": [{"name": "v1", "served": True, "storage": True}]},
        }
        await client.create(GroupVersionResource("apiextensions.k8s.io", "v1",
                                                 "customresourcedefinitions"), crd)
        widget = await discovery.resolve("wd")
        assert widget.gvr == GroupVersionResource("example.com", "v1", "widgets")
        assert widget.kind == "Widget"


async def test_kubeconfig_proxy_url_is_used(plain_server: KubeApiServer, tmp_path: Path) -> None:
    async with FaultProxy(plain_server.url) as proxy:
        path = write(tmp_path / "config", one_context(
            {"server": plain_server.url, "proxy-url": proxy.url}, {}
        ))
        config = await load_kube_config(path)
        assert config.proxy == proxy.url
        async with KubeClient(config) as client:
            assert (await client.list(PODS, None, ListOptions())).items == []
        assert proxy.stats.requests == ["GET /api/v1/pods"]


async def test_401_reruns_the_exec_plugin_once(tls_server: KubeApiServer, tmp_path: Path,
                                               pki: Pki) -> None:
    """The plugin's first token is rejected; after the 401 it is run again and succeeds."""
    counter = tmp_path / "count"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        f"token = 'stale' if n == 1 else {TOKEN!r}\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',\n"
        "  'kind': 'ExecCredential', 'status': {'token': token}}))\n"
    )
    path = write(tmp_path / "config", one_context(
        {"server": tls_server.url, "certificate-authority": str(pki.ca_cert)},
        exec_user(plugin, "client.authentication.k8s.io/v1"),
    ))
    async with KubeClient(await load_kube_config(path)) as client:
        assert (await client.list(PODS, None, ListOptions())).items == []
    assert counter.read_text() == "2"
