"""``bankplatform review``: the human-review items monitoring opens."""

from __future__ import annotations

import click

_ENV = click.option(
    "--env", help="Kedro env whose security.yml applies [manifest default]."
)


@click.group()
def review() -> None:
    """Human-review items opened by monitoring (kept in the audit log)."""


@review.command("list")
@click.option("--all", "everything", is_flag=True, help="Closed items too.")
@_ENV
def list_items(everything: bool, env: str | None) -> None:
    """One line per open item: id, when opened, window, version, findings."""
    from bankplatform.cli.access import authorised
    from bankplatform.monitoring.reviews import review_items
    from bankplatform.security.policy import Action

    security = authorised(env, Action.READ_REPORTS, "review:")
    items = [i for i in review_items(security) if everything or i.is_open]
    if not items:
        click.echo("no open review items" if not everything else "no review items")
    for item in items:
        d = item.details
        state = (
            "open" if item.is_open else f"closed by {item.closed_by}: {item.resolution}"
        )
        click.echo(
            f"{item.id}  {item.opened_at[:19]}  window {d.get('window')}  "
            f"{d.get('model_name')} v{d.get('model_version')}  "
            f"{', '.join(d.get('findings') or {}) or '-'}  [{state}]"
        )
        if item.is_open:
            click.echo(f"    notebook: {d.get('notebook_html')}")


@review.command("close")
@click.argument("item_id")
@click.option("--resolution", required=True, help="What the reviewer decided, and why.")
@_ENV
def close(item_id: str, resolution: str, env: str | None) -> None:
    """Close an open item (a model validator or risk officer; audited)."""
    from bankplatform.monitoring.reviews import close_review
    from bankplatform.security.runtime import activate, workspace_security

    security = workspace_security(env)
    activate(security)
    click.echo(close_review(security, item_id, resolution))
