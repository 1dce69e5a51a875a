"""A window's measurements and verdict: drift per feature and of the score,
quality where outcomes arrived, the findings and the one action they call for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bankplatform.monitoring import reports
from bankplatform.monitoring.drift import (
    StatTestChoice,
    column_kinds,
    detect_column_drift,
)
from bankplatform.monitoring.inputs import model_inputs, typed_like
from bankplatform.monitoring.policy import (
    Measurements,
    Quality,
    choose_action,
    find,
    summary_of,
)
from bankplatform.monitoring.windows import SCORE

_BOTH_OUTCOMES = 2  # AUC needs defaults and repayments

if TYPE_CHECKING:
    import pandas as pd
    from evidently.core.report import Snapshot

    from bankplatform.monitoring.settings import (
        Finding,
        MonitoringAction,
        MonitoringSettings,
    )


@dataclass(frozen=True)
class WindowVerdict:
    """What a window showed and the action it calls for.

    Attributes:
        measured: The measurements.
        findings: Finding -> one-line reason.
        action: The policy's action.
        drift_snapshot: Evidently's drift report (None below ``min_decisions``).
        quality_snapshot: Evidently's quality report (None without outcomes).
    """

    measured: Measurements
    findings: dict[Finding, str]
    action: MonitoringAction
    drift_snapshot: Snapshot | None
    quality_snapshot: Snapshot | None

    def summary(self) -> dict[str, Any]:
        """JSON-ready: measurements, findings and action."""
        return {
            **summary_of(self.measured),
            "findings": {f.value: reason for f, reason in self.findings.items()},
            "action": self.action.value,
        }


def judge_window(
    reference: pd.DataFrame, current: pd.DataFrame, settings: MonitoringSettings
) -> WindowVerdict:
    """Measure a window against the reference and decide its action.

    Args:
        reference: The champion's validated window (inputs, ``score``, ``defaulted``).
        current: The window's decisions (inputs, ``score``, ``defaulted`` where known).
        settings: Thresholds and policy.
    """
    count = len(current)
    if count < settings.min_decisions:
        note = f"{count} scored decision(s) in the window, fewer than the {settings.min_decisions} a verdict needs"
        measured = Measurements(count, [], None, None, [note])
        return WindowVerdict(measured, {}, choose_action({}, settings), None, None)
    columns = model_inputs(reference, current)
    current = typed_like(current, reference, columns)
    tests = StatTestChoice(**settings.drift_tests.model_dump())
    features = detect_column_drift(
        reference, current, column_kinds(reference, columns), tests
    )
    (prediction,) = detect_column_drift(reference, current, {SCORE: "numerical"}, tests)
    quality, quality_snapshot, notes = _quality(reference, current, settings)
    measured = Measurements(count, features, prediction, quality, notes)
    findings = find(measured, settings)
    shown = [prediction, *reports.most_drifted(features, settings.report_features)]
    return WindowVerdict(
        measured,
        findings,
        choose_action(findings, settings),
        reports.drift_report(reference, current, shown),
        quality_snapshot,
    )


def _quality(
    reference: pd.DataFrame, current: pd.DataFrame, settings: MonitoringSettings
) -> tuple[Quality | None, Snapshot | None, list[str]]:
    labelled = current[current[reports.LABEL].notna()]
    if len(labelled) < settings.min_labels:
        return (
            None,
            None,
            [
                f"{len(labelled)} decision(s) with a known outcome, fewer than the {settings.min_labels} quality needs"
            ],
        )
    if labelled[reports.LABEL].nunique() < _BOTH_OUTCOMES:
        return (
            None,
            None,
            ["the known outcomes are all of one kind: AUC is not defined"],
        )
    snapshot, window_auc = reports.quality_report(reference, labelled)
    quality = Quality(len(labelled), window_auc, reports.roc_auc(reference))
    return quality, snapshot, []
