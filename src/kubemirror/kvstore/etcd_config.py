"""``EtcdClientConfig``: where an etcd cluster is and how to authenticate to it.

Part of the kvstore layer (seed: Cilium's ``etcd.config`` file and etcdctl's flags).
A frozen value object holding the member endpoints, the TLS files (CA bundle, client
certificate and key) and username/password auth, built from a comma-separated
endpoint list (``from_endpoints``) or a YAML file in Cilium's format (``from_file``).
Pure and synchronous: it only reads the YAML file; ``EtcdBackend`` opens the
connections.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kubemirror import errors

__all__ = ["DEFAULT_ENDPOINT", "EtcdClientConfig", "EtcdEndpoint"]

DEFAULT_ENDPOINT = "127.0.0.1:2379"

# Keys of Cilium's / etcd's client YAML that tune the Go client only; accepted and ignored.
_GO_CLIENT_ONLY = frozenset({
    "auto-sync-interval", "dial-timeout", "dial-keep-alive-time", "dial-keep-alive-timeout",
    "max-call-send-msg-size", "max-call-recv-msg-size", "reject-old-cluster",
    "permit-without-stream", "keepalive-timeout",
})
_FILE_KEYS = frozenset({
    "endpoints", "trusted-ca-file", "cert-file", "key-file", "username", "password",
    "insecure-transport", "insecure-skip-tls-verify",
})


@dataclass(frozen=True, slots=True)
class EtcdEndpoint:
    """One member's client address: ``host``, ``port`` and whether it speaks TLS."""

    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, text: str, *, field_name: str = "endpoints") -> EtcdEndpoint:
        """Parse ``https://h:p``, ``http://h:p``, ``etcd://h:p`` or ``h:p``.

        Raises ``ConfigError`` naming ``field_name`` and quoting ``text``.
        """
        rest = text.strip()
        tls = False
        if "://" in rest:
            scheme, _, rest = rest.partition("://")
            if scheme not in ("http", "https", "etcd"):
                raise errors.ConfigError(
                    f"unknown scheme {scheme!r} (use http://, https:// or host:port)",
                    field=field_name, expression=text,
                )
            tls = scheme == "https"
        rest = rest.rstrip("/")
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise errors.ConfigError("expected host:port", field=field_name, expression=text)
        return cls(host, int(port), tls)

    @property
    def target(self) -> str:
        """``host:port`` as gRPC dials it."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.target}"


@dataclass(frozen=True, slots=True)
class EtcdClientConfig:
    """How to reach one etcd cluster; immutable, safe to share between backends.

    A backend connects to one endpoint at a time and moves to the next one when that
    member becomes unreachable. TLS is used when any endpoint is ``https://`` or a
    file is given; then every endpoint uses it (mixing is a ``ConfigError``). Without
    ``ca_file`` the system roots verify the server. ``cert_file`` and ``key_file``
    (the client certificate) come together; so do ``username`` and ``password``.
    """

    endpoints: tuple[EtcdEndpoint, ...] = (EtcdEndpoint("127.0.0.1", 2379),)
    # PEM bundle of the CAs that sign the members' serving certificates.
    ca_file: str | None = None
    # PEM client certificate and its private key, for --client-cert-auth clusters.
    cert_file: str | None = None
    key_file: str | None = None
    # etcd's own user auth (an auth token is fetched per connection).
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise errors.ConfigError("at least one endpoint is needed", field="endpoints")
        if (self.cert_file is None) != (self.key_file is None):
            raise errors.ConfigError(
                "cert-file and key-file must be given together",
                field="cert-file" if self.cert_file is None else "key-file",
            )
        if (self.username is None) != (self.password is None):
            raise errors.ConfigError(
                "username and password must be given together",
                field="username" if self.username is None else "password",
            )
        schemes = {e.tls for e in self.endpoints}
        if len(schemes) > 1:
            raise errors.ConfigError(
                "mixes http:// and https:// endpoints", field="endpoints",
                expression=",".join(str(e) for e in self.endpoints),
            )
        if self.tls and not all(e.tls for e in self.endpoints):
            object.__setattr__(
                self, "endpoints", tuple(replace(e, tls=True) for e in self.endpoints)
            )

    @property
    def tls(self) -> bool:
        """Whether connections use TLS."""
        return any(e.tls for e in self.endpoints) or any(
            f is not None for f in (self.ca_file, self.cert_file, self.key_file)
        )

    @classmethod
    def from_endpoints(
        cls,
        endpoints: str | Iterable[str] = DEFAULT_ENDPOINT,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> EtcdClientConfig:
        """A config from ``"h1:p1,h2:p2"`` (or a list of such) and the optional files."""
        items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        parsed = tuple(
            EtcdEndpoint.parse(item, field_name=f"endpoints[{i}]")
            for i, item in enumerate(items) if item.strip()
        )
        return cls(parsed, ca_file, cert_file, key_file, username, password)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> EtcdClientConfig:
        """Read a Cilium-style etcd config (YAML) file.

        Keys: ``endpoints`` (a list, or one string), ``trusted-ca-file``,
        ``cert-file``, ``key-file``, ``username``, ``password``. Go-client tuning keys
        (``dial-timeout``, ``auto-sync-interval``, ...) are accepted and ignored;
        ``insecure-skip-tls-verify: true`` is refused (the Python gRPC client always
        verifies). Any other key, or a wrong type, is a ``ConfigError`` naming it.
        """
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot read etcd config: {exc.strerror}", field="etcd-config", expression=where
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise errors.ConfigError(
                f"not valid YAML: {exc}", field="etcd-config", expression=where
            ) from exc
        if not isinstance(data, Mapping):
            raise errors.ConfigError(
                "expected a YAML mapping (endpoints:, trusted-ca-file:, ...)",
                field="etcd-config", expression=where,
            )
        return cls.from_mapping(data, source=where)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "") -> EtcdClientConfig:
        """``from_file`` without the file: validate an already parsed mapping."""
        unknown = sorted(str(k) for k in data if k not in _FILE_KEYS | _GO_CLIENT_ONLY)
        if unknown:
            raise errors.ConfigError(
                f"unknown key {unknown[0]!r} in etcd config {source}".rstrip(),
                field=unknown[0],
            )
        if data.get("insecure-skip-tls-verify"):
            raise errors.ConfigError(
                "skipping TLS verification is not supported; give trusted-ca-file",
                field="insecure-skip-tls-verify",
            )
        raw = data.get("endpoints")
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
            raise errors.ConfigError(
                "expected a non-empty list of endpoint URLs", field="endpoints",
                expression=repr(raw),
            )

        def text(key: str) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise errors.ConfigError("expected a non-empty string", field=key,
                                         expression=repr(value))
            return value

        return cls.from_endpoints(
            raw,
            ca_file=text("trusted-ca-file"),
            cert_file=text("cert-file"),
            key_file=text("key-file"),
            username=text("username"),
            password=text("password"),
        )

    def read_credentials(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The PEM bytes of (CA bundle, client key, client certificate).

        Blocking file reads; raises ``ConfigError`` naming the file that cannot be read.
        """
        def read(name: str, path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise errors.ConfigError(
                    f"cannot read: {exc.strerror}", field=name, expression=path
                ) from exc

        return (
            read("trusted-ca-file", self.ca_file),
            read("key-file", self.key_file),
            read("cert-file", self.cert_file),
        )

    def describe(self) -> str:
        """The endpoints, comma-separated, for messages."""
        return ",".join(str(e) for e in self.endpoints)
