"""``bankplatform keys``: the local keyring and key rotation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bankplatform.keyservice.admin import PolicyChange
    from bankplatform.security.settings import SecuritySettings


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
    from bankplatform.keyservice.admin import initialise_keys

    root, name, settings = _keyholder(env)
    made = initialise_keys(root, name, settings)
    if made.master_key_file:
        click.echo(
            f"created master key file {made.master_key_file} (mode 600; keep it out of git)"
        )
    click.echo(
        f"{'created' if made.keyring_created else 'kept'} keyring {settings.keyring}"
    )


@keys.command("status")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def status(env: str | None) -> None:
    """Show the key versions, which one is primary and how many files each protects."""
    from bankplatform.keyservice.admin import key_versions

    root, _, settings = _keyholder(env)
    for version, files in key_versions(settings, root / "data"):
        state = (
            f"retired {version.retired_at}"
            if version.retired_at
            else ("primary" if version.primary else "active")
        )
        click.echo(
            f"key version {version.version} ({state}): created {version.created_at}, "
            f"protects {files} file(s)"
        )


@keys.command("rotate")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def rotate(env: str | None) -> None:
    """Add a new primary key, re-wrap every encrypted file's data key, retire unused keys.

    Safe to interrupt: run it again and it finishes the same rotation.
    """
    from bankplatform.keyservice.admin import rotate_workspace_keys

    root, name, settings = _keyholder(env)

    def report(path: Path, old: int, new: int) -> None:
        click.echo(f"re-wrapped {path.relative_to(root)}: key version {old} -> {new}")

    result = rotate_workspace_keys(root, name, settings, report)
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


@keys.command("policy")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
@click.option(
    "--install",
    "apply",
    is_flag=True,
    help="Install the workspace's conf/ policy into the key service (audited).",
)
def policy(env: str | None, apply: bool) -> None:
    """Show how the workspace's conf/ policy (access: and the catalog's
    classifications) differs from the one the key service decides from; with
    --install, install it. Run as the keyholder: editing conf/ changes nothing
    until then."""
    from bankplatform.keyservice.admin import install_workspace_policy

    root, name, _ = _keyholder(env)
    change = install_workspace_policy(root, name, apply=apply)
    if not change.differences:
        click.echo(
            f"env {name}: conf/ is the installed policy (sha256 {change.sha256[:12]})"
        )
        return
    for line in change.differences:
        click.echo(f"  {line}")
    click.echo(_policy_outcome(name, change))


def _policy_outcome(env: str, change: PolicyChange) -> str:
    count = len(change.differences)
    if change.installed:
        second = f", proposed by {change.proposed_by}" if change.proposed_by else ""
        return f"env {env}: installed {count} change(s) (sha256 {change.sha256[:12]}{second}); audited as policy.install"
    if change.proposed_by:
        return (
            f"env {env}: proposed by {change.proposed_by} (sha256 {change.sha256[:12]}); "
            "two people change this policy: a second platform admin runs `bankplatform keys policy --install`"
        )
    people = (
        " (two people: a proposal, then a second admin's install)"
        if change.installers > 1
        else ""
    )
    return f"env {env}: conf/ differs from the installed policy in {count} place(s); `bankplatform keys policy --install` installs it{people}"


def _keyholder(env: str | None) -> tuple[Path, str, SecuritySettings]:
    """The workspace root, the resolved env and its security settings."""
    from bankplatform.security.runtime import workspace_security

    security = workspace_security(env)
    return security.root, security.env, security.settings
