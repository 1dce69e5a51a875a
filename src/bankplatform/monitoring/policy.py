"""From a window's measurements to findings, and from findings to one action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bankplatform.monitoring.drift import drifted_share
from bankplatform.monitoring.settings import Finding, MonitoringAction

if TYPE_CHECKING:
    from bankplatform.monitoring.drift import ColumnDrift
    from bankplatform.monitoring.settings import MonitoringSettings


@dataclass(frozen=True)
class Quality:
    """Model quality on the window's decisions whose outcomes have arrived.

    Attributes:
        labelled: Decisions with a known outcome.
        window_auc: Evidently's ROC AUC on them (None when not measurable).
        reference_auc: The same on the champion's validated window.
    """

    labelled: int
    window_auc: float | None
    reference_auc: float

    @property
    def auc_drop(self) -> float | None:
        """How far the window's AUC fell below the reference's."""
        return None if self.window_auc is None else self.reference_auc - self.window_auc


@dataclass(frozen=True)
class Measurements:
    """Everything a window's action is decided on."""

    decisions: int
    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    quality: Quality | None
    reasons: list[str] = field(default_factory=list)


def find(measured: Measurements, settings: MonitoringSettings) -> dict[Finding, str]:
    """The window's findings, each with a one-line reason."""
    if measured.decisions < settings.min_decisions:
        return {}
    found: dict[Finding, str] = {}
    drifted = [d.column for d in measured.features if d.drifted]
    if drifted:
        found[Finding.FEATURE_DRIFT] = (
            f"{len(drifted)} feature(s) drifted: " + ", ".join(drifted[:10])
        )
    share = drifted_share(measured.features)
    if share >= settings.drift_share:
        found[Finding.DATASET_DRIFT] = (
            f"{share:.0%} of features drifted (dataset drift at {settings.drift_share:.0%})"
        )
    if measured.prediction is not None and measured.prediction.drifted:
        p = measured.prediction
        found[Finding.PREDICTION_DRIFT] = (
            f"the score drifted ({p.method} {p.score:.4g}, threshold {p.threshold:.4g})"
        )
    quality = measured.quality
    if quality is not None and quality.auc_drop is not None:
        if quality.auc_drop > settings.max_auc_drop:
            found[Finding.PERFORMANCE_DROP] = (
                f"AUC {quality.window_auc:.3f} on {quality.labelled} outcomes, "
                f"{quality.auc_drop:.3f} below the validated {quality.reference_auc:.3f}"
            )
    return found


def choose_action(
    findings: dict[Finding, str], settings: MonitoringSettings
) -> MonitoringAction:
    """The most severe action the policy maps the findings to (``none`` if none)."""
    actions = [settings.policy.action_for(f) for f in findings]
    return max(actions, key=lambda a: a.severity, default=MonitoringAction.NONE)


def summary_of(measured: Measurements) -> dict[str, Any]:
    """The measurements as JSON-ready values."""
    quality = measured.quality
    return {
        "decisions": measured.decisions,
        "features": [d.as_record() for d in measured.features],
        "prediction": measured.prediction.as_record() if measured.prediction else None,
        "drifted_share": drifted_share(measured.features),
        "quality": None
        if quality is None
        else {
            "labelled": quality.labelled,
            "window_auc": quality.window_auc,
            "reference_auc": quality.reference_auc,
            "auc_drop": quality.auc_drop,
        },
        "notes": measured.reasons,
    }
