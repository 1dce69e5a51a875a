"""Global explanation of the registered model from xgboost's own contributions."""

from __future__ import annotations

import pandas as pd


def global_contributions(
    contributions: pd.DataFrame, top: int = 15
) -> list[dict[str, float | str]]:
    """Mean absolute and mean signed contribution (log-odds) per feature.

    Args:
        contributions: Per-applicant contributions (the pyfunc's
            ``output="contributions"``), one column per feature plus ``bias``.
        top: How many features to keep, largest mean absolute first.

    Returns:
        ``[{feature, mean_abs, mean}]``.
    """
    features = contributions.drop(columns=["bias"], errors="ignore")
    table = pd.DataFrame(
        {"mean_abs": features.abs().mean(), "mean": features.mean()}
    ).sort_values("mean_abs", ascending=False)
    return [
        {
            "feature": str(name),
            "mean_abs": float(row["mean_abs"]),
            "mean": float(row["mean"]),
        }
        for name, row in table.head(top).iterrows()
    ]
