"""What the drift-review notebook shows a reviewer: a window's verdict as a
table, and each column's verdict re-derived from its score and threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bankplatform.monitoring.drift import P_VALUE_TESTS, ColumnDrift
from bankplatform.monitoring.reports import severity


def load_report(path: str, project_dir: str | None = None) -> dict[str, Any]:
    """A window's ``drift_report.json`` (path relative to the workspace)."""
    file = Path(project_dir or ".") / path
    return dict(json.loads(file.read_text()))


def drift_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per column (the score first): test, score, threshold, verdict and
    how far past its threshold, most drifted first."""
    rows = [report["prediction"], *report["features"]] if report["prediction"] else []
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["severity"] = [severity(ColumnDrift(**row)) for row in rows]
    return table.sort_values("severity", ascending=False).reset_index(drop=True)


def rederived_verdict(report: dict[str, Any]) -> dict[str, Any]:
    """The drifted features and the score's verdict, re-derived from each
    recorded score and threshold (a p-value below it, a distance at or above)."""

    def drifted(row: dict[str, Any]) -> bool:
        if row["method"] in P_VALUE_TESTS:
            return bool(row["score"] < row["threshold"])
        return bool(row["score"] >= row["threshold"])

    prediction = report["prediction"]
    return {
        "drifted_features": sorted(
            r["column"] for r in report["features"] if drifted(r)
        ),
        "prediction_drifted": bool(prediction and drifted(prediction)),
    }


def recorded_verdict(report: dict[str, Any]) -> dict[str, Any]:
    """The same two facts as the report records them."""
    prediction = report["prediction"]
    return {
        "drifted_features": sorted(
            r["column"] for r in report["features"] if r["drifted"]
        ),
        "prediction_drifted": bool(prediction and prediction["drifted"]),
    }
