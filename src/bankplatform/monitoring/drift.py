"""Per-feature and prediction drift with Evidently's own statistical tests.

Each column gets the Evidently test named for its kind (the shipped setting:
Wasserstein distance for numbers, Jensen-Shannon for categories, each with
Evidently's threshold 0.1, whatever the sample size), or, with no test named,
the one Evidently's ``DataDriftPreset`` would choose for it (``get_stattest``
with no override: those two above 1,000 reference rows; KS, chi-squared or z
below). Either way the test runs on the values the preset tests (infinities
and missing values dropped), so the verdicts are the preset's under the same
choice (tested equal on the benchmark data and on the product's features).
What is left out is the preset's second pass over every column and a plot per
column, three quarters of its time. One shortcut in the default choice: a
numeric column with more than five distinct values among its first 1,000
reference values has more than five overall, which is all that choice looks
at, so its full ``nunique`` is skipped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import repeat
from typing import Any, Literal

import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests import registry as stattests
from evidently.legacy.core import ColumnType

from bankplatform.errors import BankplatformError

Kind = Literal["numerical", "categorical"]
# Tests whose score is a p-value (drift below the threshold); the others are
# distances (drift at or above it).
P_VALUE_TESTS = frozenset(
    {
        "ks",
        "chisquare",
        "z",
        "fisher_exact",
        "anderson",
        "t_test",
        "mannw",
        "cramer_von_mises",
        "epps_singleton",
        "g_test",
    }
)
# Evidently's choice compares distinct values with 5 and 2, rows with 1,000.
_FEW_VALUES = 5
_SMALL_SAMPLE = 1_000


class DriftError(BankplatformError):
    """Drift cannot be measured (a column missing or empty on one side)."""


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift verdict.

    Attributes:
        column: The feature (or ``score`` for the prediction).
        kind: ``numerical`` or ``categorical``.
        method: Evidently's stat test name (``wasserstein``, ``jensenshannon``...).
        score: The test's drift score (a distance, or a p-value).
        threshold: The test's threshold.
        drifted: Evidently's verdict.
    """

    column: str
    kind: Kind
    method: str
    score: float
    threshold: float
    drifted: bool

    def as_record(self) -> dict[str, Any]:
        """As JSON-ready values."""
        return asdict(self)


def column_kinds(frame: pd.DataFrame, columns: list[str]) -> dict[str, Kind]:
    """Numerical for numbers (booleans too), categorical for everything else."""
    return {
        c: "numerical" if pd.api.types.is_numeric_dtype(frame[c]) else "categorical"
        for c in columns
    }


@dataclass(frozen=True)
class StatTestChoice:
    """Which Evidently test per kind (None: Evidently's default choice), one
    threshold (None: the test's own), and a family-wise error rate that the
    p-value tests of one call share (Bonferroni: each gets rate / columns;
    None: each test's own threshold)."""

    numerical: str | None = None
    categorical: str | None = None
    threshold: float | None = None
    family_p_value: float | None = None

    def threshold_for(self, test: str, columns: int) -> float | None:
        """The threshold of one test among ``columns`` tested together."""
        if self.threshold is not None:
            return self.threshold
        if self.family_p_value is not None and test in P_VALUE_TESTS:
            return self.family_p_value / max(columns, 1)
        return None


def detect_column_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, Kind],
    choice: StatTestChoice | None = None,
    workers: int = 2,
) -> list[ColumnDrift]:
    """An Evidently drift test on every column, in the given order.

    Args:
        reference: The reference rows.
        current: The current rows.
        kinds: Column -> kind, the columns to test.
        choice: Tests and threshold; Evidently's default choice when omitted.
        workers: Threads (the tests spend their time in NumPy sorts, which
            release the GIL).

    Raises:
        DriftError: A column is missing, or has no usable value on one side.
    """
    for column in kinds:
        for name, frame in (("reference", reference), ("current", current)):
            if column not in frame.columns:
                msg = f"column {column!r} is missing from the {name} data"
                raise DriftError(msg)
    chosen = choice or StatTestChoice()
    columns = list(kinds)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(
            pool.map(
                _test_column,
                [reference[c] for c in columns],
                [current[c] for c in columns],
                columns,
                [kinds[c] for c in columns],
                repeat(chosen),
                repeat(len(columns)),
            )
        )


def _test_column(
    reference: pd.Series,
    current: pd.Series,
    column: str,
    kind: Kind,
    choice: StatTestChoice,
    columns: int,
) -> ColumnDrift:
    ref, cur = (
        _usable(reference, column, "reference"),
        _usable(current, column, "current"),
    )
    column_type = (
        ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    )
    named = choice.numerical if kind == "numerical" else choice.categorical
    test = (
        stattests.get_registered_stattest(named, column_type)
        if named
        else _default_test(ref, cur, column_type)
    )
    result = test(ref, cur, column_type, choice.threshold_for(test.name, columns))
    return ColumnDrift(
        column=column,
        kind=kind,
        method=str(test.name),
        score=float(result.drift_score),
        threshold=float(result.actual_threshold),
        drifted=bool(result.drifted),
    )


def _usable(values: pd.Series, column: str, side: str) -> pd.Series:
    """The values Evidently tests: infinities and missing values dropped."""
    if pd.api.types.is_numeric_dtype(values):
        values = values.replace([-np.inf, np.inf], np.nan)
    kept = values.dropna()
    if kept.empty:
        msg = f"column {column!r} has no usable value in the {side} data"
        raise DriftError(msg)
    return kept


def _default_test(
    reference: pd.Series, current: pd.Series, column_type: ColumnType
) -> stattests.StatTest:
    """Evidently's default test for the column (its own ``get_stattest``)."""
    if (
        column_type == ColumnType.Numerical
        and reference.iloc[:_SMALL_SAMPLE].nunique(dropna=False) > _FEW_VALUES
    ):
        # More than five distinct values: Evidently's rule needs no full count.
        name = "wasserstein" if reference.shape[0] > _SMALL_SAMPLE else "ks"
        return stattests.get_registered_stattest(name, column_type)
    return stattests.get_stattest(reference, current, column_type, None)


def drifted_share(results: list[ColumnDrift]) -> float:
    """Share of columns that drifted (0 when there are none)."""
    return sum(r.drifted for r in results) / len(results) if results else 0.0
