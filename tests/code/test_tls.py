"""The local CA: service certificates it signs verify against it, for the names
they were made for, and against nothing else."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from bankplatform.security.tls import issue_certificate, local_ca

pytestmark = pytest.mark.unit


def _handshake(server_cert: Path, server_key: Path, trust: Path, name: str) -> str:
    """A real TLS handshake on loopback; the client's verdict."""
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(server_cert, server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        connection, _ = listener.accept()
        try:
            with served.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    client = ssl.create_default_context(cafile=str(trust))
    try:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname=name) as tls,
        ):
            tls.sendall(b"x")
            return "verified"
    except ssl.SSLCertVerificationError as error:
        return error.verify_message
    finally:
        thread.join(timeout=10)
        listener.close()


def test_a_service_certificate_verifies_against_the_ca_for_its_names(
    tmp_path: Path,
) -> None:
    ca = local_ca(tmp_path / "tls")
    assert (
        local_ca(tmp_path / "tls").cert_file.read_bytes() == ca.cert_file.read_bytes()
    )
    cert, key = issue_certificate(
        ca,
        tmp_path / "tls/postgres.crt",
        tmp_path / "tls/postgres.key",
        ["localhost", "127.0.0.1"],
    )
    assert key.stat().st_mode & 0o077 == 0
    assert ca.key_file.stat().st_mode & 0o077 == 0
    assert _handshake(cert, key, ca.cert_file, "127.0.0.1") == "verified"
    assert _handshake(cert, key, ca.cert_file, "localhost") == "verified"
    # The service's own file (its certificate, then the CA's) is a trust anchor too.
    assert _handshake(cert, key, cert, "localhost") == "verified"
    assert "mismatch" in _handshake(cert, key, ca.cert_file, "db.bank.internal").lower()
    other = local_ca(tmp_path / "other")
    assert _handshake(cert, key, other.cert_file, "localhost") == (
        "self-signed certificate in certificate chain"
    )
