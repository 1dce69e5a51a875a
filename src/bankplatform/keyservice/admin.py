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
    PROPOSE_RECORD,
    PolicyDocument,
    differences,
    install,
    installers_required,
    read_installed,
    workspace_policy,
)
from bankplatform.keyservice.rotation import (
    RotationResult,
    files_per_key_version,
    rotate_keys,
)
from bankplatform.security.client import TOKEN_ENV_VAR, USER_ENV_VAR
from bankplatform.security.kms import MASTER_KEY_ENV_VAR, KeyVersion
from bankplatform.security.policy import AccessDenied, Action, IdentityError
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
    """What ``keys policy`` found and did.

    Attributes:
        differences: One line per difference between installed and ``conf/``.
        installed: The workspace's policy is now the installed one.
        sha256: The installed copy's hash (the proposed one's while proposed).
        proposed_by: Who proposed it, where a second person must install it.
        installers: People the change takes (1, or 2 where the tier asks).
    """

    differences: list[str]
    installed: bool
    sha256: str
    proposed_by: str = ""
    installers: int = 1


def install_workspace_policy(root: Path, env: str, *, apply: bool) -> PolicyChange:
    """Compare the workspace's ``conf/`` policy with the installed one; with
    ``apply``, install it (audited as the installer, with every difference).

    Where the installed or the proposed document's tier asks for two people, the
    first ``apply`` records a proposal of that exact document and a second platform
    admin's installs it; the installer is who ``$BANKPLATFORM_TOKEN`` proves (in a
    developer domain, ``$BANKPLATFORM_USER``).

    Raises:
        AccessDenied: The installer may not manage keys, or proposed this change.
        IdentityError: Two people are needed and no signed token says who acts.
    """
    from bankplatform.project import env_config_loader  # noqa: PLC0415

    authority = KeyAuthority(root, env)
    installed = read_installed(authority.policy_file)
    proposed = workspace_policy(
        env_config_loader(root, "base" if env == PRIVATE_ENV else env), root
    )
    found = differences(installed, proposed) if installed else ["(nothing installed)"]
    people = installers_required(installed, proposed) if installed else 1
    if not apply or not found:
        return PolicyChange(
            found, False, installed.sha256 if installed else "", installers=people
        )
    installer = _policy_installer(authority, required=people > 1)
    details: dict[str, Any] = {
        "sha256": proposed.sha256,
        "previous_sha256": installed.sha256 if installed else "",
        "differences": found[:200],
    }
    if people > 1 and installed is not None:
        proposer = standing_proposal(authority, proposed, installed)
        if not proposer:
            authority.audit.append(
                actor=installer,
                action=PROPOSE_RECORD,
                resource=f"policy:{env}",
                outcome="allowed",
                details={**details, "installers": people},
            )
            authority.audit.sign_head()
            return PolicyChange(found, False, proposed.sha256, installer, people)
        if proposer == installer:
            authority.audit.append(
                actor=installer,
                action=INSTALL_RECORD,
                resource=f"policy:{env}",
                outcome="denied",
                details={**details, "reason": "installer proposed it"},
            )
            msg = f"{installer} proposed this policy change; a second platform admin installs it (two people: the installed policy's tier asks for it)"
            raise AccessDenied(msg)
        details["proposed_by"] = proposer
    install(authority.policy_file, proposed)
    authority.audit.append(
        actor=installer,
        action=INSTALL_RECORD,
        resource=f"policy:{env}",
        outcome="allowed",
        details=details,
    )
    authority.audit.sign_head()
    return PolicyChange(
        found, True, proposed.sha256, details.get("proposed_by", ""), people
    )


def standing_proposal(
    authority: KeyAuthority, proposed: PolicyDocument, installed: PolicyDocument
) -> str:
    """Who proposed installing ``proposed`` over ``installed`` since the last
    install ("" when nobody has): a proposal made against another installed
    copy is stale."""
    resource = f"policy:{authority.env}"
    proposer = ""
    for record in authority.audit.records():
        if record.get("resource") != resource or record.get("outcome") != "allowed":
            continue
        details = record.get("details") or {}
        if record.get("action") == INSTALL_RECORD:
            proposer = ""
        elif (
            record.get("action") == PROPOSE_RECORD
            and details.get("sha256") == proposed.sha256
            and details.get("previous_sha256") == installed.sha256
        ):
            proposer = str(record.get("actor", ""))
    return proposer


def _policy_installer(authority: KeyAuthority, *, required: bool) -> str:
    """Who installs: the user a signed token proves, a developer domain's
    ``$BANKPLATFORM_USER``, or (one-person tiers only) the keyholder's OS user."""
    token = os.environ.get(TOKEN_ENV_VAR, "").strip()
    if token:
        principal = authority.tokens.verify(token)
    elif authority.local_sessions and os.environ.get(USER_ENV_VAR):
        principal = authority.policy.user(os.environ[USER_ENV_VAR])
    elif required:
        msg = f"two people change env {authority.env}'s policy: each runs `keys policy --install` with their own signed token in ${TOKEN_ENV_VAR}"
        raise IdentityError(msg)
    else:
        return f"keyholder:{getpass.getuser()}"
    if not authority.policy.permits(principal, Action.MANAGE_KEYS):
        msg = f"{principal.name} (roles: {', '.join(sorted(principal.roles))}) may not manage_keys: installing a policy is a platform admin's"
        raise AccessDenied(msg)
    return principal.name


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
