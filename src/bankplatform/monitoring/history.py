"""Monitoring over time, from the audit log: every window judged, what it found
and the action taken (what the ``05_monitoring`` notebook shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from bankplatform.monitoring.actions import ACTION_RECORD

if TYPE_CHECKING:
    from bankplatform.security.runtime import WorkspaceSecurity

VERDICT_RECORD = "monitoring.verdict"


def window_history(security: WorkspaceSecurity, model_name: str) -> pd.DataFrame:
    """One row per monitoring run: window, time, version, decisions, drifted
    share, the score's drift, findings, the policy's action and what was done.

    Needs ``read_reports`` (the records of ``monitoring:`` resources).
    """
    prefix = f"monitoring:{model_name}/"
    rows, done = [], {}
    for record in security.audit_log().records(resource=prefix):
        if record.get("outcome") not in ("allowed", "failed"):
            continue
        window = str(record["resource"]).removeprefix(prefix)
        details = record.get("details") or {}
        if record["action"] == ACTION_RECORD:
            status = "taken" if record["outcome"] == "allowed" else "failed"
            done[(window, details.get("action"))] = status
        elif record["action"] == VERDICT_RECORD:
            rows.append(
                {
                    "window": window,
                    "time": record["time"],
                    "model_version": details.get("model_version"),
                    "decisions": details.get("decisions"),
                    "drifted_share": details.get("drifted_share"),
                    "prediction_drift": details.get("prediction_drift"),
                    "findings": ", ".join(details.get("findings") or {}) or "none",
                    "action": details.get("action"),
                }
            )
    history = pd.DataFrame(
        rows,
        columns=[
            "window",
            "time",
            "model_version",
            "decisions",
            "drifted_share",
            "prediction_drift",
            "findings",
            "action",
        ],
    )
    history["outcome"] = [
        "nothing to do" if a == "none" else done.get((w, a), "not taken")
        for w, a in zip(history["window"], history["action"], strict=True)
    ]
    return history


def open_history(
    env: str | None = None, project_dir: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The workspace's monitoring history and its review items (a notebook's
    entry point; needs ``read_reports``).

    Returns:
        ``window_history`` and one row per review item (id, window, opened,
        findings, state).
    """
    from bankplatform.manifest import load_manifest  # noqa: PLC0415
    from bankplatform.monitoring.reviews import review_items  # noqa: PLC0415
    from bankplatform.security.runtime import (  # noqa: PLC0415
        activate,
        workspace_security,
    )

    security = workspace_security(env, project_dir)
    activate(security)
    manifest = load_manifest(security.root)
    reviews = pd.DataFrame(
        [
            {
                "review_id": item.id,
                "window": item.details.get("window"),
                "opened_at": item.opened_at,
                "findings": ", ".join(item.details.get("findings") or {}),
                "state": "open" if item.is_open else f"closed by {item.closed_by}",
                "resolution": item.resolution,
            }
            for item in review_items(security)
        ],
        columns=["review_id", "window", "opened_at", "findings", "state", "resolution"],
    )
    return window_history(security, manifest.model_name), reviews
