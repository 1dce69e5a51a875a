"""``monitoring:`` from ``conf/<env>/monitoring.yml``: the window, the drift and
quality thresholds, and the policy that maps findings to one action.

A pydantic model with ``extra="forbid"``: a typo in the YAML is an error naming
the field, not a silent default.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class MonitoringAction(StrEnum):
    """What a window's findings lead to, least severe first."""

    NONE = "none"
    HUMAN_REVIEW = "human_review"
    RETRAIN = "retrain"
    ROLLBACK = "rollback"

    @property
    def severity(self) -> int:
        """Rank: a more severe action wins when several findings are made."""
        return list(MonitoringAction).index(self)


class Finding(StrEnum):
    """What a window can show."""

    FEATURE_DRIFT = "feature_drift"
    DATASET_DRIFT = "dataset_drift"
    PREDICTION_DRIFT = "prediction_drift"
    PERFORMANCE_DROP = "performance_drop"


class MonitoringPolicy(BaseModel):
    """Finding -> action."""

    model_config = ConfigDict(extra="forbid")

    performance_drop: MonitoringAction = MonitoringAction.ROLLBACK
    dataset_drift: MonitoringAction = MonitoringAction.RETRAIN
    prediction_drift: MonitoringAction = MonitoringAction.HUMAN_REVIEW
    feature_drift: MonitoringAction = MonitoringAction.HUMAN_REVIEW

    def action_for(self, finding: Finding) -> MonitoringAction:
        """The action a finding asks for."""
        return MonitoringAction(getattr(self, finding.value))


class DriftTests(BaseModel):
    """Evidently stat tests per column kind (``None``: Evidently's default choice,
    which switches from p-values to distances at 1,000 reference rows), one
    threshold for all (``None``: each test's own), and the family-wise error
    rate shared by the p-value tests of one window's features."""

    model_config = ConfigDict(extra="forbid")

    numerical: str | None = None
    categorical: str | None = None
    threshold: float | None = Field(default=None, gt=0, le=1)
    family_p_value: float | None = Field(default=0.05, gt=0, le=1)


class MonitoringSettings(BaseModel):
    """The monitoring of one env (see ``conf/base/monitoring.yml``)."""

    model_config = ConfigDict(extra="forbid")

    window: str = "today"
    min_decisions: int = Field(default=100, ge=1)
    reference_rows: int = Field(default=50_000, ge=100)
    reference_seed: int = Field(default=20261129, ge=0)
    drift_tests: DriftTests = DriftTests()
    drift_share: float = Field(default=0.5, gt=0, le=1)
    min_labels: int = Field(default=50, ge=1)
    max_auc_drop: float = Field(default=0.05, gt=0, le=1)
    report_features: int = Field(default=10, ge=0, le=200)
    policy: MonitoringPolicy = MonitoringPolicy()
    retrain_pipelines: list[str] = Field(
        default_factory=lambda: ["training", "evaluation"], min_length=1
    )
    review_notebook: str = Field(default="drift_review", pattern=r"^[a-z0-9_]+$")
    notebook_timeout_s: int = Field(default=600, ge=10)
