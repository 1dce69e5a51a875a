"""``bankplatform workspace``: the workspace manifest and what the workspace holds."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import click
import yaml

if TYPE_CHECKING:
    from bankplatform.workspace import Workspace

from bankplatform.manifest import load_manifest
from bankplatform.project import find_project_root


@click.group()
def workspace() -> None:
    """The workspace manifest (.kedro.yml) and what the workspace holds."""


@workspace.command("show")
def show() -> None:
    """Validate .kedro.yml and print it."""
    root = find_project_root()
    manifest = load_manifest(root)
    click.echo(f"# {root / '.kedro.yml'} (valid)")
    click.echo(
        yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False).rstrip()
    )


@workspace.command("status")
@click.option("--env", help="Kedro env [manifest default].")
def status(env: str | None) -> None:
    """Summarise what the pipelines have produced in this workspace."""
    from bankplatform.workspace import (
        open_workspace,
    )

    _quiet_kedro_logs()
    ws = open_workspace(env)
    click.echo(
        f"workspace {ws.manifest.workspace_id} | model {ws.manifest.model_name} | env {ws.env}"
    )
    extract = ws.root / "data" / "01_raw" / "_extract.json"
    if extract.is_file():
        click.echo(_describe_extract(json.loads(extract.read_text())))
    if ws.catalog.exists("ingestion_report"):
        click.echo(_describe_ingestion(ws.catalog.load("ingestion_report")))
    else:
        click.echo("ingestion: not run yet (kedro run --pipeline ingestion)")
    click.echo(_describe_features(ws))
    click.echo(_describe_training(ws))
    click.echo(_describe_evaluation(ws))
    click.echo(_describe_lineage(ws))
    click.echo(_describe_policy(ws))


def _describe_policy(ws: Workspace) -> str:
    """Whether the key service decides from what conf/ says now."""
    state = ws.settings.security.policy_status()
    if not state["differences"]:
        return f"policy: the key service's installed policy is conf/'s (sha256 {state['installed_sha256'][:12]})"
    first = state["differences"][0]
    more = (
        f" (and {len(state['differences']) - 1} more)"
        if len(state["differences"]) > 1
        else ""
    )
    return (
        f"policy: conf/ differs from the key service's installed policy: {first}{more}; "
        "nothing changes until the keyholder runs `bankplatform keys policy --install`"
    )


def _describe_training(ws: Workspace) -> str:
    if not (
        ws.catalog.exists("training_report") and ws.catalog.exists("model_registration")
    ):
        return "training: not run yet (kedro run --pipeline training)"
    report = ws.catalog.load("training_report")
    registration = ws.catalog.load("model_registration")
    return (
        f"training: {registration['model_name']} version {registration['version']} "
        f"registered; out-of-time AUC "
        f"{report['metrics']['auc_out_of_time']:.3f} ({report['api']} on {report['device']})"
    )


def _describe_evaluation(ws: Workspace) -> str:
    if not ws.catalog.exists("gate_outcome"):
        return "evaluation: not run yet (kedro run --pipeline evaluation)"
    outcome = ws.catalog.load("gate_outcome")
    failed = [g["name"] for g in outcome["gates"] if g["blocking"] and not g["passed"]]
    verdict = (
        f"gates {outcome['gate_status']}"
        + (f" ({', '.join(failed)})" if failed else "")
        + f"; evidence in {outcome['evidence_manifest']['path'].rsplit('/', 1)[0]}"
    )
    follow = (
        f"; a validator approves with `bankplatform model approve {outcome['model_name']} {outcome['version']}`"
        if outcome["gate_status"] == "passed"
        else ""
    )
    return f"evaluation: {outcome['model_name']} version {outcome['version']} {verdict}{follow}"


def _describe_features(ws: Workspace) -> str:
    if not (
        ws.catalog.exists("feature_registration")
        and ws.catalog.exists("online_store_materialization")
    ):
        return "features: not built yet (kedro run --pipeline features)"
    registration = ws.catalog.load("feature_registration")
    online = ws.catalog.load("online_store_materialization")
    services = ", ".join(
        f"{name} (version {entry['version']}, {len(entry['features'])} features)"
        for name, entry in sorted(registration["feature_services"].items())
    )
    return (
        f"features: Feast project {registration['project']}: {services}; online store "
        f"holds {online['customers']:,} customers as of {online['materialized_until']}"
    )


def _describe_lineage(ws: Workspace) -> str:
    from mlflow.tracking import MlflowClient

    from bankplatform.lineage.settings import load_settings, unreachable_reason

    settings, uri = load_settings(ws.context.config_loader, ws.root)
    spooled = (
        len(list(settings.spool_dir.glob("*.jsonl")))
        if settings.spool_dir.is_dir()
        else 0
    )
    waiting = (
        f"; {spooled} run(s) spooled, send with `bankplatform lineage replay`"
        if spooled
        else ""
    )
    reason = unreachable_reason(uri, settings.probe_timeout_s)
    if reason is not None:
        return f"lineage: tracking store {uri} unreachable ({reason}){waiting}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(ws.manifest.model_name)
    runs = (
        client.search_runs(
            [experiment.experiment_id],
            # Kedro runs only, not the candidate runs the training pipeline logs.
            filter_string="tags.`kedro.pipelines` LIKE '%'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if experiment
        else []
    )
    if not runs:
        return f"lineage: no run recorded yet in {uri}{waiting}"
    last = runs[0]
    return f"lineage: last kedro run {last.info.run_name} {last.info.status} (run id {last.info.run_id}) in {uri}; `make ui` to browse{waiting}"


def _quiet_kedro_logs() -> None:
    # Status output is for people; Kedro's per-dataset INFO lines drown it.
    for name in ("kedro", "kedro_mlflow", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _describe_extract(summary: dict[str, Any]) -> str:
    config = summary["config"]
    defects = sum(sum(kinds.values()) for kinds in summary["defects"].values())
    return (
        f"raw extract: {config['customers']:,} customers, seed {config['seed']}, "
        f"{sum(summary['rows'].values()):,} rows, {defects:,} defective rows planted"
    )


def _describe_ingestion(report: dict[str, Any]) -> str:
    lines = [
        f"{'ingestion':<18}{'input':>12}{'accepted':>12}{'quarantined':>13}  top reasons"
    ]
    for table, counts in report["tables"].items():
        reasons = sorted(counts["by_rule"].items(), key=lambda item: -item[1])[:3]
        top = ", ".join(f"{rule} {count}" for rule, count in reasons)
        lines.append(
            f"  {table:<16}{counts['input']:>12,}{counts['accepted']:>12,}"
            f"{counts['quarantined']:>13,}  {top}"
        )
    return "\n".join(lines)
