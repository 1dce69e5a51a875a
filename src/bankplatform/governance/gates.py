"""The gate report: every gate's measured value against its configured threshold.

A gate with a ``max`` threshold passes at or below it, a ``min`` gate at or
above it. The candidate passes when every blocking gate passes; advisory gates
are reported and shown to the validator but do not block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bankplatform.governance.settings import GateRule, GovernanceSettings

Bound = Literal["min", "max"]
# Which side of its threshold each gate must stay on.
BOUNDS: dict[str, Bound] = {
    "discrimination": "min",
    "leakage": "max",
    "calibration": "max",
    "champion_regression": "max",
    "disparate_impact": "min",
    "equal_opportunity": "max",
    "group_auc_gap": "max",
    "feature_stability": "max",
    "score_stability": "max",
    "monotone": "max",
    "invariance": "max",
    "minimum_functionality": "max",
    "evidence": "max",
}


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome.

    Attributes:
        name: Gate name (a field of ``GateRules``).
        value: What was measured.
        bound: ``min`` or ``max``.
        threshold: The configured threshold.
        blocking: Whether failing it blocks approval.
        passed: Whether the value is on the right side of the threshold.
        detail: What the value is, in words (which attribute, which feature).
    """

    name: str
    value: float
    bound: Bound
    threshold: float
    blocking: bool
    passed: bool
    detail: str


def check_gate(name: str, value: float, rule: GateRule, detail: str) -> GateResult:
    """Compare ``value`` with the gate's rule."""
    bound = BOUNDS[name]
    passed = value >= rule.threshold if bound == "min" else value <= rule.threshold
    return GateResult(name, value, bound, rule.threshold, rule.blocking, passed, detail)


def verdict(gates: list[dict[str, Any]]) -> str:
    """``passed`` when every blocking gate passed, else ``failed``."""
    return "passed" if all(g["passed"] for g in gates if g["blocking"]) else "failed"


def measurement_gates(
    measurements: dict[str, Any], settings: GovernanceSettings
) -> list[GateResult]:
    """The gates decided by the evaluation's measurements (all but ``evidence``).

    Args:
        measurements: ``performance``, ``champion``, ``fairness``, ``stability``
            and ``behaviour`` as the evaluation nodes return them.
        settings: ``params:governance``.
    """
    rules = settings.gates
    perf = measurements["performance"]["out_of_time"]
    champion = measurements["champion"]
    fairness = measurements["fairness"]
    stability = measurements["stability"]
    behaviour = measurements["behaviour"]
    worst_di = min(fairness, key=lambda a: fairness[a]["disparate_impact_ratio"])
    worst_eo = max(fairness, key=lambda a: fairness[a]["equal_opportunity_difference"])
    worst_gap = max(fairness, key=lambda a: fairness[a]["auc_gap"])
    worst_feature = max(stability["features"], key=stability["features"].get)
    violations = sum(v["violations"] for v in behaviour["monotone"].values())
    worst_invariance = max(behaviour["invariance"], key=behaviour["invariance"].get)
    wrong_side = sum(not case["passed"] for case in behaviour["minimum_functionality"])
    drop = champion["auc_drop"] if champion["version"] is not None else 0.0
    return [
        check_gate(
            "discrimination", perf["auc"], rules.discrimination, "out-of-time AUC"
        ),
        check_gate("leakage", perf["auc"], rules.leakage, "out-of-time AUC"),
        check_gate(
            "calibration",
            measurements["performance"]["calibration_error"],
            rules.calibration,
            "expected calibration error over score deciles",
        ),
        check_gate(
            "champion_regression",
            drop,
            rules.champion_regression,
            f"AUC drop against champion version {champion['version']}"
            if champion["version"] is not None
            else "no champion yet: nothing to regress against",
        ),
        check_gate(
            "disparate_impact",
            fairness[worst_di]["disparate_impact_ratio"],
            rules.disparate_impact,
            f"lowest approval-rate ratio: {worst_di}",
        ),
        check_gate(
            "equal_opportunity",
            fairness[worst_eo]["equal_opportunity_difference"],
            rules.equal_opportunity,
            f"largest approval-rate gap among those who repaid: {worst_eo}",
        ),
        check_gate(
            "group_auc_gap",
            fairness[worst_gap]["auc_gap"],
            rules.group_auc_gap,
            f"largest AUC gap between groups: {worst_gap}",
        ),
        check_gate(
            "feature_stability",
            stability["features"][worst_feature],
            rules.feature_stability,
            f"largest feature PSI: {worst_feature}",
        ),
        check_gate(
            "score_stability", stability["score"], rules.score_stability, "score PSI"
        ),
        check_gate(
            "monotone",
            float(violations),
            rules.monotone,
            f"applicants moving the wrong way over {len(behaviour['monotone'])} features",
        ),
        check_gate(
            "invariance",
            behaviour["invariance"][worst_invariance],
            rules.invariance,
            f"largest score change when only {worst_invariance} changes",
        ),
        check_gate(
            "minimum_functionality",
            float(wrong_side),
            rules.minimum_functionality,
            "clear-cut applicants on the wrong side of the cut-off",
        ),
    ]


def as_records(results: list[GateResult]) -> list[dict[str, Any]]:
    """The results as JSON-ready dicts."""
    return [asdict(result) for result in results]
