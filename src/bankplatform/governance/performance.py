"""Discrimination and calibration of a credit model's scores against outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

DECILES = 10


def discrimination(labels: pd.Series, scores: np.ndarray) -> dict[str, float]:
    """AUC, Gini, KS, PR-AUC and Brier score.

    Args:
        labels: 1 = defaulted within 12 months.
        scores: Probabilities of default.

    Returns:
        ``auc``, ``gini`` (2 AUC - 1), ``ks`` (largest gap between the score
        distributions of defaulters and non-defaulters), ``pr_auc`` (average
        precision), ``brier``, ``default_rate``, ``rows``.
    """
    outcome = np.asarray(labels, dtype=int)
    auc = float(roc_auc_score(outcome, scores))
    ks = ks_2samp(scores[outcome == 1], scores[outcome == 0]).statistic
    return {
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": float(ks),
        "pr_auc": float(average_precision_score(outcome, scores)),
        "brier": float(brier_score_loss(outcome, scores)),
        "default_rate": float(outcome.mean()),
        "rows": float(len(outcome)),
    }


def calibration_table(labels: pd.Series, scores: np.ndarray) -> pd.DataFrame:
    """Expected vs observed default rate by score decile (deciles of the scores).

    Returns:
        One row per decile: ``decile`` (1 = lowest scores), ``rows``,
        ``expected`` (mean score), ``observed`` (default rate).
    """
    frame = pd.DataFrame({"label": np.asarray(labels, dtype=float), "score": scores})
    ranks = frame["score"].rank(method="first")
    frame["decile"] = pd.qcut(ranks, DECILES, labels=False) + 1
    table = frame.groupby("decile").agg(
        rows=("label", "size"), expected=("score", "mean"), observed=("label", "mean")
    )
    return table.reset_index()


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Row-weighted mean of |expected - observed| over the deciles."""
    gaps = (table["expected"] - table["observed"]).abs()
    return float((gaps * table["rows"]).sum() / table["rows"].sum())
