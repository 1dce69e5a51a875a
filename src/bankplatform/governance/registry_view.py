"""What the ``04_lineage_and_registry`` notebook shows: the last Kedro runs with
their inputs and digests, the registry's versions and aliases, and the newest
candidate's gate report, read from MLflow and the evidence folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bankplatform.governance.evidence import GATE_REPORT, evidence_folder


@dataclass(frozen=True)
class LineageView:
    """Runs, their inputs, the registry and the newest gate report.

    Attributes:
        runs: One row per Kedro run, newest first.
        inputs: One row per (run, input dataset) with its digest.
        versions: One row per registered version with its aliases.
        gate_report: The newest version's gate report (empty before evaluation).
    """

    runs: pd.DataFrame
    inputs: pd.DataFrame
    versions: pd.DataFrame
    gate_report: dict[str, Any]


def open_lineage_view(
    env: str | None = None, project_dir: str | None = None, last_runs: int = 10
) -> LineageView:
    """Read the workspace's lineage and registry.

    Args:
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's.
        project_dir: The workspace; defaults to the one around the current folder.
        last_runs: How many Kedro runs to show.
    """
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    from bankplatform.governance.registry import (  # noqa: PLC0415
        all_versions,
        current_aliases,
        tags_of,
    )
    from bankplatform.lineage.settings import load_settings  # noqa: PLC0415
    from bankplatform.manifest import load_manifest  # noqa: PLC0415
    from bankplatform.project import (  # noqa: PLC0415
        env_config_loader,
        find_project_root,
        resolve_env,
    )

    root = find_project_root(Path(project_dir) if project_dir else None)
    manifest = load_manifest(root)
    chosen = resolve_env(manifest, env)
    _, uri = load_settings(env_config_loader(root, chosen), root)
    client = MlflowClient(tracking_uri=uri)
    name = manifest.model_name
    experiment = client.get_experiment_by_name(name)
    runs = (
        client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`kedro.pipelines` LIKE '%'",
            order_by=["attributes.start_time DESC"],
            max_results=last_runs,
        )
        if experiment
        else []
    )
    aliases = current_aliases(client, name)
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    versions = [
        {
            "version": int(v.version),
            "aliases": ", ".join(sorted(by_version.get(int(v.version), []))) or "-",
            "gate_status": tags_of(v).get("gate_status", "-"),
            "approval_status": tags_of(v).get("approval_status", "-"),
            "trainer": tags_of(v).get("trainer", "-"),
        }
        for v in sorted(all_versions(client, name), key=lambda v: int(v.version))
    ]
    newest = versions[-1]["version"] if versions else None
    report_file = evidence_folder(root, name, newest) / GATE_REPORT if newest else None
    return LineageView(
        runs=pd.DataFrame([_run_row(r) for r in runs], columns=_RUN_COLUMNS),
        inputs=pd.DataFrame(
            [
                {
                    "run": r.info.run_name,
                    "dataset": d.dataset.name,
                    "digest": d.dataset.digest,
                }
                for r in runs
                for d in (r.inputs.dataset_inputs if r.inputs else [])
            ],
            columns=["run", "dataset", "digest"],
        ),
        versions=pd.DataFrame(
            versions,
            columns=["version", "aliases", "gate_status", "approval_status", "trainer"],
        ),
        gate_report=json.loads(report_file.read_text())
        if report_file and report_file.is_file()
        else {},
    )


_RUN_COLUMNS = ["run", "pipelines", "env", "status", "started", "seconds", "git_commit"]


def _run_row(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    ended = run.info.end_time or run.info.start_time
    return {
        "run": run.info.run_name,
        "pipelines": tags.get("kedro.pipelines", "-"),
        "env": tags.get("kedro.env", "-"),
        "status": run.info.status,
        "started": datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC).isoformat(
            timespec="seconds"
        ),
        "seconds": round((ended - run.info.start_time) / 1000, 1),
        "git_commit": tags.get("git.commit", tags.get("git_commit", "-"))[:12],
    }
