"""``bankplatform token``: signed bearer tokens."""

from __future__ import annotations

from datetime import timedelta

import click


@click.group()
def token() -> None:
    """Signed bearer tokens (for the CLI in non-local envs, schedulers, scoring clients)."""


@token.command("issue")
@click.option("--user", required=True, help="Subject: a person, scheduler or client.")
@click.option(
    "--role", "roles", required=True, multiple=True, help="Role (repeatable)."
)
@click.option(
    "--ttl-minutes", type=click.IntRange(min=1), help="Lifetime [security.yml]."
)
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
@click.option(
    "--as-keyholder",
    is_flag=True,
    help="Sign with the keyring directly (bootstrap: only the key service's OS user can).",
)
def issue(
    user: str,
    roles: tuple[str, ...],
    ttl_minutes: int | None,
    env: str | None,
    as_keyholder: bool,
) -> None:
    """Print a signed token for USER (declared in security.yml) with ROLE(s) they hold."""
    from bankplatform.security.runtime import activate, workspace_security

    security = workspace_security(env)
    activate(security)
    minutes = ttl_minutes or security.settings.token_ttl_minutes
    if as_keyholder:
        from bankplatform.keyservice.admin import issue_first_token

        signed, jti = issue_first_token(
            security.root, security.env, user, list(roles), minutes
        )
    else:
        # The key service checks issue_tokens, binds the token to a declared user
        # and their roles (never a service role), caps the lifetime, and audits it.
        signed, jti = security.tokens().issue(
            user, list(roles), timedelta(minutes=minutes)
        )
    click.echo(f"token id (jti) {jti}, expires in {minutes} min", err=True)
    click.echo(signed)


@token.command("revoke")
@click.argument("jti")
@click.option("--reason", required=True, help="Why (kept in the revocation list).")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def revoke(jti: str, reason: str, env: str | None) -> None:
    """Revoke the token with id JTI."""
    from bankplatform.security.runtime import activate, workspace_security

    security = workspace_security(env)
    activate(security)
    security.tokens().revoke(jti, reason)  # checked, signed and audited by the service
    click.echo(f"revoked token {jti}")
