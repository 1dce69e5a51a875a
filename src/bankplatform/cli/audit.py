"""``bankplatform audit``: read and verify the audit log."""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bankplatform.security.audit import AuditLog

# A bound on `--tail` (a deque of a 20-digit length overflowed).
MAX_TAIL = 10_000_000


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def verify(env: str | None) -> None:
    """Check the whole chain and its signed checkpoints; exit 1 naming the first bad record."""
    from bankplatform.cli.access import authorised_after
    from bankplatform.errors import BankplatformError
    from bankplatform.security.policy import Action

    # The check is recorded only once the chain is found intact: nothing is ever
    # appended (or signed) on top of a chain that verify has just found broken.
    with authorised_after(env, Action.READ_AUDIT_LOG, "audit_log") as security:
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
    records = _log(env).records()
    for record in deque(records, maxlen=tail) if tail else records:
        click.echo(json.dumps(record, sort_keys=True))


def _log(env: str | None) -> AuditLog:
    from bankplatform.cli.access import authorised
    from bankplatform.security.policy import Action

    return authorised(env, Action.READ_AUDIT_LOG, "audit_log").audit_log()
