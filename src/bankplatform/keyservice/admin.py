"""The key holder's own commands (``bankplatform keys``): create, show and rotate the
keyring. They run as the key service's OS user, whose file permissions on the key
folder are the check; every change is audited as that keyholder."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bankplatform.keyservice.authority import PRIVATE_ENV, KeyAuthority
from bankplatform.keyservice.local_kms import create_master_key_file, open_keyring
from bankplatform.keyservice.policy_store import (
    INSTALL_RECORD,
    differences,
    install,
    read_installed,
    workspace_policy,
)
from bankplatform.keyservice.rotation import (
    RotationResult,
    files_per_key_version,
    rotate_keys,
)
from bankplatform.security.kms import MASTER_KEY_ENV_VAR, KeyVersion
from bankplatform.security.settings import SecuritySettings


@dataclass(frozen=True)
class KeysCreated:
    """What ``keys init`` made: a master key file (unless one was kept or the key
    comes from the environment) and the keyring."""

    master_key_file: Path | None
    keyring_created: bool


def initialise_keys(root: Path, env: str, settings: SecuritySettings) -> KeysCreated:
    """Create the master key file (mode 600) and the keyring, unless they exist."""
    master = (
        settings.master_key_file
        if not os.environ.get(MASTER_KEY_ENV_VAR)
        and create_master_key_file(settings.master_key_file)
        else None
    )
    created = open_keyring(settings).initialise(settings.trust_domain)
    if created:
        _audit_as_keyholder(
            root, env, "keys.init", {"trust_domain": settings.trust_domain}
        )
    return KeysCreated(master, created)


def key_versions(
    settings: SecuritySettings, data_root: Path
) -> list[tuple[KeyVersion, int]]:
    """Each key version with how many encrypted files under ``data_root`` it protects."""
    counts = files_per_key_version(data_root)
    return [
        (version, counts[version.version])
        for version in open_keyring(settings).status()
    ]


def rotate_workspace_keys(
    root: Path,
    env: str,
    settings: SecuritySettings,
    on_file: Callable[[Path, int, int], None],
) -> RotationResult:
    """Add a primary key, re-wrap every data key under ``root/data``, retire unused
    keys; audited. Safe to interrupt: run again, it finishes the same rotation."""
    result = rotate_keys(
        open_keyring(settings),
        root / "data",
        settings.keyring.with_name(settings.keyring.name + ".rotation"),
        on_file=on_file,
    )
    _audit_as_keyholder(
        root,
        env,
        "keys.rotate",
        {
            "primary": result.primary,
            "resumed": result.resumed,
            "rewrapped": len(result.rewrapped),
            "retired": result.retired,
        },
    )
    return result


def _audit_as_keyholder(
    root: Path, env: str, action: str, details: dict[str, Any]
) -> None:
    """Audit a key operation as the OS user who holds the keyring (``keyholder:<user>``)."""
    authority = KeyAuthority(root, env)
    authority.audit.append(
        actor=f"keyholder:{getpass.getuser()}",
        action=action,
        resource="keyring",
        outcome="allowed",
        details=details,
    )
    authority.audit.sign_head()


@dataclass(frozen=True)
class PolicyChange:
    """What ``keys policy`` found: the differences, and whether they were installed."""

    differences: list[str]
    installed: bool
    sha256: str


def install_workspace_policy(root: Path, env: str, *, apply: bool) -> PolicyChange:
    """Compare the workspace's ``conf/`` policy with the installed one; with
    ``apply``, install it (audited as the keyholder, with every difference)."""
    from bankplatform.project import env_config_loader  # noqa: PLC0415

    authority = KeyAuthority(root, env)
    installed = read_installed(authority.policy_file)
    proposed = workspace_policy(
        env_config_loader(root, "base" if env == PRIVATE_ENV else env)
    )
    found = differences(installed, proposed) if installed else ["(nothing installed)"]
    if not apply or not found:
        return PolicyChange(found, False, installed.sha256 if installed else "")
    install(authority.policy_file, proposed)
    authority.audit.append(
        actor=f"keyholder:{getpass.getuser()}",
        action=INSTALL_RECORD,
        resource=f"policy:{env}",
        outcome="allowed",
        details={
            "sha256": proposed.sha256,
            "previous_sha256": installed.sha256 if installed else "",
            "differences": found[:200],
        },
    )
    authority.audit.sign_head()
    return PolicyChange(found, True, proposed.sha256)


def issue_first_token(
    root: Path, env: str, user: str, roles: list[str], minutes: int
) -> tuple[str, str]:
    """The first token of a production env: whoever can read its keyring (the key
    service's OS user, by file permissions) signs it, audited as the keyholder.

    Returns:
        The signed token and its id.
    """
    authority = KeyAuthority(root, env)
    signed, jti = authority.tokens.issue(user, roles, timedelta(minutes=minutes))
    authority.audit.append(
        actor=f"keyholder:{getpass.getuser()}",
        action="token.issue",
        resource=f"user:{user}",
        outcome="allowed",
        details={"roles": sorted(roles), "jti": jti, "ttl_minutes": minutes},
    )
    authority.audit.sign_head()
    return signed, jti
