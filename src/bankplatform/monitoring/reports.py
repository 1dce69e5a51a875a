"""A window's reports: Evidently's own report (prediction drift, the most drifted
features, model quality when outcomes have arrived) as offline HTML and as its
JSON snapshot, next to the window's verdict as JSON.

The HTML opens with a table of every feature's test, score, threshold and
verdict, so a reviewer sees all of them; Evidently's widgets follow for the
prediction and the ``report_features`` most drifted features. Evidently's page
embeds its scripts and fonts; it is checked to load nothing from the network.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from bankplatform.governance.evidence import EvidenceError, cdn_references
from bankplatform.monitoring.drift import P_VALUE_TESTS
from bankplatform.monitoring.windows import SCORE

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from evidently.core.report import Snapshot

    from bankplatform.monitoring.drift import ColumnDrift

LABEL = "defaulted"
# The window's verdict, next to Evidently's reports (the review notebook reads it).
DRIFT_JSON = "drift_report.json"
_CATEGORICAL_ONLY_TESTS = frozenset({"chisquare", "z"})


def severity(drift: ColumnDrift) -> float:
    """How far past its threshold a column is (1 = at the threshold)."""
    if drift.method in P_VALUE_TESTS:
        return math.log10(max(drift.score, 1e-300)) / math.log10(drift.threshold)
    return drift.score / drift.threshold if drift.threshold else 0.0


def most_drifted(features: list[ColumnDrift], count: int) -> list[ColumnDrift]:
    """The ``count`` features furthest past their thresholds, most drifted first."""
    return sorted(features, key=severity, reverse=True)[:count]


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, shown: list[ColumnDrift]
) -> Snapshot:
    """Evidently's drift widgets for the columns ``shown``, each with the test
    (and so the verdict) ours used."""
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415
    from evidently.metrics import ValueDrift  # noqa: PLC0415

    columns = [d.column for d in shown]
    # A numeric column with a few values gets a categorical test (chi-squared, z)
    # from Evidently's default choice; ValueDrift takes it for categorical columns.
    categorical = [
        d.column
        for d in shown
        if d.kind == "categorical" or d.method in _CATEGORICAL_ONLY_TESTS
    ]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical],
        categorical_columns=categorical,
    )
    return Report(
        [
            ValueDrift(column=d.column, method=d.method, threshold=d.threshold)
            for d in shown
        ]
    ).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def quality_report(
    reference: pd.DataFrame, labelled: pd.DataFrame
) -> tuple[Snapshot, float]:
    """Evidently's ROC AUC of the window's labelled decisions (next to the
    reference's), and its value on the window."""
    snapshot = _roc_auc_report(labelled, reference, curve=True)
    return snapshot, _first_value(snapshot)


def roc_auc(frame: pd.DataFrame) -> float:
    """Evidently's ROC AUC of ``score`` against ``defaulted``."""
    return _first_value(_roc_auc_report(frame, None, curve=False))


def _roc_auc_report(
    current: pd.DataFrame, reference: pd.DataFrame | None, *, curve: bool
) -> Snapshot:
    from evidently import (  # noqa: PLC0415
        BinaryClassification,
        DataDefinition,
        Dataset,
        Report,
    )
    from evidently.metrics import RocAuc  # noqa: PLC0415

    definition = DataDefinition(
        numerical_columns=[SCORE],
        classification=[BinaryClassification(target=LABEL, prediction_probas=SCORE)],
    )

    def dataset(frame: pd.DataFrame) -> Dataset:
        labels = frame[[SCORE, LABEL]].astype({SCORE: "float64", LABEL: "int64"})
        return Dataset.from_pandas(labels, data_definition=definition)

    return Report([RocAuc(roc_curve=curve)]).run(
        dataset(current), None if reference is None else dataset(reference)
    )


def _first_value(snapshot: Snapshot) -> float:
    return float(snapshot.dict()["metrics"][0]["value"])


def snapshot_values(snapshot: Snapshot) -> dict[str, float]:
    """Metric name -> value, as Evidently's JSON has them."""
    return {
        str(m["metric_name"]): float(m["value"])
        for m in snapshot.dict()["metrics"]
        if isinstance(m.get("value"), int | float)
    }


def write_html(snapshot: Snapshot, path: Path, summary: dict[str, Any]) -> None:
    """Evidently's HTML with the verdict table in front; refuses a page that
    would load anything from the network.

    Raises:
        EvidenceError: The page references a remote script or stylesheet.
    """
    snapshot.save_html(str(path))
    page = path.read_text(encoding="utf-8")
    page = page.replace("<body>", "<body>\n" + _summary_html(summary), 1)
    found = cdn_references(page)
    if found:
        path.unlink()
        msg = f"{path.name}: Evidently's page loads {found[0]}; not kept as evidence"
        raise EvidenceError(msg)
    path.write_text(page, encoding="utf-8")


def _summary_html(summary: dict[str, Any]) -> str:
    rows = "".join(
        "<tr{}><td>{}</td><td>{}</td><td>{:.4g}</td><td>{:.4g}</td><td>{}</td></tr>".format(
            ' style="background:#fde2e1"' if d["drifted"] else "",
            html.escape(d["column"]),
            html.escape(d["method"]),
            d["score"],
            d["threshold"],
            "drifted" if d["drifted"] else "stable",
        )
        for d in [summary["prediction"], *summary["features"]]
    )
    findings = ", ".join(summary["findings"]) or "none"
    return (
        '<section style="font-family:sans-serif;margin:16px">'
        f"<h1>Monitoring window {html.escape(summary['window'])}: "
        f"{html.escape(summary['model_name'])} version {summary['model_version']}</h1>"
        f"<p>{summary['decisions']:,} decisions against {summary['reference_rows']:,} "
        f"reference rows; findings: {html.escape(findings)}; "
        f"action: <b>{html.escape(summary['action'])}</b>.</p>"
        "<table border=1 cellpadding=4 style='border-collapse:collapse'>"
        "<tr><th>column</th><th>test</th><th>score</th><th>threshold</th><th>verdict</th></tr>"
        f"{rows}</table></section>"
    )
