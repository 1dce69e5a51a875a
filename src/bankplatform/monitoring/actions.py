"""Carrying out a window's action, once: human review, retraining, rollback.

Which actions a window has already triggered is read from the audit log
(``monitoring.action`` records), and the window's folder is locked while an
action is decided and taken, so two monitoring runs of one window cannot both
act. Each action is taken at most once per window; a more severe one can still
follow (a review first, a rollback once the outcomes show the drop).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bankplatform.errors import BankplatformError
from bankplatform.governance.evidence import execute_notebook
from bankplatform.governance.lifecycle import Governed, rollback
from bankplatform.monitoring.reports import DRIFT_JSON
from bankplatform.monitoring.reviews import open_review, review_id
from bankplatform.monitoring.settings import MonitoringAction

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from bankplatform.monitoring.settings import MonitoringSettings
    from bankplatform.security.runtime import WorkspaceSecurity

ACTION_RECORD = "monitoring.action"
_RETRAIN_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class WindowCase:
    """One window's verdict, where its files are and who acts on it.

    Attributes:
        root: The workspace.
        model_name: The registered model.
        window_id: The window's id.
        folder: This run's report folder (inside the window's folder).
        verdict: The verdict summary (JSON-ready), with ``model_version``.
        reports: The report files' sha256, by path relative to the workspace.
        security: The env's security (the node acts as the monitoring service).
        client: MLflow client of the env's registry.
    """

    root: Path
    model_name: str
    window_id: str
    folder: Path
    verdict: dict[str, Any]
    reports: dict[str, str]
    security: WorkspaceSecurity
    client: MlflowClient

    @property
    def resource(self) -> str:
        """The window's audit resource."""
        return f"monitoring:{self.model_name}/{self.window_id}"


def take_action(case: WindowCase, settings: MonitoringSettings) -> dict[str, Any]:
    """Carry out the verdict's action unless this window already triggered it.

    Returns:
        ``action``, ``status`` (``taken``, ``failed``, ``already taken``,
        ``nothing to do``) and what the action produced.
    """
    action = MonitoringAction(case.verdict["action"])
    if action is MonitoringAction.NONE:
        return {"action": action.value, "status": "nothing to do"}
    instead = ""
    if action is MonitoringAction.RETRAIN:
        instead = nothing_new_to_learn(case.verdict)
        if instead:  # the same window again would fit the same model: a person decides
            action = MonitoringAction.HUMAN_REVIEW
    with _window_lock(case.folder.parent):
        earlier = actions_taken(case.security, case.resource)
        if action.value in earlier:
            return {
                "action": action.value,
                "status": "already taken",
                "taken_at": earlier[action.value],
            }
        outcome: Literal["allowed", "failed"] = "allowed"
        try:
            result = {"status": "taken", **_carry_out(action, case, settings, instead)}
        except BankplatformError as error:
            result, outcome = {"status": "failed", "error": str(error)[:500]}, "failed"
        case.security.audit_log().append(
            action=ACTION_RECORD,
            resource=case.resource,
            outcome=outcome,
            details={
                "action": action.value,
                "model_version": case.verdict["model_version"],
                "findings": case.verdict["findings"],
                "reports_sha256": case.reports,
                **result,
            },
        )
    return {"action": action.value, **result}


def nothing_new_to_learn(verdict: dict[str, Any]) -> str:
    """Why retraining would refit the champion's own window, or ``""``.

    Retraining learns from served decisions whose loan outcomes arrived after
    the champion's training window ended (``newest_labelled`` against
    ``champion_labelled_until``); without one it would make the same model
    again, so the window goes to a person instead.
    """
    until = verdict.get("champion_labelled_until")
    newest = verdict.get("newest_labelled")
    if until is None:
        return ""  # a champion without a recorded window: retraining decides
    if newest is None or datetime.fromisoformat(newest) <= datetime.fromisoformat(
        until
    ):
        seen = f"the newest is from {newest[:10]}" if newest else "none has arrived"
        return (
            f"retraining not started: no loan outcome of a served decision is newer than "
            f"version {verdict.get('model_version')}'s training window (labelled up to "
            f"{until[:10]}; {seen}), so it would fit the same model again; import the "
            "loan-servicing system's outcomes (`bankplatform data outcomes FILE`) first"
        )
    return ""


def actions_taken(security: WorkspaceSecurity, resource: str) -> dict[str, str]:
    """Action -> when, of the window's actions taken so far (per the audit log)."""
    taken = {}
    for record in security.audit_log().records(resource=resource):
        if (
            record.get("resource") == resource
            and record.get("action") == ACTION_RECORD
            and record.get("outcome") == "allowed"
        ):
            taken[str(record["details"]["action"])] = str(record["time"])
    return taken


