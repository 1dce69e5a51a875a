"""Behavioural tests of the registered model, run on every out-of-time applicant.

As in Made With ML's ``tests/model``: directional expectations (monotone
features), invariance (protected attributes never move a score) and minimum
functionality (clear-cut applicants land on the right side of the cut-off). They
take any ``Scorer`` (the registered pyfunc's ``predict``), so they check the
artefact that would be served, not a model trained for the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

Scorer = Callable[[pd.DataFrame], np.ndarray]
# Float noise of a tree ensemble's sum is far below this; a real move is not.
_TOLERANCE = 1e-9


def monotone_violations(
    score: Scorer,
    applicants: pd.DataFrame,
    directions: dict[str, int],
    step: float,
) -> dict[str, dict[str, float]]:
    """Raise one feature at a time, all else equal; count scores moving the wrong way.

    Args:
        score: The model's scoring function.
        applicants: The applicants (model columns at least).
        directions: Feature -> +1 (never lowers the PD) or -1 (never raises it).
        step: The raise, as a share of the feature's standard deviation.

    Returns:
        Feature -> ``{violations, worst_move, step}`` (worst_move: the largest
        move against the direction, 0 if none).
    """
    baseline = score(applicants)
    found: dict[str, dict[str, float]] = {}
    for feature, direction in sorted(directions.items()):
        spread = float(applicants[feature].std(skipna=True) or 1.0)
        moved = applicants.copy()
        moved[feature] = moved[feature] + step * spread
        against = -direction * (score(moved) - baseline)
        found[feature] = {
            "violations": float((against > _TOLERANCE).sum()),
            "worst_move": float(max(against.max(), 0.0)),
            "step": step * spread,
        }
    return found


def invariance(
    score: Scorer, applicants: pd.DataFrame, attributes: list[str]
) -> dict[str, float]:
    """Largest score change when only a protected attribute changes.

    Each applicant's value is replaced by the next group's (cyclically), so
    every applicant changes group.

    Returns:
        Attribute -> largest absolute score change (0 for a model that never
        sees it).
    """
    baseline = score(applicants)
    changes: dict[str, float] = {}
    for attribute in attributes:
        levels = sorted(applicants[attribute].dropna().astype(str).unique())
        following = dict(zip(levels, [*levels[1:], *levels[:1]], strict=True))
        swapped = applicants.copy()
        swapped[attribute] = swapped[attribute].astype(str).map(following)
        changes[attribute] = float(np.abs(score(swapped) - baseline).max())
    return changes


def clear_cut_applicants(
    applicants: pd.DataFrame, directions: dict[str, int]
) -> pd.DataFrame:
    """A clearly safe and a clearly risky applicant, built from a typical one.

    The typical applicant has each number's median and each text's most common
    value; the safe one then takes, for every feature with a known direction,
    its 1st percentile where more means riskier and its 99th where more means
    safer; the risky one the opposite.

    Returns:
        Two rows, ``expected`` = ``approve`` and ``decline``.
    """
    typical: dict[str, Any] = {}
    for column in applicants.columns:
        values = applicants[column].dropna()
        if pd.api.types.is_numeric_dtype(values):
            typical[column] = float(values.median()) if len(values) else 0.0
        else:
            typical[column] = values.mode().iloc[0] if len(values) else ""
    safe, risky = dict(typical), dict(typical)
    for feature, direction in directions.items():
        low, high = applicants[feature].quantile([0.01, 0.99])
        safe[feature], risky[feature] = (low, high) if direction > 0 else (high, low)
    frame = pd.DataFrame([safe, risky]).astype(applicants.dtypes.to_dict())
    frame["expected"] = ["approve", "decline"]
    return frame


def minimum_functionality(
    score: Scorer, cases: pd.DataFrame, cut_off: float
) -> list[dict[str, Any]]:
    """Score each clear-cut case; a case fails on the wrong side of the cut-off.

    Returns:
        One ``{expected, score, passed}`` per case.
    """
    scores = score(cases)
    results = []
    for expected, value in zip(cases["expected"], scores, strict=True):
        passed = value <= cut_off if expected == "approve" else value > cut_off
        results.append(
            {"expected": expected, "score": float(value), "passed": bool(passed)}
        )
    return results
