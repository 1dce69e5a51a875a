"""The production tracking server: MLflow on PostgreSQL, basic auth, TLS.

``bankplatform tracking-server --env prod`` (``make mlflow-server``) starts
``mlflow server`` from ``conf/<env>/tracking_server.yml`` and a credentials entry
(``conf/local/credentials.yml`` or the environment, never git):

- the backend store and MLflow's user store on PostgreSQL, both over
  ``sslmode=verify-full`` against the workspace's CA; the database password
  travels in ``PGPASSWORD`` (libpq reads it), never on the command line where
  ``ps`` would show it;
- MLflow's basic-auth app (``mlflow[auth]``), the admin's password and the
  session secret from the credentials; an unauthenticated request gets 401;
- HTTPS only (uvicorn with the server's key and certificate);
- artefacts proxied by the server (``--artifacts-destination``): clients never
  need the store's own credentials.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bankplatform.errors import BankplatformError, settings_error

# Keys of the server's credentials entry.
SERVER_SECRETS = frozenset({"database_password", "admin_password", "flask_secret_key"})
_MIN_ADMIN_PASSWORD = 12
AUTH_CACHE_SECONDS = 30


class TrackingServerSettings(BaseModel):
    """``tracking_server:`` in ``conf/<env>/tracking_server.yml``.

    Attributes:
        host: Interface to listen on.
        port: HTTPS port.
        workers: uvicorn worker processes.
        database_host: PostgreSQL host (its certificate must name it).
        database_port: PostgreSQL port.
        database_user: Role the server connects as.
        backend_database: Database of runs, models and registry.
        auth_database: Database of MLflow's users and permissions.
        ca_cert: The CA that signed PostgreSQL's certificate (and the server's).
        tls_cert: The server's certificate (``bankplatform tls init --service mlflow``).
        tls_key: Its key.
        artifacts_destination: Where the server keeps artefacts (a path or a URI).
        credentials: Name of the credentials entry with ``database_password``,
            ``admin_password`` and ``flask_secret_key``.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=5443, ge=1, le=65_535)
    workers: int = Field(default=2, ge=1, le=64)
    database_host: str = "127.0.0.1"
    database_port: int = Field(default=5432, ge=1, le=65_535)
    database_user: str = "mlflow"
    backend_database: str = "mlflow"
    auth_database: str = "mlflow_auth"
    ca_cert: Path = Path(".bankplatform-tls/ca.crt")
    tls_cert: Path = Path(".bankplatform-tls/mlflow.crt")
    tls_key: Path = Path(".bankplatform-tls/mlflow.key")
    artifacts_destination: str = "data/mlflow-artifacts"
    credentials: str = "mlflow_server"


def load_tracking_server_settings(config_loader: Any) -> TrackingServerSettings:
    """The env's ``tracking_server:`` section.

    Raises:
        BankplatformError: The env has none, or it is invalid (first error, one line).
    """
    patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(patterns, dict):
        patterns.setdefault("tracking_server", ["tracking_server*"])
    try:
        section = dict(config_loader["tracking_server"] or {}).get("tracking_server")
    except Exception:  # Kedro's MissingConfigException and a missing pattern
        section = None
    if not section:
        msg = "this env has no tracking_server.yml (see conf/prod/tracking_server.yml)"
        raise BankplatformError(msg)
    try:
        return TrackingServerSettings.model_validate(section)
    except ValidationError as error:
        raise settings_error("tracking_server.yml", error) from None


def database_uri(settings: TrackingServerSettings, database: str, root: Path) -> str:
    """A PostgreSQL URI with no password, verifying the server's certificate."""
    ca = quote(str(root / settings.ca_cert))
    return (
        f"postgresql://{quote(settings.database_user)}@{settings.database_host}:"
        f"{settings.database_port}/{quote(database)}?sslmode=verify-full&sslrootcert={ca}"
    )


def server_launch(
    settings: TrackingServerSettings, secrets: dict[str, str], root: Path
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and the environment to start it with.

    Writes MLflow's auth configuration (no secret in it) to
    ``.bankplatform-run/mlflow-auth.ini``.

    Raises:
        BankplatformError: A secret missing or unknown, a weak admin password,
            or the server's certificate or key missing.
    """
    _check_secrets(secrets)
    for path in (settings.ca_cert, settings.tls_cert, settings.tls_key):
        if not (root / path).is_file():
            msg = f"{path} is missing: run `bankplatform tls init` (or install the bank's)"
            raise BankplatformError(msg)
    auth_ini = root / ".bankplatform-run" / "mlflow-auth.ini"
    auth_ini.parent.mkdir(parents=True, exist_ok=True)
    auth_ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri(settings, settings.auth_database, root)}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # A password check is a PBKDF2 hash (about a quarter of a second here):
        # a successful one is remembered this long per worker, so a run's dozen
        # requests pay it once; a changed or deleted user's old password may
        # still pass for that long.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n"
    )
    auth_ini.chmod(0o600)
    artifacts = settings.artifacts_destination
    if "://" not in artifacts and not Path(artifacts).is_absolute():
        artifacts = str(root / artifacts)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        database_uri(settings, settings.backend_database, root),
        "--artifacts-destination",
        artifacts,
        "--app-name",
        "basic-auth",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--uvicorn-opts",
        f"--ssl-keyfile {root / settings.tls_key} --ssl-certfile {root / settings.tls_cert}",
    ]
    environment = {
        **os.environ,
        "PGPASSWORD": secrets["database_password"],
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets["admin_password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets["flask_secret_key"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_AI_GATEWAY": "false",
        "DO_NOT_TRACK": "true",
    }
    return command, environment


def _check_secrets(secrets: dict[str, str]) -> None:
    missing = sorted(SERVER_SECRETS - set(secrets))
    unknown = sorted(set(secrets) - SERVER_SECRETS)
    if missing or unknown:
        what = (
            f"missing {', '.join(missing)}"
            if missing
            else f"unknown {', '.join(unknown)}"
        )
        msg = f"tracking server credentials: {what} (expected {', '.join(sorted(SERVER_SECRETS))})"
        raise BankplatformError(msg)
    if len(secrets["admin_password"]) < _MIN_ADMIN_PASSWORD or secrets[
        "admin_password"
    ] in {"password", "password1234", "admin"}:
        msg = f"tracking server credentials: admin_password must be at least {_MIN_ADMIN_PASSWORD} characters and not a default"
        raise BankplatformError(msg)
