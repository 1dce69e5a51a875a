"""``bankplatform keys``: the local keyring."""

from __future__ import annotations

import os

import click


@click.group()
def keys() -> None:
    """Key management (local keyring; a cloud KMS implements the same interface)."""


@keys.command("init")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def init(env: str | None) -> None:
    """Create the master key file (mode 600) and the keyring, unless they exist."""
    from bankplatform.security.kms import MASTER_KEY_ENV_VAR, create_master_key_file
    from bankplatform.security.settings import workspace_security_settings

    settings = workspace_security_settings(env)
    if not os.environ.get(MASTER_KEY_ENV_VAR) and create_master_key_file(
        settings.master_key_file
    ):
        click.echo(
            f"created master key file {settings.master_key_file} (mode 600; keep it out of git)"
        )
    created = settings.keyring_service().initialise()
    click.echo(f"{'created' if created else 'kept'} keyring {settings.keyring}")


@keys.command("status")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def status(env: str | None) -> None:
    """Show the key versions and which one is primary."""
    from bankplatform.security.settings import workspace_security_settings

    settings = workspace_security_settings(env)
    for version in settings.keyring_service().status():
        marker = " (primary)" if version.primary else ""
        click.echo(
            f"key version {version.version}{marker}: created {version.created_at}"
        )
