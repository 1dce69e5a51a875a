"""Security settings of a Kedro env (``conf/<env>/security.yml``) and the objects they open."""

from __future__ import annotations

from pathlib import Path

from kedro.config import MissingConfigException, OmegaConfigLoader
from pydantic import BaseModel, ConfigDict, Field

from bankplatform.security.audit import AuditLog
from bankplatform.security.kms import LocalKeyring, load_master_key


class SecuritySettings(BaseModel):
    """``security:`` in ``conf/<env>/security.yml``; paths are relative to the workspace.

    Attributes:
        keyring: The local keyring (KEK versions and the audit signing key).
        master_key_file: The master key, when ``$BANKPLATFORM_MASTER_KEY`` is not set.
        audit_log: The audit log (its checkpoints go beside it).
        audit_checkpoint_every: Records between two signed checkpoints.
    """

    model_config = ConfigDict(extra="forbid")

    keyring: Path = Path(".bankplatform/keyring.json")
    master_key_file: Path = Path(".bankplatform/master.key")
    audit_log: Path = Path(".bankplatform/audit/audit.jsonl")
    audit_checkpoint_every: int = Field(default=100, ge=1)

    def anchored(self, root: Path) -> SecuritySettings:
        """The same settings with every path under ``root``."""
        return self.model_copy(
            update={
                "keyring": root / self.keyring,
                "master_key_file": root / self.master_key_file,
                "audit_log": root / self.audit_log,
            }
        )

    def keyring_service(self) -> LocalKeyring:
        """The local keyring, opened with the master key."""
        return LocalKeyring(self.keyring, load_master_key(self.master_key_file))

    def audit(self) -> AuditLog:
        """The audit log, signing checkpoints with the keyring."""
        return AuditLog(
            self.audit_log, self.keyring_service(), self.audit_checkpoint_every
        )


def load_security_settings(root: Path, env: str) -> SecuritySettings:
    """Read ``security:`` for ``env`` (base merged with the env)."""
    loader = OmegaConfigLoader(
        conf_source=str(root / "conf"),
        base_env="base",
        default_run_env=env,
        env=env,
        config_patterns={"security": ["security*", "security*/**"]},
    )
    try:
        section = dict(loader["security"] or {}).get("security", {})
    except MissingConfigException:
        section = {}
    return SecuritySettings.model_validate(section).anchored(root)
