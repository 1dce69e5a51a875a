"""``bankplatform data``: the synthetic core-banking raw extract."""

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
