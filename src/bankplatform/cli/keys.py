"""``bankplatform keys``: the local keyring and key rotation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click


@click.group()
def keys() -> None:
    """Key management, run as the key service's OS user (the keyholder): file
    permissions on the key folder are the check; every change is audited."""


@keys.command("init")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def init(env: str | None) -> None:
    """Create the master key file (mode 600) and the keyring, unless they exist.

    Run it as the key service's OS user: whoever can write the key folder holds
    the keys (file permissions are the check); audited as that keyholder.
    """
    from bankplatform.security.kms import MASTER_KEY_ENV_VAR, create_master_key_file
    from bankplatform.security.runtime import workspace_security

    settings = workspace_security(env).settings
    if not os.environ.get(MASTER_KEY_ENV_VAR) and create_master_key_file(
        settings.master_key_file
    ):
        click.echo(
            f"created master key file {settings.master_key_file} (mode 600; keep it out of git)"
        )
    created = settings.keyring_service().initialise(settings.trust_domain)
    click.echo(f"{'created' if created else 'kept'} keyring {settings.keyring}")
    if created:
        _audit_as_keyholder(env, "keys.init", {"trust_domain": settings.trust_domain})


@keys.command("status")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def status(env: str | None) -> None:
    """Show the key versions, which one is primary and how many files each protects."""
    from bankplatform.project import find_project_root
    from bankplatform.security.rotation import files_per_key_version
    from bankplatform.security.runtime import workspace_security

    security = workspace_security(env)
    counts = files_per_key_version(_data_root(find_project_root()))
    for version in security.settings.keyring_service().status():
        state = (
            f"retired {version.retired_at}"
            if version.retired_at
            else ("primary" if version.primary else "active")
        )
        click.echo(
            f"key version {version.version} ({state}): created {version.created_at}, "
            f"protects {counts[version.version]} file(s)"
        )


@keys.command("rotate")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def rotate(env: str | None) -> None:
    """Add a new primary key, re-wrap every encrypted file's data key, retire unused keys.

    Safe to interrupt: run it again and it finishes the same rotation.
    """
    from bankplatform.project import find_project_root
    from bankplatform.security.rotation import rotate_keys
    from bankplatform.security.runtime import workspace_security

    settings = workspace_security(env).settings
    root = find_project_root()

    def report(path: Path, old: int, new: int) -> None:
        click.echo(f"re-wrapped {path.relative_to(root)}: key version {old} -> {new}")

    result = rotate_keys(
        settings.keyring_service(),  # run as the key service's OS user
        _data_root(root),
        settings.keyring.with_name(settings.keyring.name + ".rotation"),
        on_file=report,
    )
    _audit_as_keyholder(
        env,
        "keys.rotate",
        {
            "primary": result.primary,
            "resumed": result.resumed,
            "rewrapped": len(result.rewrapped),
            "retired": result.retired,
        },
    )
    retired = ", ".join(map(str, result.retired)) or "none"
    if result.kept_for_saves:
        kept = ", ".join(map(str, result.kept_for_saves))
        click.echo(
            f"kept key version(s) {kept}: a save in progress uses them; rotate again later to retire them"
        )
    click.echo(
        f"{'finished interrupted rotation' if result.resumed else 'rotated'}: primary key version "
        f"{result.primary}, {len(result.rewrapped)} file(s) re-wrapped, retired: {retired}"
    )


def _audit_as_keyholder(env: str | None, action: str, details: dict[str, Any]) -> None:
    """Audit a key operation as the OS user who holds the keyring (``keyholder:<user>``)."""
    import getpass

    from bankplatform.keyservice.authority import KeyAuthority
    from bankplatform.manifest import load_manifest
    from bankplatform.project import find_project_root, resolve_env

    root = find_project_root()
    authority = KeyAuthority(root, resolve_env(load_manifest(root), env))
    authority.audit.append(
        actor=f"keyholder:{getpass.getuser()}",
        action=action,
        resource="keyring",
        outcome="allowed",
        details=details,
    )
    authority.audit.sign_head()


def _data_root(root: Path) -> Path:
    return root / "data"
