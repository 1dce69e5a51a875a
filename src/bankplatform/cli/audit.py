"""``bankplatform audit``: read and verify the audit log."""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bankplatform.security.audit import AuditLog


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def verify(env: str | None) -> None:
    """Check the whole chain and its signed checkpoints; exit 1 naming the first bad record."""
    from bankplatform.errors import BankplatformError

    verdict = _log(env).verify()
    if not verdict.ok:
        raise BankplatformError(f"audit log NOT intact: {verdict.problem}")
    click.echo(
        f"audit log intact: {verdict.records} records, {verdict.checkpoints} signed checkpoints"
    )


@audit.command("show")
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N records.")
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
