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
        signed, jti = _issue_as_keyholder(security.env, user, list(roles), minutes)
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


def _issue_as_keyholder(
    env: str, user: str, roles: list[str], minutes: int
) -> tuple[str, str]:
    """The first token of a production env: whoever can read its keyring (the key
    service's OS user, by file permissions) signs it, audited as the keyholder."""
    import getpass

    from bankplatform.keyservice.authority import KeyAuthority
    from bankplatform.project import find_project_root

    authority = KeyAuthority(find_project_root(), env)
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
