"""``bankplatform kpis``: the platform's KPIs from the audit log and MLflow."""

from __future__ import annotations

import json

import click


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object instead of lines."
)
@click.option("--env", help="Kedro env whose security.yml applies [manifest default].")
def kpis(as_json: bool, env: str | None) -> None:
    """Time to market, approval lead time, gate failures, rollbacks and drift
    incidents per month, models in production per squad (auditor role)."""
    from bankplatform.context import workspace_context
    from bankplatform.governance.kpis import kpi_lines, workspace_kpis
    from bankplatform.security.runtime import activate

    ctx = workspace_context(env)
    activate(ctx.security)
    measured = workspace_kpis(ctx.security, ctx.manifest, ctx.tracking_uri)
    if as_json:
        click.echo(json.dumps(measured.as_record(), indent=2))
        return
    for line in kpi_lines(measured.as_record()):
        click.echo(line)
