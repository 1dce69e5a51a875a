"""Nodes of the monitoring pipeline.

The nodes act as the monitoring service (``svc-monitoring``) on behalf of whoever
started the run: they read the champion's reference and the loan outcomes through
the key service, record the verdict and open reviews in the audit log, and roll
back through the governed lifecycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

# Imported at run time: Kedro reads node type hints (it warns of unresolvable ones).
from bankplatform.context import WorkspaceContext
from bankplatform.errors import BankplatformError
from bankplatform.governance.evidence import file_sha256
from bankplatform.governance.registry import CHAMPION, alias_holder
from bankplatform.monitoring.actions import WindowCase, take_action
from bankplatform.monitoring.inputs import (
    reference_partition,
    sample_reference,
    with_outcomes,
)
from bankplatform.monitoring.reports import DRIFT_JSON, write_html
from bankplatform.monitoring.verdict import WindowVerdict, judge_window
from bankplatform.monitoring.windows import (
    logged_decisions,
    newest_time,
    parse_window,
    vouched_decision_lines,
    window_decisions,
)

REPORTS = Path("data") / "08_reporting" / "monitoring"


class MonitoringError(BankplatformError):
    """Monitoring cannot judge a window (no champion, no reference)."""


def prepare_champion_reference(
    monitoring_references: dict[str, Callable[[], pd.DataFrame]],
    workspace: WorkspaceContext,
) -> dict[str, Any]:
    """The champion's validated out-of-time window, sampled by the seeded rule.

    Returns:
        ``model_name``, ``model_version``, ``reference`` and ``labelled_until``
        (the newest labelled application the champion was validated on: its
        training window's end).

    Raises:
        MonitoringError: No champion, or no reference kept for it.
    """
    settings = workspace.monitoring
    name = workspace.model_name
    version = alias_holder(MlflowClient(), name, CHAMPION)
    if version is None:
        msg = f"{name} has no champion: nothing is served, so nothing to monitor"
        raise MonitoringError(msg)
    partition = reference_partition(name, version)
    if partition not in monitoring_references:
        msg = f"no monitoring reference for {name} version {version}: it was evaluated before references were kept; run `kedro run --pipeline evaluation` for it"
        raise MonitoringError(msg)
    validated = monitoring_references[partition]()
    reference = sample_reference(
        validated, settings.reference_rows, settings.reference_seed
    )
    return {
        "model_name": name,
        "model_version": version,
        "reference": reference,
        "labelled_until": newest_time(validated["event_timestamp"]),
    }


def collect_window_decisions(
    decision_outcomes: dict[str, Callable[[], pd.DataFrame]],
    workspace: WorkspaceContext,
) -> dict[str, Any]:
    """The window's scored decisions, with the outcomes that have arrived.

    Returns:
        ``window`` (its id, start and end) and ``decisions``.
    """
    window = parse_window(workspace.monitoring.window)
    # Only lines the scoring service's audit records vouch for are measured; a
    # record replayed at a restart was made from the line itself and vouches for
    # nothing (a line planted while the service was down would be one).
    audited = vouched_decision_lines(
        workspace.security.audit_log().records(resource="request:")
    )
    decisions, tampered = window_decisions(
        workspace.serving.decision_log, window, audited
    )
    outcomes = (
        pd.concat([load() for load in decision_outcomes.values()], ignore_index=True)
        if decision_outcomes
        else None
    )
    labelled = (
        logged_decisions(workspace.serving.decision_log, audited)
        .merge(outcomes[["request_id"]].drop_duplicates(), on="request_id")
        .get("time")
        if outcomes is not None
        else None
    )
    return {
        # The newest served decision whose outcome has arrived: retraining
        # needs one newer than the champion's training window.
        "newest_labelled": newest_time(labelled) if labelled is not None else None,
        "window": {
            "id": window.id,
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
        },
        "decisions": with_outcomes(decisions, outcomes),
        "tampered_decision_lines": tampered,
    }


def judge_monitoring_window(
    champion_reference: dict[str, Any],
    window_decisions: dict[str, Any],
    workspace: WorkspaceContext,
) -> dict[str, Any]:
    """Measure the window, write its reports, log them to MLflow and audit the verdict.

    Returns:
        The verdict summary with the report paths and their sha256.
    """
    settings, root = workspace.monitoring, workspace.root
    window = window_decisions["window"]
    verdict = judge_window(
        champion_reference["reference"], window_decisions["decisions"], settings
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = root / REPORTS / window["id"] / stamp
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "window": window["id"],
        "window_start": window["start"],
        "window_end": window["end"],
        "model_name": champion_reference["model_name"],
        "model_version": champion_reference["model_version"],
        "reference_rows": len(champion_reference["reference"]),
        "champion_labelled_until": champion_reference.get("labelled_until"),
        "newest_labelled": window_decisions.get("newest_labelled"),
        **verdict.summary(),
        # Decision lines the audit log does not vouch for: counted, never used.
        "tampered_decision_lines": window_decisions.get("tampered_decision_lines", 0),
        "settings": settings.model_dump(mode="json"),
    }
    hashes = _write_reports(root, folder, verdict, summary)
    run_id = _log_to_mlflow(summary, folder, hashes)
    workspace.security.audit_log().append(
        action="monitoring.verdict",
        resource=f"monitoring:{summary['model_name']}/{window['id']}",
        outcome="allowed",
        details={
            "model_version": summary["model_version"],
            "decisions": summary["decisions"],
            "drifted_share": summary["drifted_share"],
            "prediction_drift": (summary["prediction"] or {}).get("score"),
            "findings": summary["findings"],
            "action": summary["action"],
            "reports_sha256": hashes,
            "mlflow_run_id": run_id,
        },
    )
    return {
        **summary,
        "folder": str(folder.relative_to(root)),
        "reports_sha256": hashes,
        "mlflow_run_id": run_id,
    }


def act_on_verdict(
    monitoring_verdict: dict[str, Any], workspace: WorkspaceContext
) -> dict[str, Any]:
    """Carry out the verdict's action, once per window (audited).

    Returns:
        The window, findings, action and what it produced.
    """
    root = workspace.root
    client = MlflowClient()
    case = WindowCase(
        root=root,
        model_name=monitoring_verdict["model_name"],
        window_id=monitoring_verdict["window"],
        folder=root / monitoring_verdict["folder"],
        verdict=monitoring_verdict,
        reports=monitoring_verdict["reports_sha256"],
        security=workspace.security,
        client=client,
    )
    result = take_action(case, workspace.monitoring)
    client.set_tag(
        monitoring_verdict["mlflow_run_id"],
        "monitoring.action_status",
        result["status"],
    )
    return {
        "window": monitoring_verdict["window"],
        "model_version": monitoring_verdict["model_version"],
        "decisions": monitoring_verdict["decisions"],
        "findings": monitoring_verdict["findings"],
        "reports": monitoring_verdict["folder"],
        **result,
    }


def _write_reports(
    root: Path, folder: Path, verdict: WindowVerdict, summary: dict[str, Any]
) -> dict[str, str]:
    written = [folder / DRIFT_JSON]
    (folder / DRIFT_JSON).write_text(json.dumps(summary, indent=2, default=str))
    for name, snapshot in (
        ("drift", verdict.drift_snapshot),
        ("quality", verdict.quality_snapshot),
    ):
        if snapshot is None:
            continue
        snapshot_file = folder / f"evidently_{name}.json"
        snapshot_file.write_text(snapshot.json())
        html_file = folder / f"evidently_{name}.html"
        write_html(snapshot, html_file, summary)
        written += [snapshot_file, html_file]
    return {str(p.relative_to(root)): file_sha256(p) for p in written}


def _log_to_mlflow(
    summary: dict[str, Any], folder: Path, hashes: dict[str, str]
) -> str:
    mlflow.set_experiment(f"{summary['model_name']}-monitoring")
    with mlflow.start_run(run_name=f"monitoring:{summary['window']}") as run:
        mlflow.set_tags(
            {
                "monitoring.window": summary["window"],
                "monitoring.action": summary["action"],
                "monitoring.findings": ",".join(summary["findings"]) or "-",
                "model_name": summary["model_name"],
                "model_version": str(summary["model_version"]),
            }
        )
        metrics = {
            "decisions": float(summary["decisions"]),
            "drifted_share": float(summary["drifted_share"]),
        }
        if summary["prediction"]:
            metrics["prediction_drift"] = float(summary["prediction"]["score"])
        quality = summary["quality"] or {}
        if quality.get("window_auc") is not None:
            metrics["window_auc"] = float(quality["window_auc"])
            metrics["reference_auc"] = float(quality["reference_auc"])
        mlflow.log_metrics(metrics)
        mlflow.log_dict(hashes, "monitoring/reports_sha256.json")
        mlflow.log_artifacts(str(folder), "monitoring")
        return str(run.info.run_id)
