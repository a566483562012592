"""``serve`` configuration: YAML file and flags, and the refusal of unsafe listeners."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kubemirror import errors
from kubemirror.cli.serve_config import (
    ClusterSpec,
    ServeConfig,
    ServeFlags,
    check_security,
    is_loopback,
    load_serve_config,
)
from kubemirror.testing import make_self_signed_cert

CONFIG = """
listen: {host: 0.0.0.0, port: 7443}
tls: {cert: /c.crt, key: /c.key}
auth: {tokenFile: TOKENS}
readOnly: true
kubeconfig: /kc
resources: [pods, deployments.apps]
clusters:
  - name: eu
    context: eu-admin
  - name: us
    context: us-admin
    kubeconfig: /us-kc
    resources: pods
"""


def _write(tmp_path: Path, text: str) -> str:
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\nt1\n\nt2\n")
    path = tmp_path / "serve.yaml"
    path.write_text(text.replace("TOKENS", str(tokens)))
    return str(path)


def test_config_file(tmp_path: Path) -> None:
    config = load_serve_config(ServeFlags(config=_write(tmp_path, CONFIG)))
    assert config.clusters == (
        ClusterSpec("eu", "eu-admin", "/kc", ("pods", "deployments.apps")),
        ClusterSpec("us", "us-admin", "/us-kc", ("pods",)),
    )
    assert (config.host, config.port, config.tls_cert, config.tls_key) == (
        "0.0.0.0",
        7443,
        "/c.crt",
        "/c.key",
    )
    assert config.tokens == ("t1", "t2")
    assert config.read_only
    assert config.metrics
    assert "t1" not in repr(config), "tokens stay out of reprs"


def test_flags_override_the_file(tmp_path: Path) -> None:
    config = load_serve_config(
        ServeFlags(
            config=_write(tmp_path, CONFIG),
            clusters=("east=ctx-east", "west"),
            resources=("svc,pods", "svc"),
            host="127.0.0.1",
            port=0,
            tokens=("t0",),
            read_only=False,
        )
    )
    assert config.clusters == (
        ClusterSpec("east", "ctx-east", "/kc", ("svc", "pods")),
        ClusterSpec("west", None, "/kc", ("svc", "pods")),
    )
    assert (config.host, config.port, config.read_only) == ("127.0.0.1", 0, False)
    assert config.tokens == ("t0", "t1", "t2")


@pytest.mark.parametrize(
    ("text", "flags", "needle"),
    [
        ("listne: {}\n", ServeFlags(), "listne"),
        ("clusters: [{name: a, contxt: b}]\nresources: [pods]\n", ServeFlags(), "contxt"),
        ("clusters: [{name: a}]\n", ServeFlags(), "no resources to mirror for cluster 'a'"),
        ("listen: {port: x}\n", ServeFlags(), "listen.port"),
        ("", ServeFlags(clusters=("a=1", "a=2"), resources=("pods",)), "unique"),
        ("", ServeFlags(clusters=("x/y=1",), resources=("pods",)), "NAME=CONTEXT"),
        ("[1, 2]\n", ServeFlags(), "must be a dict"),
        ("a: [\n", ServeFlags(), "not valid YAML"),
    ],
    ids=["typo", "cluster-typo", "no-resources", "bad-port", "duplicate", "slash", "list", "yaml"],
)
def test_bad_config_names_the_culprit(
    tmp_path: Path, text: str, flags: ServeFlags, needle: str
) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises((errors.ConfigError, errors.CommandError)) as info:
        load_serve_config(dataclasses.replace(flags, config=str(path)))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
    ids=str,
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_tls_and_tokens(tmp_path: Path) -> None:
    cert, key, _ = make_self_signed_cert(tmp_path)
    with pytest.raises(errors.CommandError, match=r"refusing to listen on 0\.0\.0\.0.*TLS"):
        check_security(ServeConfig(host="0.0.0.0"))
    with pytest.raises(errors.CommandError, match="bearer tokens"):
        check_security(ServeConfig(host="0.0.0.0", tls_cert=cert, tls_key=key))
    assert check_security(ServeConfig(host="0.0.0.0", insecure=True)) is None
    secure = check_security(ServeConfig(host="0.0.0.0", tls_cert=cert, tls_key=key, tokens=("t",)))
    assert secure is not None


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    cert, key, _ = make_self_signed_cert(tmp_path)
    with pytest.raises(errors.CommandError, match="bearer tokens need TLS"):
        check_security(ServeConfig(tokens=("t",)))
    with pytest.raises(errors.CommandError, match="both --tls-cert and --tls-key"):
        check_security(ServeConfig(tls_cert=cert))
    with pytest.raises(errors.CommandError, match="cannot load the TLS certificate"):
        check_security(ServeConfig(tls_cert=key, tls_key=cert))
    assert check_security(ServeConfig()) is None


def test_accepted_hosts_and_origins_from_flags_and_file(tmp_path: Path) -> None:
    text = CONFIG.replace(
        "listen: {host: 0.0.0.0, port: 7443}",
        "listen: {host: 0.0.0.0, port: 7443, acceptHosts: ['^mirror\\.corp$'],"
        " allowedOrigins: ['https://dash.corp']}",
    )
    path = _write(tmp_path, text)
    config = load_serve_config(ServeFlags(config=path))
    assert config.accept_hosts == (r"^mirror\.corp$",)
    assert config.allowed_origins == ("https://dash.corp",)
    flagged = load_serve_config(ServeFlags(config=path, accept_hosts=("^other$",)))
    assert flagged.accept_hosts == ("^other$",)
    assert load_serve_config(ServeFlags(config=_write(tmp_path, CONFIG))).accept_hosts == ()


def test_a_bad_accept_hosts_pattern_is_named(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not a regular expression") as info:
        load_serve_config(ServeFlags(config=_write(tmp_path, CONFIG), accept_hosts=("([",)))
    assert (info.value.field, info.value.expression) == ("accept-hosts", "([")


def test_storage_from_flag_or_file_and_hidden_from_repr(tmp_path: Path) -> None:
    path = _write(tmp_path, CONFIG)
    assert load_serve_config(ServeFlags(config=path)).storage == "memory"
    url = "postgresql://mirror:secret@db.corp/kubemirror"
    filed = load_serve_config(ServeFlags(config=_write(tmp_path, CONFIG + f"storage: {url}\n")))
    assert filed.storage == url
    assert "secret" not in repr(filed)
    flagged = load_serve_config(ServeFlags(config=path, storage="postgres://db/k"))
    assert flagged.storage == "postgres://db/k"


def test_a_bad_storage_is_named_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="memory or a postgresql") as info:
        load_serve_config(
            ServeFlags(config=_write(tmp_path, CONFIG), storage="mysql://u:pw@db/k")
        )
    assert info.value.expression == "db/k"
    assert "pw" not in str(info.value)


def test_gc_freezing_is_on_by_default_and_turned_off_by_flag_or_file(tmp_path: Path) -> None:
    path = _write(tmp_path, CONFIG)
    assert load_serve_config(ServeFlags(config=path)).freeze_gc is True
    assert load_serve_config(ServeFlags(config=path, freeze_gc=False)).freeze_gc is False
    filed = _write(tmp_path, CONFIG + "freezeGc: false\n")
    assert load_serve_config(ServeFlags(config=filed)).freeze_gc is False
    assert load_serve_config(ServeFlags(config=filed, freeze_gc=True)).freeze_gc is True
    with pytest.raises(errors.ConfigError, match="freezeGc"):
        load_serve_config(ServeFlags(config=_write(tmp_path, CONFIG + "freezeGc: often\n")))
