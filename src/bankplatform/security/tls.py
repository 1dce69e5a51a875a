"""TLS certificates for local and test use (``bankplatform tls init``).

A bank's own PKI issues the real ones. This makes a local certificate authority
(an ECDSA P-256 key and a self-signed CA certificate, ``ca.crt``) and, signed
by it, one key and certificate per service for the given host names, with the
``cryptography`` package (no ``openssl`` shell-out); every key file is readable
by its owner only. A service's certificate file holds its certificate followed
by the CA's, so a client may trust either that file or ``ca.crt``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 397  # the longest validity browsers accept for a TLS certificate
CA_VALID_DAYS = 3 * 365
CA_NAME = "bankplatform local CA"
# The workspace's CA and the certificates it issued (git-ignored).
WORKSPACE_TLS_FOLDER = Path(".bankplatform-tls")


@dataclass(frozen=True)
class LocalCA:
    """The local certificate authority: its certificate and key files."""

    cert_file: Path
    key_file: Path

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The CA certificate and its key."""
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            msg = f"{self.key_file}: not an EC key"
            raise ValueError(msg)
        return cert, key


def local_ca(folder: Path) -> LocalCA:
    """The CA in ``folder`` (``ca.crt``, ``ca.key``), made if it is not there yet."""
    ca = LocalCA(folder / "ca.crt", folder / "ca.key")
    if ca.cert_file.is_file() and ca.key_file.is_file():
        return ca
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(ca.key_file, key)
    ca.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return ca


def issue_certificate(
    ca: LocalCA,
    cert_file: Path,
    key_file: Path,
    hosts: list[str],
    emails: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """Write a key (mode 600) and a certificate for ``hosts`` signed by ``ca``,
    valid for servers and clients (``cert_file`` holds it, then the CA's).
    ``emails`` become e-mail names too: the identity a server that maps client
    certificates to users (NATS ``verify_and_map``) reads first.

    Returns:
        The certificate and key paths.
    """
    ca_cert, ca_key = ca.load()
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    names += [x509.RFC822Name(email) for email in emails]
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_file, key)
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    return cert_file, key_file


def _write_key(key_file: Path, key: ec.EllipticCurvePrivateKey) -> None:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
