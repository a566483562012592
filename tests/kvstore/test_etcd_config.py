"""EtcdClientConfig: endpoint lists, Cilium-format config files, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.kvstore.etcd_config import EtcdClientConfig, EtcdEndpoint

HOSTS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
)


@given(host=HOSTS, port=st.integers(1, 65535), tls=st.booleans())
def test_endpoint_url_round_trips(host: str, port: int, tls: bool) -> None:
    endpoint = EtcdEndpoint(host, port, tls)
    assert EtcdEndpoint.parse(str(endpoint)) == endpoint
    assert EtcdEndpoint.parse(endpoint.target) == EtcdEndpoint(host, port, False)


@given(
    endpoints=st.lists(st.tuples(HOSTS, st.integers(1, 65535)), min_size=1, max_size=5),
    scheme=st.sampled_from(["http://", "https://", ""]),
)
def test_comma_separated_list_keeps_order(endpoints: list[tuple[str, int]], scheme: str) -> None:
    text = ",".join(f"{scheme}{h}:{p}" for h, p in endpoints)
    config = EtcdClientConfig.from_endpoints(text)
    assert [(e.host, e.port) for e in config.endpoints] == endpoints
    assert config.tls == (scheme == "https://")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("127.0.0.1", "endpoints[0]"),
        ("a:1,b", "endpoints[1]"),
        ("ftp://a:1", "endpoints[0]"),
        ("a:99999", "endpoints[0]"),
        ("", "endpoints"),
        ("http://a:1,https://b:2", "endpoints"),
    ],
    ids=["no-port", "second-bad", "scheme", "port-range", "empty", "mixed-schemes"],
)
def test_bad_endpoints_name_the_field(text: str, field: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        EtcdClientConfig.from_endpoints(text)
    assert caught.value.field == field


def test_files_imply_tls_on_every_endpoint() -> None:
    config = EtcdClientConfig.from_endpoints("a:1,b:2", ca_file="ca.pem")
    assert config.tls
    assert all(e.tls for e in config.endpoints)
    assert config.describe() == "https://a:1,https://b:2"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cert_file": "c.pem"}, "key-file"),
        ({"key_file": "k.pem"}, "cert-file"),
        ({"username": "root"}, "password"),
        ({"password": "pw"}, "username"),
    ],
    ids=["cert-alone", "key-alone", "user-alone", "password-alone"],
)
def test_pairs_must_come_together(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        EtcdClientConfig.from_endpoints("a:1", **kwargs)
    assert caught.value.field == field


def test_password_is_not_in_repr() -> None:
    config = EtcdClientConfig.from_endpoints("a:1", username="root", password="s3cret")
    assert "s3cret" not in repr(config)


def test_cilium_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etcd.config"
    path.write_text(
        "---\n"
        "endpoints:\n"
        "- https://10.0.0.1:2379\n"
        "- https://10.0.0.2:2379\n"
        "trusted-ca-file: /var/lib/etcd-secrets/etcd-client-ca.crt\n"
        "key-file: /var/lib/etcd-secrets/etcd-client.key\n"
        "cert-file: /var/lib/etcd-secrets/etcd-client.crt\n"
        "dial-timeout: 5s\n"
    )
    config = EtcdClientConfig.from_file(path)
    assert config.endpoints == (
        EtcdEndpoint("10.0.0.1", 2379, True), EtcdEndpoint("10.0.0.2", 2379, True)
    )
    assert config.ca_file == "/var/lib/etcd-secrets/etcd-client-ca.crt"
    assert config.cert_file == "/var/lib/etcd-secrets/etcd-client.crt"
    assert config.key_file == "/var/lib/etcd-secrets/etcd-client.key"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("endpoints: []\n", "endpoints"),
        ("endpoint: [a:1]\n", "endpoint"),
        ("endpoints: [a:1]\ncert-file: 3\nkey-file: k\n", "cert-file"),
        ("endpoints: [a:1]\ninsecure-skip-tls-verify: true\n", "insecure-skip-tls-verify"),
        ("- a:1\n", "etcd-config"),
        ("endpoints: [a:1\n", "etcd-config"),
    ],
    ids=["no-endpoints", "typo", "wrong-type", "skip-verify", "not-a-mapping", "bad-yaml"],
)
def test_bad_config_file_names_the_key(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "etcd.config"
    path.write_text(text)
    with pytest.raises(errors.ConfigError) as caught:
        EtcdClientConfig.from_file(path)
    assert caught.value.field == field


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read") as caught:
        EtcdClientConfig.from_file(tmp_path / "absent.yaml")
    assert caught.value.field == "etcd-config"
    config = EtcdClientConfig.from_endpoints("a:1", ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(errors.ConfigError) as caught:
        config.read_credentials()
    assert caught.value.field == "trusted-ca-file"
