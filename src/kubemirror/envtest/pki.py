"""Certificates and keys for a throw-away kube-apiserver: one CA, a serving certificate,
client certificates, and the service-account signing key.

Part of the ``envtest`` layer. Everything is generated in memory with the
``cryptography`` package (the ``kubemirror[envtest]`` extra) and written as PEM files
readable by the owner only. Certificates are valid for a day, which outlives any test
run, and use ECDSA P-256 keys (fast to generate; kube-apiserver accepts them for TLS,
client certificates and service-account tokens alike).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubemirror import errors

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CertificateAuthority",
    "KeyPair",
    "require_cryptography",
    "service_account_key_pair",
]

_VALIDITY = datetime.timedelta(days=1)
_CLOCK_SKEW = datetime.timedelta(minutes=5)


def require_cryptography() -> None:
    """Raise ``CommandError`` with the fix when the ``cryptography`` package is missing."""
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:
        raise errors.CommandError(
            "kubemirror envtest needs the cryptography package",
            hint="pip install 'kubemirror[envtest]'",
        ) from exc


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate (or public key) and its private key, as PEM bytes."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``NAME.crt`` and ``NAME.key`` (mode 0600) into ``directory``."""
        cert_path = directory / f"{name}.crt"
        key_path = directory / f"{name}.key"
        _write_private(cert_path, self.cert_pem)
        _write_private(key_path, self.key_pem)
        return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates.

    kube-apiserver trusts it for client certificates (``--client-ca-file``) and
    clients trust it for the serving certificate, as in a kubeadm cluster.
    """

    def __init__(self, common_name: str = "kubemirror-envtest-ca") -> None:
        require_cryptography()
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID

        self._key = _new_key()
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = _key_pem(self._key)

    def _issue(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: Sequence[x509.GeneralName] = (),
    ) -> KeyPair:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def serving_pair(self, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> KeyPair:
        """A TLS server certificate for ``hosts`` (IP addresses or DNS names)."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        return self._issue(subject, ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def client_pair(self, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate: kube-apiserver reads the user from the common name and
        the groups from the organizations (``system:masters`` is the admin group)."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH)


def service_account_key_pair() -> KeyPair:
    """The key pair that signs (private) and verifies (public) service-account tokens;
    ``cert_pem`` holds the public key."""
    require_cryptography()
    from cryptography.hazmat.primitives import serialization

    key = _new_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(public, _key_pem(key))
