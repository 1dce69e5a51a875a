"""Fairness of credit decisions across protected groups (gender, age band).

Measured on the decisions the model would make at the cut-off: an applicant is
approved when the probability of default is at or below it. Protected attributes
are columns of the training set that the model never sees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

_TWO_CLASSES = 2


def group_outcomes(
    frame: pd.DataFrame, attribute: str, cut_off: float, min_group_size: int
) -> pd.DataFrame:
    """Per group of ``attribute``: size, approval rate, approval rate among those
    who repaid, default rate and AUC (NaN with one class).

    Args:
        frame: ``score``, ``defaulted`` and the attribute's column.
        attribute: Protected attribute.
        cut_off: Approve at or below this probability of default.
        min_group_size: Smaller groups are flagged ``gated = False``.
    """
    rows = []
    for group, part in frame.groupby(frame[attribute].astype(str), sort=True):
        approved = part["score"] <= cut_off
        repaid = part["defaulted"] == 0
        two_classes = part["defaulted"].nunique() == _TWO_CLASSES
        rows.append(
            {
                "group": group,
                "rows": len(part),
                "approval_rate": float(approved.mean()),
                "approval_rate_repaid": float(approved[repaid].mean())
                if repaid.any()
                else float("nan"),
                "default_rate": float(part["defaulted"].mean()),
                "auc": float(roc_auc_score(part["defaulted"], part["score"]))
                if two_classes
                else float("nan"),
                "gated": len(part) >= min_group_size,
            }
        )
    return pd.DataFrame(rows)


def fairness_summary(
    frame: pd.DataFrame, attributes: list[str], cut_off: float, min_group_size: int
) -> dict[str, Any]:
    """Disparate impact ratio, equal opportunity difference and AUC gap per attribute.

    Only groups of at least ``min_group_size`` count toward the three figures.

    Returns:
        ``{attribute: {disparate_impact_ratio, equal_opportunity_difference,
        auc_gap, groups: [...]}}``.
    """
    summary: dict[str, Any] = {}
    for attribute in attributes:
        groups = group_outcomes(frame, attribute, cut_off, min_group_size)
        gated = groups[groups["gated"]]
        summary[attribute] = {
            "disparate_impact_ratio": _ratio(gated["approval_rate"]),
            "equal_opportunity_difference": _spread(gated["approval_rate_repaid"]),
            "auc_gap": _spread(gated["auc"]),
            "groups": groups.to_dict(orient="records"),
        }
    return summary


def _ratio(rates: pd.Series) -> float:
    valid = rates.dropna()
    if len(valid) < _TWO_CLASSES or valid.max() == 0:
        return 1.0
    return float(valid.min() / valid.max())


def _spread(values: pd.Series) -> float:
    valid = values.dropna()
    return float(np.ptp(valid)) if len(valid) >= _TWO_CLASSES else 0.0
