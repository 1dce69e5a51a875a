"""The production tracking server's launch: secrets never on the command line or
in a file, weak or missing ones refused in one line."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bankplatform.errors import BankplatformError
from bankplatform.lineage.tracking_server import TrackingServerSettings, server_launch
from bankplatform.security.tls import issue_certificate, local_ca

pytestmark = pytest.mark.unit


def _workspace(tmp_path: Path) -> Path:
    ca = local_ca(tmp_path / ".bankplatform-tls")
    folder = tmp_path / ".bankplatform-tls"
    issue_certificate(ca, folder / "mlflow.crt", folder / "mlflow.key", ["127.0.0.1"])
    return tmp_path


def _secrets() -> dict[str, str]:
    return {
        "database_password": secrets.token_urlsafe(16),
        "admin_password": secrets.token_urlsafe(16),
        "flask_secret_key": secrets.token_hex(16),
    }


def test_secrets_travel_in_the_environment_only(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    given = _secrets()
    command, environment = server_launch(
        TrackingServerSettings(port=6543, database_port=6432), given, root
    )
    line = " ".join(command)
    assert not any(secret in line for secret in given.values())
    assert "--app-name basic-auth" in line
    assert "--port 6543" in line
    ca = root / ".bankplatform-tls" / "ca.crt"
    assert (
        f"postgresql://mlflow@127.0.0.1:6432/mlflow?sslmode=verify-full&sslrootcert={ca}"
        in line
    )
    assert f"--ssl-certfile {root / '.bankplatform-tls/mlflow.crt'}" in line
    assert environment["PGPASSWORD"] == given["database_password"]
    assert environment["MLFLOW_AUTH_ADMIN_PASSWORD"] == given["admin_password"]
    ini = Path(environment["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini.stat().st_mode & 0o077 == 0
    text = ini.read_text()
    assert "mlflow_auth?sslmode=verify-full" in text
    assert (
        "auth_cache_ttl_seconds = 30\n" in text
    )  # one PBKDF2 check per run, not per request
    assert not any(secret in text for secret in given.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"admin_password": None},
            "tracking server credentials: missing admin_password (expected admin_password, database_password, flask_secret_key)",
        ),
        (
            {"admin_password": "short"},  # pragma: allowlist secret
            "tracking server credentials: admin_password must be at least 12 characters and not a default",
        ),
        (
            {"database_url": "x"},
            "tracking server credentials: unknown database_url (expected admin_password, database_password, flask_secret_key)",
        ),
    ],
)
def test_missing_unknown_or_weak_secrets_are_refused(
    tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    given: dict[str, str] = _secrets()
    for key, value in change.items():
        if value is None:
            given.pop(key)
        else:
            given[key] = value
    with pytest.raises(BankplatformError) as refused:
        server_launch(TrackingServerSettings(), given, _workspace(tmp_path))
    assert str(refused.value) == message


def test_a_missing_certificate_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BankplatformError) as refused:
        server_launch(TrackingServerSettings(), _secrets(), tmp_path)
    assert str(refused.value) == (
        ".bankplatform-tls/ca.crt is missing: run `bankplatform tls init` (or install the bank's)"
    )
