"""Population stability of features and scores between two windows (PSI).

PSI comes from Evidently's own stat test (its binning: Sturges bins over both
samples for numbers with more than 20 values, one bin per value otherwise), so
the evaluation gates and the drift monitor measure stability the same way.
Evidently is imported on first use: its import costs ~14 s on 2 cores.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd


def population_stability(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]
) -> dict[str, float]:
    """PSI of each column, reference (training window) vs current (out of time).

    Missing values are left out of both samples; a column empty on either side
    gets PSI 0 (nothing to compare) rather than failing the evaluation.

    Returns:
        Column -> PSI (0.1: some shift; 0.25: a significant shift).
    """
    with warnings.catch_warnings():
        # Evidently 0.7's import warns of its own numpy.core use, a docstring
        # escape and its UI server's litestar API: nothing for our users.
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently.legacy.calculations.stattests import (  # noqa: PLC0415
            psi_stat_test,
        )
        from evidently.legacy.core import ColumnType  # noqa: PLC0415

    values: dict[str, float] = {}
    for column in columns:
        before, after = reference[column].dropna(), current[column].dropna()
        if before.empty or after.empty:
            values[column] = 0.0
            continue
        kind = (
            ColumnType.Numerical
            if pd.api.types.is_numeric_dtype(before)
            else ColumnType.Categorical
        )
        result: Any = psi_stat_test(before, after, kind, None)
        values[column] = float(result.drift_score)
    return values
