"""``bankplatform keys``: the local keyring and key rotation."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group()
def keys() -> None:
    """Key management (local keyring; a cloud KMS implements the same interface)."""


@keys.command("init")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def init(env: str | None) -> None:
    """Create the master key file (mode 600) and the keyring, unless they exist.

    Run it as the key service's OS user: whoever can write the key folder holds
    the keys. The creation is then audited through the (started) key service.
    """
    from bankplatform.security.kms import MASTER_KEY_ENV_VAR, create_master_key_file
    from bankplatform.security.runtime import activate, workspace_security

    security = workspace_security(env)
    activate(security)
    settings = security.settings
    if not os.environ.get(MASTER_KEY_ENV_VAR) and create_master_key_file(
        settings.master_key_file
    ):
        click.echo(
            f"created master key file {settings.master_key_file} (mode 600; keep it out of git)"
        )
    created = settings.keyring_service().initialise(settings.trust_domain)
    click.echo(f"{'created' if created else 'kept'} keyring {settings.keyring}")
    if created:
        security.audit_log().append(
            actor="",
            action="keys.init",
            resource="keyring",
            outcome="allowed",
            details={"trust_domain": settings.trust_domain},
        )


@keys.command("status")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def status(env: str | None) -> None:
    """Show the key versions, which one is primary and how many files each protects."""
    from bankplatform.cli.access import authorised
    from bankplatform.project import find_project_root
    from bankplatform.security.policy import Action
    from bankplatform.security.rotation import files_per_key_version

    security = authorised(env, Action.MANAGE_KEYS, "keyring")
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
    from bankplatform.cli.access import authorised
    from bankplatform.project import find_project_root
    from bankplatform.security.policy import Action
    from bankplatform.security.rotation import rotate_keys

    security = authorised(env, Action.MANAGE_KEYS, "keyring")
    settings = security.settings
    root = find_project_root()

    def report(path: Path, old: int, new: int) -> None:
        click.echo(f"re-wrapped {path.relative_to(root)}: key version {old} -> {new}")

    result = rotate_keys(
        settings.keyring_service(),  # run as the key service's OS user
        _data_root(root),
        settings.keyring.with_name(settings.keyring.name + ".rotation"),
        on_file=report,
    )
    security.audit_log().append(
        actor="",
        action="keys.rotate",
        resource="keyring",
        outcome="allowed",
        details={
            "primary": result.primary,
            "resumed": result.resumed,
            "rewrapped": len(result.rewrapped),
            "retired": result.retired,
        },
    )
    retired = ", ".join(map(str, result.retired)) or "none"
    click.echo(
        f"{'finished interrupted rotation' if result.resumed else 'rotated'}: primary key version "
        f"{result.primary}, {len(result.rewrapped)} file(s) re-wrapped, retired: {retired}"
    )


def _data_root(root: Path) -> Path:
    return root / "data"
