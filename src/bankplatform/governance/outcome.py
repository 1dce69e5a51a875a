"""Recording an evaluation: evidence notebooks, the final verdict, and where it
is kept (model-version tags, the candidate's MLflow run, the audit log).

The audit record holds the sha256 of the evidence manifest and of every evidence
file, so approval can tell an edited notebook (or an edited manifest) from the
one the gates saw, even if someone rewrites the version's tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from bankplatform.governance.evidence import (
    GATE_REPORT,
    NotebookEvidence,
    evidence_folder,
    execute_notebook,
    file_sha256,
    write_manifest,
)
from bankplatform.governance.gates import as_records, check_gate, verdict
from bankplatform.governance.settings import GovernanceSettings
from bankplatform.security.policy import Action
from bankplatform.security.runtime import active_security

# MLflow caps a tag value at 5,000 characters: long texts are cut, never refused.
_TAG_LIMIT = 5_000


@dataclass(frozen=True)
class EvaluationRecord:
    """A gate report to record, in a workspace."""

    root: Path
    report: dict[str, Any]


def record_evaluation(
    record: EvaluationRecord, settings: GovernanceSettings
) -> dict[str, Any]:
    """Execute the evidence notebooks, decide the evidence gate, record everything.

    Returns:
        The final gate report (``evidence`` added, ``gate_status`` final).

    Raises:
        AccessDenied: The acting identity may not evaluate models (audited).
    """
    report = dict(record.report)
    name, version = report["model_name"], int(report["version"])
    security = active_security()
    security.enforce(Action.EVALUATE_MODEL, f"model:{name}/{version}")
    folder = evidence_folder(record.root, name, version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / GATE_REPORT).write_text(json.dumps(report, indent=2, default=str))
    notebooks = [
        execute_notebook(
            record.root,
            notebook,
            folder,
            {
                "model_name": name,
                "version": version,
                "run_id": report["run_id"],
                "env": security.env,
                "project_dir": str(record.root),
            },
            settings.notebook_timeout_s,
        )
        for notebook in settings.evidence_notebooks
    ]
    failed = [n for n in notebooks if n.error]
    evidence_gate = check_gate(
        "evidence",
        float(len(failed)),
        settings.gates.evidence,
        "; ".join(f"{n.name}: {n.error}" for n in failed)
        or f"{len(notebooks)} evidence notebook(s) executed",
    )
    report["gates"] = [*report["gates"], *as_records([evidence_gate])]
    report["gate_status"] = verdict(report["gates"])
    report["evidence"] = [
        {"name": n.name, "notebook": n.notebook, "html": n.html, "error": n.error}
        for n in notebooks
    ]
    (folder / GATE_REPORT).write_text(json.dumps(report, indent=2, default=str))
    manifest = write_manifest(folder, record.root, notebooks)
    hashes = json.loads(manifest.read_text())["sha256"]
    manifest_sha = file_sha256(manifest)
    manifest_path = str(manifest.relative_to(record.root))
    _record_in_mlflow(report, folder, manifest_path, manifest_sha, notebooks)
    security.audit_log().append(
        action="model.evaluate",
        resource=f"model:{name}/{version}",
        outcome="allowed",
        details={
            "gate_status": report["gate_status"],
            "failed_gates": [
                g["name"] for g in report["gates"] if g["blocking"] and not g["passed"]
            ],
            "evidence_manifest": manifest_path,
            "evidence_manifest_sha256": manifest_sha,
            "evidence_sha256": hashes,
        },
    )
    report["evidence_manifest"] = {"path": manifest_path, "sha256": manifest_sha}
    return report


def _record_in_mlflow(
    report: dict[str, Any],
    folder: Path,
    manifest_path: str,
    manifest_sha: str,
    notebooks: list[NotebookEvidence],
) -> None:
    client = MlflowClient(mlflow.get_tracking_uri())
    name, version, run_id = (
        report["model_name"],
        str(report["version"]),
        report["run_id"],
    )
    for gate in report["gates"]:
        client.log_metric(run_id, f"gate.{gate['name']}", float(gate["value"]))
        client.set_tag(
            run_id, f"gate.{gate['name']}", "passed" if gate["passed"] else "failed"
        )
    for metric, value in report["measurements"]["performance"]["out_of_time"].items():
        client.log_metric(run_id, f"out_of_time.{metric}", float(value))
    client.set_tag(run_id, "gate_status", report["gate_status"])
    client.log_artifacts(run_id, str(folder), "governance")
    tags = {
        "gate_status": report["gate_status"],
        "gate.failed": _names(report, blocking=True),
        "gate.advisory_failed": _names(report, blocking=False),
        "evidence.manifest": manifest_path,
        "evidence.manifest_sha256": manifest_sha,
    }
    for notebook in notebooks:
        for path, digest in notebook.sha256.items():
            tags[f"evidence.{Path(path).name}.sha256"] = digest
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value[:_TAG_LIMIT])


def _names(report: dict[str, Any], *, blocking: bool) -> str:
    """Failed gates of one kind, comma-separated, ``-`` when none."""
    failed = [
        g["name"]
        for g in report["gates"]
        if g["blocking"] is blocking and not g["passed"]
    ]
    return ",".join(failed) or "-"
