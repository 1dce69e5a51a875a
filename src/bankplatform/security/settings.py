"""Security settings of a Kedro env (``conf/<env>/security.yml``) and the objects they open."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from kedro.config import AbstractConfigLoader, MissingConfigException
from pydantic import BaseModel, ConfigDict, Field

from bankplatform.security.policy import AccessPolicy
from bankplatform.security.service_socket import short_socket

AUDIT_STORE_PASSWORD_ENV_VAR = "BANKPLATFORM_AUDIT_STORE_PASSWORD"  # noqa: S105  # pragma: allowlist secret


class SecuritySettings(BaseModel):
    """``security:`` in ``conf/<env>/security.yml``; paths are relative to the workspace.

    Attributes:
        trust_domain: ``developer`` (one person's workstation: an unproven user
            name is accepted) or ``production`` (a signed token always).
        keyring: The local keyring (KEK versions and the audit signing key).
        master_key_file: The master key, when ``$BANKPLATFORM_MASTER_KEY`` is not set.
        audit_log: The audit log (its checkpoints go beside it).
        audit_checkpoint_every: Records between two signed checkpoints.
        audit_store: A PostgreSQL URL (``postgresql://user@host:port/db?sslmode=
            verify-full&sslrootcert=...``) to keep the audit records and
            checkpoints in; unset, the ``audit_log`` file.
        audit_store_password_file: The store's password (the key service's OS
            user only; ``$BANKPLATFORM_AUDIT_STORE_PASSWORD`` wins).
        revocation_list: Revoked token ids.
        token_issuer: ``iss`` of issued tokens (and the only one accepted).
        token_audience: ``aud`` of issued tokens (and the only one accepted).
        token_ttl_minutes: Default lifetime of an issued token.
        token_max_ttl_minutes: No token is issued for longer.
        keyservice_socket: The key service's Unix socket (``{env}`` is the env,
            ``{workspace}`` the manifest's workspace id); see ``service_socket``.
        audit_witness: Where the latest signed audit head is copied.
        audit_witness_mlflow: Also copy it to the env's MLflow tracking store.
        keyservice_url: ``https://host:port`` of a key service on its own host
            (TLS); unset, the Unix socket.
        keyservice_tls_cert: Its certificate (clients verify the service with it).
        keyservice_tls_key: Its private key (the service's OS user only).
        bundle_store: Signed model bundles (written by the key service only).
    """

    model_config = ConfigDict(extra="forbid")

    trust_domain: Literal["developer", "production"] = "production"
    keyring: Path = Path(".bankplatform/keyring.json")
    master_key_file: Path = Path(".bankplatform/master.key")
    audit_log: Path = Path(".bankplatform/audit/audit.jsonl")
    audit_checkpoint_every: int = Field(default=100, ge=1)
    audit_store: str | None = Field(default=None, pattern=r"^postgresql://")
    audit_store_password_file: Path = Path(".bankplatform/audit-store.password")
    revocation_list: Path = Path(".bankplatform/revoked_tokens.json")
    token_issuer: str = "bankplatform"  # noqa: S105 - a name, not a secret
    token_audience: str = "bankplatform"  # noqa: S105 - a name, not a secret
    token_ttl_minutes: int = Field(default=60, ge=1)
    token_max_ttl_minutes: int = Field(default=1440, ge=1)
    keyservice_socket: Path = Path(".bankplatform/keyservice-{env}.sock")
    audit_witness: Path = Path(".bankplatform/witness/audit-head.json")
    audit_witness_mlflow: bool = False
    keyservice_url: str | None = Field(
        default=None, pattern=r"^https://[^/\s]+:[0-9]{1,5}$"
    )
    keyservice_tls_cert: Path = Path(".bankplatform-tls/keyservice.crt")
    keyservice_tls_key: Path = Path(".bankplatform/tls/keyservice.key")
    bundle_store: Path = Path(".bankplatform/bundles")
    env: str = Field(default="", exclude=True)  # set by ``anchored``

    def anchored(self, root: Path, env: str) -> SecuritySettings:
        """The same settings with every path under ``root`` and the socket of ``env``."""
        socket = short_socket(
            root / _socket_name(str(self.keyservice_socket), root, env)
        )
        return self.model_copy(
            update={
                "keyring": root / self.keyring,
                "master_key_file": root / self.master_key_file,
                "audit_log": root / self.audit_log,
                "audit_store": (
                    self.audit_store.replace("sslrootcert=.", f"sslrootcert={root}/.")
                    if self.audit_store
                    else None
                ),
                "audit_store_password_file": root / self.audit_store_password_file,
                "revocation_list": root / self.revocation_list,
                "keyservice_socket": socket,
                "audit_witness": root / self.audit_witness,
                "keyservice_tls_cert": root / self.keyservice_tls_cert,
                "keyservice_tls_key": root / self.keyservice_tls_key,
                "bundle_store": root / self.bundle_store,
                "env": env,
            }
        )

    @property
    def session_file(self) -> Path:
        """The developer-domain service's local session credential (mode 600)."""
        return self.keyring.parent / f"keyservice-{self.env}.session"

    def audit_store_password(self) -> str | None:
        """The audit store's password: the environment's, else its file's, else none
        (a server that trusts the connection's certificate or host)."""
        if password := os.environ.get(AUDIT_STORE_PASSWORD_ENV_VAR):
            return password
        try:
            return self.audit_store_password_file.read_text().strip() or None
        except FileNotFoundError:
            return None


def _socket_name(template: str, root: Path, env: str) -> str:
    name = template.replace("{env}", env)
    if "{workspace}" in name:
        from bankplatform.manifest import load_manifest  # noqa: PLC0415

        name = name.replace("{workspace}", load_manifest(root).workspace_id)
    return name


def load_security_settings(
    config_loader: AbstractConfigLoader, root: Path, env: str
) -> SecuritySettings:
    """Read ``security:`` from an env's config (a run's own loader, or ``env_config_loader``).

    Args:
        config_loader: The env's config loader.
        root: The workspace folder the paths are relative to.

    Returns:
        The settings with absolute paths.
    """
    section = security_file(config_loader).get("security", {})
    return SecuritySettings.model_validate(section).anchored(root, env)


def load_access_policy(config_loader: AbstractConfigLoader) -> AccessPolicy:
    """Read ``access:`` (roles, users, services, pipelines) from ``security.yml``."""
    return AccessPolicy.model_validate(
        security_file(config_loader).get("access", {"roles": {}})
    )


def security_file(config_loader: AbstractConfigLoader) -> dict[str, Any]:
    """The env's resolved ``security.yml`` (base and the env), or nothing."""
    known_patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(known_patterns, dict):
        known_patterns.setdefault("security", ["security*", "security*/**"])
    try:
        return dict(config_loader["security"] or {})
    except MissingConfigException:
        return {}
