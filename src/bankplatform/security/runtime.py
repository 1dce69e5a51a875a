"""The security state of a process: which workspace's keys, policy and audit log
apply, who started the work and which identity the current node acts as.

A Kedro context activates its env's security when it is created (``AccessHook``),
so ``kedro run``, a notebook's session and the command line all share one set of
rules. Encrypted datasets take their keys from here and check every load and save
of a ``pii`` or ``confidential`` dataset against the acting identity, which the
hook sets per node to the pipeline's service identity; that covers a direct
``catalog.load`` in a notebook too, which no runner hook sees.
"""

from __future__ import annotations

import atexit
import getpass
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import AbstractConfigLoader

from bankplatform.errors import BankplatformError
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader, find_project_root, resolve_env
from bankplatform.security.audit import AuditLog
from bankplatform.security.kms import KeyManagementService
from bankplatform.security.policy import (
    AccessPolicy,
    Action,
    IdentityError,
    Principal,
    enforce,
)
from bankplatform.security.settings import (
    SecuritySettings,
    load_access_policy,
    load_security_settings,
)
from bankplatform.security.tokens import TokenService

TOKEN_ENV_VAR = "BANKPLATFORM_TOKEN"  # noqa: S105 - a variable name, not a secret
USER_ENV_VAR = "BANKPLATFORM_USER"
# `test` is the automated tests' copy of `local`; every other env needs a token.
DEVELOPER_ENVS = frozenset({"local", "test"})
_DATASET_ACTIONS = {
    "pii": (Action.READ_PII, Action.WRITE_PII),
    "confidential": (Action.READ_CONFIDENTIAL, Action.WRITE_CONFIDENTIAL),
}


@dataclass
class WorkspaceSecurity:
    """Keys, policy, tokens and audit log of one workspace env."""

    env: str
    settings: SecuritySettings
    policy: AccessPolicy
    _keys: KeyManagementService | None = field(default=None, repr=False)
    _log: AuditLog | None = field(default=None, repr=False)
    _starter: Principal | None = field(default=None, repr=False)

    def key_service(self) -> KeyManagementService:
        """The KMS (the local keyring), opened once: every dataset load and save asks."""
        if self._keys is None:
            self._keys = self.settings.keyring_service()
        return self._keys

    def tokens(self) -> TokenService:
        """The bearer-token service."""
        settings = self.settings
        return TokenService(
            self.key_service(),
            self.policy,
            settings.revocation_list,
            settings.token_issuer,
            settings.token_audience,
        )

    def audit_log(self) -> AuditLog:
        """The audit log; its chain head is signed when the process exits."""
        if self._log is None:
            settings = self.settings
            self._log = AuditLog(
                settings.audit_log, self.key_service(), settings.audit_checkpoint_every
            )
            atexit.register(self._log.close)
        return self._log

    def starter(self) -> Principal:
        """Who started the work (resolved once per process).

        From ``$BANKPLATFORM_TOKEN``; in a developer env (``local``, ``test``)
        also from ``$BANKPLATFORM_USER`` or ``access.local_default_user``.

        Raises:
            IdentityError: A bad token, an undeclared user, or no identity at all.
        """
        if self._starter is None:
            self._starter = self._resolve_starter()
        return self._starter

    def enforce(
        self,
        principal: Principal,
        action: Action,
        resource: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """``policy.enforce`` with this workspace's audit log."""
        enforce(self.policy, principal, action, resource, self.audit_log(), details)

    def _resolve_starter(self) -> Principal:
        token = os.environ.get(TOKEN_ENV_VAR)
        if token:
            return self.tokens().verify(token)
        user = os.environ.get(USER_ENV_VAR)
        if self.env not in DEVELOPER_ENVS:
            hint = f" (${USER_ENV_VAR} counts only in envs {', '.join(sorted(DEVELOPER_ENVS))})"
            msg = f"env {self.env} needs a signed token in ${TOKEN_ENV_VAR}{hint if user else ''}; an admin issues one with `bankplatform token issue`"
            raise IdentityError(msg)
        name = user or self.policy.local_default_user
        if not name:
            msg = f"no identity: set ${USER_ENV_VAR} or access.local_default_user"
            raise IdentityError(msg)
        return self.policy.user(name)


def open_security(
    config_loader: AbstractConfigLoader, root: Path, env: str
) -> WorkspaceSecurity:
    """The security of an env, from its config loader."""
    return WorkspaceSecurity(
        env=env,
        settings=load_security_settings(config_loader, root),
        policy=load_access_policy(config_loader),
    )


def workspace_security(env: str | None = None) -> WorkspaceSecurity:
    """The security of the workspace around the current folder.

    Args:
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's.
    """
    root = find_project_root()
    chosen = resolve_env(load_manifest(root), env)
    return open_security(env_config_loader(root, chosen), root, chosen)


_active: WorkspaceSecurity | None = None
_node = threading.local()


def activate(security: WorkspaceSecurity) -> None:
    """Make ``security`` the one this process's datasets and hooks use."""
    global _active  # noqa: PLW0603 - one active workspace per process, like a KedroSession
    _active = security


def active_security() -> WorkspaceSecurity:
    """The active workspace security, else the one of the workspace around the cwd."""
    if _active is None:
        activate(workspace_security())
    assert _active is not None  # noqa: S101 - set just above
    return _active


def active_key_service() -> KeyManagementService:
    """The KMS of the active workspace."""
    return active_security().key_service()


def act_as(principal: Principal | None) -> None:
    """Let the current thread act as ``principal`` (a node's service), or stop (``None``)."""
    _node.principal = principal


def acting_principal() -> Principal:
    """The identity acting now: the current node's service, else the starter."""
    principal: Principal | None = getattr(_node, "principal", None)
    return principal or active_security().starter()


def acting_identity() -> str:
    """The acting identity's name, for records that must not fail (lineage tags)."""
    try:
        return acting_principal().name
    except BankplatformError:
        return os.environ.get(USER_ENV_VAR) or getpass.getuser()


def guard_dataset(name: str, metadata: dict[str, Any] | None, operation: str) -> None:
    """Allow and audit a load (``read``) or save (``write``) of a classified dataset.

    Datasets classified ``pii`` or ``confidential`` need the matching action;
    others pass without a record.

    Raises:
        AccessDenied: The acting identity may not; the denial is audited first.
    """
    classification = (metadata or {}).get("classification")
    if classification not in _DATASET_ACTIONS:
        return
    read, write = _DATASET_ACTIONS[classification]
    security = active_security()
    security.enforce(
        acting_principal(),
        read if operation == "read" else write,
        f"dataset:{name}",
        {"classification": classification},
    )
