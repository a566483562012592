"""Tests for kubemirror.client.config: kubeconfig contexts and merging, exec plugins, in-cluster.

Loading is checked here; connecting with TLS, client certificates and bearer tokens
to the project's API server is checked in test_http.py.
"""

from __future__ import annotations

import base64
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

from kubemirror import errors
from kubemirror.client import config
from tests.certs import Pki, make_pki
from tests.client.kubeconfigs import kubeconfig, write


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def test_single_file_with_token_ca_data_and_namespace(tmp_path: Path, pki: Pki) -> None:
    ca_data = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    path = write(tmp_path / "config", kubeconfig(
        {"c1": {"server": "https://127.0.0.1:6443", "certificate-authority-data": ca_data}},
        {"u1": {"token": "s3cr3t"}},
        {"ctx": ("c1", "u1", "team-a")},
        current="ctx",
    ))
    cfg = await config.load_kube_config(path)
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.namespace == "team-a"
    assert cfg.context_name == "ctx"
    assert isinstance(cfg.ssl_context, ssl.SSLContext)
    assert cfg.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert await cfg.authorization() == "Bearer s3cr3t"
    assert "s3cr3t" not in repr(cfg)


async def test_kubeconfig_env_merges_files_first_definition_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a.yaml", kubeconfig(
        {"shared": {"server": "http://127.0.0.1:1111"}},
        {"alice": {"token": "alice-token"}},
        {"dev": ("shared", "alice", None)},
        current="dev",
    ))
    second = write(tmp_path / "b.yaml", kubeconfig(
        {"shared": {"server": "http://127.0.0.1:9999"}, "prod": {"server": "http://127.0.0.1:2222"}},
        {"bob": {"token": "bob-token"}},
        {"prod": ("prod", "bob", "prod-ns"), "dev": ("prod", "bob", None)},
        current="prod",
    ))
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(first), str(tmp_path / "missing"),
                                                      str(second)]))
    dev = await config.load_kube_config()
    assert dev.context_name == "dev"  # the first file's current-context wins
    assert dev.server == "http://127.0.0.1:1111"  # and its definitions of shared names
    assert await dev.authorization() == "Bearer alice-token"
    prod = await config.load_kube_config(context="prod")
    assert prod.server == "http://127.0.0.1:2222"
    assert prod.namespace == "prod-ns"
    assert await prod.authorization() == "Bearer bob-token"
    auto = await config.load_config(context="prod")
    assert auto.server == prod.server
    given = await config.load_config(second, context="prod")  # a path beats $KUBECONFIG
    assert given.server == "http://127.0.0.1:2222"
    with pytest.raises(errors.ConfigError, match="no kubeconfig file found"):
        await config.load_config(tmp_path / "missing")


async def test_exec_plugin_provides_and_refreshes_the_token(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import datetime, json, os, pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',\n"
        "  'kind': 'ExecCredential', 'status': {'token': f'exec-{n}-' + os.environ['EXTRA'],\n"
        "  'expirationTimestamp': exp.strftime('%Y-%m-%dT%H:%M:%SZ')}}))\n"
    )
    path = write(tmp_path / "config", kubeconfig(
        {"c": {"server": "http://127.0.0.1:8080"}},
        {"u": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable, "args": [str(plugin)],
                        "env": [{"name": "EXTRA", "value": "x"}],
                        "interactiveMode": "Never"}}},
        {"ctx": ("c", "u", None)},
        current="ctx",
    ))
    cfg = await config.load_kube_config(path)
    # The credential expires within the library's 5-minute skew, so each call re-runs the plugin.
    assert await cfg.authorization() == "Bearer exec-2-x"
    assert await cfg.authorization() == "Bearer exec-3-x"


async def test_failing_exec_plugin_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "config", kubeconfig(
        {"c": {"server": "http://127.0.0.1:8080"}},
        {"u": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]}}},
        {"ctx": ("c", "u", None)},
        current="ctx",
    ))
    with pytest.raises(errors.ConfigError, match="returned 3"):
        await config.load_kube_config(path)


async def test_client_certificate_files_are_loaded(tmp_path: Path, pki: Pki) -> None:
    path = write(tmp_path / "config", kubeconfig(
        {"c": {"server": "https://127.0.0.1:6443", "certificate-authority": str(pki.ca_cert)}},
        {"u": {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)}},
        {"ctx": ("c", "u", None)},
        current="ctx",
    ))
    cfg = await config.load_kube_config(path)
    assert cfg.ssl_context is not None
    assert await cfg.authorization() is None


@pytest.mark.parametrize(
    ("doc", "context", "field", "match"),
    [
        (kubeconfig({"c": {"server": "http://x:1"}}, {}, {"a": ("c", "u", None)}), None,
         "context", "no current-context"),
        (kubeconfig({"c": {"server": "http://x:1"}}, {}, {"a": ("c", "u", None)}, "a"), "b",
         "context", "context not found"),
        (kubeconfig({"c": {"server": "https://x:1", "certificate-authority": "/nonexistent"}},
                    {}, {"a": ("c", "u", None)}, "a"), None, "kubeconfig", "invalid kubeconfig"),
    ],
    ids=["no-current-context", "unknown-context", "missing-ca-file"],
)
async def test_kubeconfig_errors_name_the_culprit(
    tmp_path: Path, doc: dict[str, Any], context: str | None, field: str, match: str
) -> None:
    path = write(tmp_path / "config", doc)
    with pytest.raises(errors.ConfigError, match=match) as info:
        await config.load_kube_config(path, context=context)
    assert info.value.field == field


async def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="no kubeconfig"):
        await config.load_kube_config(tmp_path / "nope")


async def test_incluster_config_reads_the_service_account(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("kube-system")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(pki.ca_cert.read_bytes())
    cfg = config.load_incluster_config(
        token_file=tmp_path / "token", ca_file=ca,
        environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"})
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.namespace == "kube-system"
    assert await cfg.authorization() == "Bearer sa-token"


def test_incluster_config_outside_a_cluster_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not in a cluster"):
        config.load_incluster_config(token_file=tmp_path / "t", ca_file=tmp_path / "c", environ={})


async def test_for_server_and_bad_urls(pki: Pki) -> None:
    cfg = config.ClientConfig.for_server("https://127.0.0.1:1/", token="t", ca_file=pki.ca_cert)
    assert cfg.server == "https://127.0.0.1:1"
    assert await cfg.authorization() == "Bearer t"
    assert "Bearer" not in repr(cfg)
    with pytest.raises(errors.ConfigError, match="http"):
        config.ClientConfig.for_server("127.0.0.1:6443")
    with pytest.raises(errors.ConfigError, match="certificate authority"):
        config.ClientConfig.for_server("https://127.0.0.1:1", ca_file="/nonexistent.crt")
