"""``params:governance`` (``conf/<env>/governance.yml``): gate thresholds, which
gates block, the decision cut-off, protected attributes, review intervals.

Validated when a Kedro context is created (``WorkspaceContextHook``), so a typo stops
``kedro run`` before the first node.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bankplatform.manifest import ModelRiskTier


class GateRule(BaseModel):
    """One gate: its threshold and whether failing it blocks approval."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    blocking: bool = True


class GateRules(BaseModel):
    """Every gate of the evaluation pipeline; each must be configured.

    Attributes:
        discrimination: Minimum out-of-time AUC.
        leakage: Maximum out-of-time AUC (credit data does not give 0.95 unless
            a feature leaks the outcome).
        calibration: Maximum expected calibration error over score deciles.
        champion_regression: Maximum out-of-time AUC drop against the champion.
        disparate_impact: Minimum ratio of approval rates, lowest group over
            highest, per protected attribute (four-fifths rule: 0.8).
        equal_opportunity: Maximum gap in approval rates among applicants who
            repaid, per protected attribute.
        group_auc_gap: Maximum gap between groups' AUCs.
        feature_stability: Maximum PSI of a feature, training vs out-of-time.
        score_stability: Maximum PSI of the score, training vs out-of-time.
        monotone: Maximum applicants whose score moves the wrong way when one
            feature with a known direction moves.
        invariance: Maximum score change when only gender or age band changes.
        minimum_functionality: Maximum clear-cut applicants scored on the wrong
            side of the cut-off.
        evidence: Maximum evidence notebooks that failed to execute.
    """

    model_config = ConfigDict(extra="forbid")

    discrimination: GateRule
    leakage: GateRule
    calibration: GateRule
    champion_regression: GateRule
    disparate_impact: GateRule
    equal_opportunity: GateRule
    group_auc_gap: GateRule
    feature_stability: GateRule
    score_stability: GateRule
    monotone: GateRule
    invariance: GateRule
    minimum_functionality: GateRule
    evidence: GateRule


def refer_up_to(cut_off: float, refer_band: float) -> float:
    """The highest probability of default an underwriter decides: the top of the
    refer band (the cut-off itself when there is no band)."""
    return round(min(cut_off + refer_band, 1.0), 6)


class GovernanceSettings(BaseModel):
    """``params:governance``.

    Attributes:
        decision_cut_off: Probability of default above which an application is
            not approved automatically (fairness is measured on approvals at
            this cut-off).
        refer_band: Width of the band above the cut-off whose applications go
            to manual underwriting (``refer``); above the band the decline is
            automatic (and can be contested). 0: no band.
        protected_attributes: Columns of the training set never used as features,
            measured for fairness and invariance.
        min_group_size: Groups smaller than this are reported, not gated.
        gates: Thresholds and blocking flags.
        monotone_step: Perturbation per monotone feature, as a share of its
            standard deviation on the out-of-time window.
        evidence_notebooks: Notebooks under ``notebooks/governance`` executed
            for every candidate.
        notebook_timeout_s: Per-cell time limit of an evidence notebook.
        review_months: Months between periodic reviews, by materiality tier.
    """

    model_config = ConfigDict(extra="forbid")

    decision_cut_off: float = Field(gt=0, lt=1)
    refer_band: float = Field(default=0.0, ge=0, lt=1)

    def refer_up_to(self) -> float:
        """The top of the refer band (``refer_up_to``)."""
        return refer_up_to(self.decision_cut_off, self.refer_band)

    protected_attributes: list[str] = Field(min_length=1)
    min_group_size: int = Field(default=30, ge=1)
    gates: GateRules
    monotone_step: float = Field(default=0.5, gt=0)
    evidence_notebooks: list[Literal["model_validation", "data_quality"]] = [
        "model_validation",
        "data_quality",
    ]
    notebook_timeout_s: int = Field(default=600, ge=10)
    review_months: dict[ModelRiskTier, int] = {
        ModelRiskTier.TIER_1: 12,
        ModelRiskTier.TIER_2: 24,
        ModelRiskTier.TIER_3: 36,
    }
