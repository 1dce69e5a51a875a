"""``bankplatform lineage``: lineage kept while the tracking store was unreachable."""

from __future__ import annotations

import click


@click.group()
def lineage() -> None:
    """Run lineage in MLflow."""


@lineage.command("replay")
@click.option(
    "--env", help="Kedro env whose lineage.yml and mlflow.yml apply [manifest default]."
)
def replay(env: str | None) -> None:
    """Send lineage spooled while the tracking store was unreachable."""
    from bankplatform.errors import BankplatformError
    from bankplatform.lineage.settings import load_settings, unreachable_reason
    from bankplatform.lineage.sinks import replay_spool
    from bankplatform.security.policy import Action
    from bankplatform.security.runtime import active_security
    from bankplatform.workspace import open_workspace

    ws = open_workspace(env)
    # Writing runs into the tracking store is a pipeline runner's (audited).
    active_security().enforce(Action.RUN_PIPELINE, "lineage:replay")
    settings, tracking_uri = load_settings(ws.context.config_loader, ws.root)
    reason = unreachable_reason(tracking_uri, settings.probe_timeout_s)
    if reason is not None:
        msg = f"tracking store {tracking_uri} is still unreachable ({reason}); nothing replayed"
        raise BankplatformError(msg)
    if not settings.spool_dir.is_dir():
        click.echo(f"nothing to replay: no spool folder {settings.spool_dir}")
        return
    run_ids = replay_spool(settings.spool_dir, tracking_uri)
    click.echo(
        f"replayed {len(run_ids)} spooled run(s) into {tracking_uri}: {', '.join(run_ids) or '-'}"
    )