def _carry_out(
    action: MonitoringAction,
    case: WindowCase,
    settings: MonitoringSettings,
    instead_of_retraining: str = "",
) -> dict[str, Any]:
    if action is MonitoringAction.HUMAN_REVIEW:
        opened = _open_review(case, settings, escalated_from=instead_of_retraining)
        return {"instead_of": "retrain", **opened} if instead_of_retraining else opened
    if action is MonitoringAction.ROLLBACK:
        return _roll_back(case, settings)
    return _retrain(case, settings)


def _open_review(
    case: WindowCase, settings: MonitoringSettings, escalated_from: str
) -> dict[str, Any]:
    """Execute the drift-review notebook on the window's report and open the item."""
    notebook = execute_notebook(
        case.root,
        settings.review_notebook,
        case.folder,
        {
            "report": str(case.folder.relative_to(case.root) / DRIFT_JSON),
            "project_dir": str(case.root),
        },
        settings.notebook_timeout_s,
    )
    details = {
        "window": case.window_id,
        "model_name": case.model_name,
        "model_version": case.verdict["model_version"],
        "findings": case.verdict["findings"],
        "reports_sha256": case.reports,
        "notebook": notebook.notebook,
        "notebook_html": notebook.html,
        "notebook_sha256": notebook.sha256,
        "notebook_error": notebook.error,
        "escalated_from": escalated_from,
    }
    item = open_review(
        case.security, review_id(case.model_name, case.window_id), details
    )
    return {
        "review_id": item,
        "notebook": notebook.notebook,
        "notebook_error": notebook.error,
    }


def _roll_back(case: WindowCase, settings: MonitoringSettings) -> dict[str, Any]:
    """Champion <- previous through the lifecycle; a refused rollback (no previous
    version) goes to a person instead."""
    from bankplatform.governance.registry import GovernanceError  # noqa: PLC0415

    governed = Governed(
        case.client,
        case.security,
        case.security.acting_principal(),
        case.root,
        case.model_name,
    )
    try:
        return {"lifecycle": rollback(governed)}
    except GovernanceError as refused:
        review = _open_review(
            case, settings, escalated_from=f"rollback refused: {refused}"
        )
        return {"lifecycle": f"refused: {refused}", **review}


def _retrain(case: WindowCase, settings: MonitoringSettings) -> dict[str, Any]:
    """Run training and evaluation as the person who started monitoring; the new
    version waits for approval like any other (never promoted here)."""
    started = datetime.now(UTC).isoformat(timespec="microseconds")
    log = case.folder / "retrain.log"
    command = [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--pipelines",
        ",".join(settings.retrain_pipelines),
        "--env",
        case.security.env,
    ]
    began = time.perf_counter()
    with log.open("wb") as output:
        finished = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            command,
            cwd=case.root,
            stdout=output,
            stderr=subprocess.STDOUT,
            # The workspace's conf/ names the tracking store: a process-wide
            # $MLFLOW_TRACKING_URI (mlflow.set_tracking_uri sets one) must not
            # send the new version to another registry.
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
            timeout=_RETRAIN_TIMEOUT_S,
            check=False,
        )
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    if finished.returncode != 0:
        msg = f"retraining failed (exit {finished.returncode}): {tail[0][:300]}; see {log.relative_to(case.root)}"
        raise RetrainingFailed(msg)
    return {
        "pipelines": settings.retrain_pipelines,
        "seconds": round(time.perf_counter() - began, 1),
        "log": str(log.relative_to(case.root)),
        **_registered_since(case, started),
    }


class RetrainingFailed(BankplatformError):
    """The retraining run ended with an error."""


def _registered_since(case: WindowCase, started: str) -> dict[str, Any]:
    """The version the retraining registered and its gate verdict (audit log)."""
    version, gate_status = None, ""
    prefix = f"model:{case.model_name}/"
    for record in case.security.audit_log().records(resource=prefix):
        if record.get("outcome") != "allowed" or str(record["time"]) < started:
            continue
        if record.get("action") == "model.register":
            version = int(str(record["resource"]).removeprefix(prefix))
        elif record.get("action") == "model.evaluate" and version is not None:
            gate_status = str(record["details"].get("gate_status", ""))
    return {"new_version": version, "gate_status": gate_status}


@contextmanager
def _window_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".action.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
