"""``bankplatform data``: the synthetic core-banking raw extract, and the loan
outcomes the loan-servicing system delivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bankplatform.errors import BankplatformError

_PROGRESS_FROM = 100_000


@click.group()
def data() -> None:
    """Synthetic core-banking data."""


@data.command("generate")
@click.option("--customers", type=int, help="Number of customers [env default].")
@click.option(
    "--seed", type=int, help="Random seed; same seed and size give identical files."
)
@click.option("--dirty-rate", type=float, help="Share of defective rows per table.")
@click.option(
    "--group-bias",
    type=float,
    help="Planted bias against one protected group (0 = off).",
)
@click.option(
    "--drift", type=float, help="Planted drift over application time (0 = off)."
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the encrypted parquet files [data/01_raw].",
)
@click.option("--env", help="Kedro env whose parameters_data.yml gives the defaults.")
def generate(output: Path | None, env: str | None, **options: Any) -> None:
    """Write the synthetic raw extract (customers, accounts, transactions,
    loan applications, loan outcomes) as envelope-encrypted parquet."""
    from bankplatform.cli.access import authorised
    from bankplatform.context import workspace_context
    from bankplatform.security.client import acting_for
    from bankplatform.security.envelope import sealing_with
    from bankplatform.security.policy import Action
    from bankplatform.security.runtime import granted_run
    from bankplatform.synthetic import (
        GeneratorConfig,
        generate_raw_extract,
    )

    ctx = workspace_context(env)
    defaults = dict(ctx.params.get("synthetic_extract") or {})
    if not defaults.pop("enabled", True):
        msg = f"synthetic data generation is disabled in env {ctx.env!r}"
        raise BankplatformError(msg)
    if ctx.manifest.production:
        msg = "data generate is refused in a production workspace (.kedro.yml says production: true): the raw extract comes from the source system"
        raise BankplatformError(msg)
    security = authorised(
        ctx.security, Action.GENERATE_SYNTHETIC_DATA, "dataset:raw_extract"
    )
    settings = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    config = GeneratorConfig.model_validate(settings)
    target = output or ctx.root / "data" / "01_raw"
    # Written as the source system (its data keys are the key service's decision).
    with granted_run(security, ["synthetic_extract"]), acting_for("synthetic_extract"):
        summary = generate_raw_extract(
            config,
            target,
            progress=config.customers >= _PROGRESS_FROM,
            seal=sealing_with(security.key_service()),
        )
    defects = sum(sum(kinds.values()) for kinds in summary.defects.values())
    rows = ", ".join(f"{table} {count:,}" for table, count in summary.rows.items())
    click.echo(
        f"wrote {target}: {rows} ({defects:,} defective rows planted, seed {config.seed})"
    )


@data.command("outcomes")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--env", help="Kedro env whose catalog and key service apply.")
def outcomes(export: Path, env: str | None) -> None:
    """Import the loan-servicing system's outcomes of scored applications.

    EXPORT is a .csv or .parquet file with request_id, customer_id (the bank's
    customer number), defaulted (0 or 1) and observed_at (a date). It is checked
    by a data contract as the loan-servicing service (started by a data
    engineer): the request must be a decision the audit log vouches for, not
    delivered before, about that customer; accepted rows are pseudonymised into
    decision_outcomes, the others go to quarantine with their reason. Audited.
    """
    from bankplatform.context import workspace_context
    from bankplatform.monitoring.outcomes import (
        OUTCOMES,
        QUARANTINE,
        OutcomeStores,
        import_outcomes,
    )
    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import activate, granted_run

    ctx = workspace_context(env)
    activate(ctx.security)
    delivered, quarantine = (
        catalog_dataset(ctx, OUTCOMES),
        catalog_dataset(ctx, QUARANTINE),
    )
    stores = OutcomeStores(delivered.load, delivered.save, quarantine.save)
    with granted_run(ctx.security, ["loan_outcomes"]), acting_for("loan_outcomes"):
        done = import_outcomes(export, ctx.security, ctx.serving.decision_log, stores)
    rules = ", ".join(f"{rule} {count:,}" for rule, count in done.by_rule.items())
    click.echo(
        f"imported {done.accepted:,} of {done.rows:,} outcomes from {done.source} as "
        f"{OUTCOMES}/{done.delivery} (sha256 {done.sha256[:12]}...)"
    )
    if done.quarantined:
        click.echo(
            f"  {done.quarantined:,} rows quarantined ({rules}) in {QUARANTINE}/{done.delivery}"
        )


def catalog_dataset(ctx: Any, name: str) -> Any:
    """A catalog entry of the command's env, its paths anchored at the workspace."""
    from bankplatform.project import catalog_dataset as open_entry

    return open_entry(ctx.root, ctx.env, name)
