"""Security settings of a Kedro env (``conf/<env>/security.yml``) and the objects they open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import AbstractConfigLoader, MissingConfigException
from pydantic import BaseModel, ConfigDict, Field

from bankplatform.security.kms import LocalKeyring, load_master_key
from bankplatform.security.policy import AccessPolicy


class SecuritySettings(BaseModel):
    """``security:`` in ``conf/<env>/security.yml``; paths are relative to the workspace.

    Attributes:
        keyring: The local keyring (KEK versions and the audit signing key).
        master_key_file: The master key, when ``$BANKPLATFORM_MASTER_KEY`` is not set.
        audit_log: The audit log (its checkpoints go beside it).
        audit_checkpoint_every: Records between two signed checkpoints.
        revocation_list: Revoked token ids.
        token_issuer: ``iss`` of issued tokens (and the only one accepted).
        token_audience: ``aud`` of issued tokens (and the only one accepted).
        token_ttl_minutes: Default lifetime of an issued token.
    """

    model_config = ConfigDict(extra="forbid")

    keyring: Path = Path(".bankplatform/keyring.json")
    master_key_file: Path = Path(".bankplatform/master.key")
    audit_log: Path = Path(".bankplatform/audit/audit.jsonl")
    audit_checkpoint_every: int = Field(default=100, ge=1)
    revocation_list: Path = Path(".bankplatform/revoked_tokens.json")
    token_issuer: str = "bankplatform"  # noqa: S105 - a name, not a secret
    token_audience: str = "bankplatform"  # noqa: S105 - a name, not a secret
    token_ttl_minutes: int = Field(default=60, ge=1)

    def anchored(self, root: Path) -> SecuritySettings:
        """The same settings with every path under ``root``."""
        return self.model_copy(
            update={
                "keyring": root / self.keyring,
                "master_key_file": root / self.master_key_file,
                "audit_log": root / self.audit_log,
                "revocation_list": root / self.revocation_list,
            }
        )

    def keyring_service(self) -> LocalKeyring:
        """The local keyring, opened with the master key."""
        return LocalKeyring(self.keyring, load_master_key(self.master_key_file))


def load_security_settings(
    config_loader: AbstractConfigLoader, root: Path
) -> SecuritySettings:
    """Read ``security:`` from an env's config (a run's own loader, or ``env_config_loader``).

    Args:
        config_loader: The env's config loader.
        root: The workspace folder the paths are relative to.

    Returns:
        The settings with absolute paths.
    """
    section = _security_file(config_loader).get("security", {})
    return SecuritySettings.model_validate(section).anchored(root)


def load_access_policy(config_loader: AbstractConfigLoader) -> AccessPolicy:
    """Read ``access:`` (roles, users, services, pipelines) from ``security.yml``."""
    return AccessPolicy.model_validate(
        _security_file(config_loader).get("access", {"roles": {}})
    )


def _security_file(config_loader: AbstractConfigLoader) -> dict[str, Any]:
    known_patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(known_patterns, dict):
        known_patterns.setdefault("security", ["security*", "security*/**"])
    try:
        return dict(config_loader["security"] or {})
    except MissingConfigException:
        return {}
