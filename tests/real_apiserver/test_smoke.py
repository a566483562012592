"""The smallest proof that the real server is in the loop: LIST through KubeClient."""

from __future__ import annotations

from kubemirror.client import KubeClient, ListOptions
from tests.real_apiserver.conftest import CONFIGMAPS, REAL, ServerUnderTest, configmap


async def test_create_then_list_configmaps(api: ServerUnderTest) -> None:
    created = await api.client.create(CONFIGMAPS, configmap("one"), api.namespace)
    listed = await api.client.list(CONFIGMAPS, api.namespace, ListOptions())
    names = [item["metadata"]["name"] for item in listed.items]
    assert "one" in names
    assert [i for i in listed.items if i["metadata"]["name"] == "one"] == [created]
    if api.kind == REAL:  # etcd revisions: the list is at least as new as the write
        assert int(listed.resource_version) >= int(created["metadata"]["resourceVersion"])


async def test_real_server_reports_its_version(real_client: KubeClient) -> None:
    version = await real_client.request("GET", "/version")
    assert version["major"] == "1"
    assert version["minor"].startswith("37")
