"""``bankplatform audit``: read and verify the audit log."""

from __future__ import annotations

import json

import click

# A bound on `--tail` (a deque of a 20-digit length overflowed).
MAX_TAIL = 10_000_000


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def verify(env: str | None) -> None:
    """Check the whole chain and its signed checkpoints; exit 1 naming the first bad record."""
    from bankplatform.errors import BankplatformError
    from bankplatform.security.runtime import activate, workspace_security

    # The key service verifies, and records the check only once the chain is
    # found intact: nothing is appended (or signed) on top of a broken chain.
    security = workspace_security(env)
    activate(security)
    verdict = security.audit_log().verify()
    if not verdict.ok:
        raise BankplatformError(f"audit log NOT intact: {verdict.problem}")
    click.echo(
        f"audit log intact: {verdict.records} records, {verdict.checkpoints} signed checkpoints"
    )


@audit.command("show")
@click.option(
    "--tail",
    type=click.IntRange(min=1, max=MAX_TAIL),
    help=f"Only the last N records (at most {MAX_TAIL:,}).",
)
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def show(tail: int | None, env: str | None) -> None:
    """Print the audit records, one JSON object a line."""
    from bankplatform.cli.access import authorised
    from bankplatform.security.policy import Action

    log = authorised(env, Action.READ_AUDIT_LOG, "audit_log").audit_log()
    for record in log.records(tail=tail or 0):
        click.echo(json.dumps(record, sort_keys=True))
