"""What the governance notebooks show, computed here so the notebooks stay thin.

``model_validation.ipynb``: the gate table, ROC and calibration, fairness by
group, stability, top contributions, a challenger (a logistic scorecard on the
same features) and outcomes analysis by application vintage (calibration by
grade with a binomial test per grade, AUC and KS per quarter).
``data_quality.ipynb``: the ingestion contracts' counts per table and rule.

The notebooks open their inputs with ``open_evidence``, not a Kedro session: a
fresh kernel that bootstraps the project imports every pipeline (Ray, Feast,
MLflow), which cost ~10 s of each notebook's ~16 s here. For the same reason
scikit-learn and SciPy are imported by the functions that use them (the data
quality notebook needs neither). Loads still go through
the catalog's dataset definitions and the env's security, so every read of a
classified dataset is checked and audited as in a session.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from bankplatform.governance.evaluation import OUT_OF_TIME, SCORE, TRAIN, WINDOW
from bankplatform.governance.performance import discrimination
from bankplatform.training.boosting import LABEL

# Rating grades by probability of default (upper bounds), as a scorecard reports them.
GRADES = {"A": 0.02, "B": 0.05, "C": 0.10, "D": 0.20, "E": 1.0}
SIGNIFICANCE = 0.05
_MIN_ROWS_FOR_AUC = 2


def gate_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per gate: value, bound, threshold, blocking, passed, detail."""
    columns = ["name", "value", "bound", "threshold", "blocking", "passed", "detail"]
    return pd.DataFrame(report["gates"])[columns]


def roc_points(scores: pd.DataFrame) -> pd.DataFrame:
    """False and true positive rates of the out-of-time window's ROC curve."""
    out = scores[scores[WINDOW] == OUT_OF_TIME]
    fpr, tpr, _ = roc_curve(out[LABEL], out[SCORE])
    return pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr})


def fairness_table(report: dict[str, Any]) -> pd.DataFrame:
    """Per protected attribute and group: size, approval rates, default rate, AUC."""
    rows = [
        {"attribute": attribute, **group}
        for attribute, summary in report["measurements"]["fairness"].items()
        for group in summary["groups"]
    ]
    return pd.DataFrame(rows)


def challenger_comparison(
    scores: pd.DataFrame, features: list[str], candidate: dict[str, float]
) -> pd.DataFrame:
    """A logistic scorecard fitted on the training window, scored out of time,
    next to the candidate's out-of-time metrics.

    Args:
        scores: Both windows (features, outcome, ``window``).
        features: The candidate's features.
        candidate: The candidate's out-of-time metrics (from the gate report).

    Returns:
        Metrics (rows) by model (``candidate``, ``challenger``).
    """
    train = scores[scores[WINDOW] == TRAIN]
    out = scores[scores[WINDOW] == OUT_OF_TIME]
    text = [f for f in features if not pd.api.types.is_numeric_dtype(scores[f])]
    numbers = [f for f in features if f not in text]
    scorecard = make_pipeline(
        ColumnTransformer(
            [
                (
                    "numbers",
                    make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                    numbers,
                ),
                ("text", OneHotEncoder(handle_unknown="ignore"), text),
            ]
        ),
        LogisticRegression(max_iter=2_000),
    )
    scorecard.fit(_as_text(train, text)[features], train[LABEL])
    challenger = scorecard.predict_proba(_as_text(out, text)[features])[:, 1]
    keys = ["auc", "gini", "ks", "pr_auc", "brier"]
    measured = discrimination(out[LABEL], challenger)
    return pd.DataFrame(
        {
            "candidate": [candidate[k] for k in keys],
            "challenger": [measured[k] for k in keys],
        },
        index=keys,
    )


def grade(scores: pd.Series) -> pd.Series:
    """Rating grade of each probability of default (``GRADES``)."""
    bounds = [0.0, *GRADES.values()]
    return pd.cut(scores, bounds, labels=list(GRADES), include_lowest=True)


def calibration_by_grade(scores: pd.DataFrame) -> pd.DataFrame:
    """Out of time, per grade: rows, expected PD, observed default rate, defaults,
    the two-sided binomial test's p-value and whether the grade is consistent."""
    out = scores[scores[WINDOW] == OUT_OF_TIME].copy()
    out["grade"] = grade(out[SCORE])
    rows = []
    for name, part in out.groupby("grade", observed=True):
        expected = float(part[SCORE].mean())
        defaults = int(part[LABEL].sum())
        p_value = binomtest(defaults, len(part), expected).pvalue
        rows.append(
            {
                "grade": name,
                "rows": len(part),
                "expected_pd": expected,
                "observed_default_rate": defaults / len(part),
                "defaults": defaults,
                "p_value": float(p_value),
                "consistent": bool(p_value >= SIGNIFICANCE),
            }
        )
    return pd.DataFrame(rows)


def performance_by_quarter(scores: pd.DataFrame) -> pd.DataFrame:
    """Per application quarter (both windows, labelled): rows, default rate, AUC, KS."""
    frame = scores.copy()
    quarter = pd.to_datetime(frame["event_timestamp"], utc=True).dt.tz_localize(None)
    frame["quarter"] = quarter.dt.to_period("Q").astype(str)
    rows = []
    for (window, period), part in frame.groupby([WINDOW, "quarter"], sort=True):
        both = part[LABEL].nunique() >= _MIN_ROWS_FOR_AUC
        metrics = discrimination(part[LABEL], part[SCORE].to_numpy()) if both else {}
        rows.append(
            {
                "window": window,
                "quarter": period,
                "rows": len(part),
                "default_rate": float(part[LABEL].mean()),
                "auc": metrics.get("auc", np.nan),
                "ks": metrics.get("ks", np.nan),
            }
        )
    return pd.DataFrame(rows)


def _as_text(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    converted = frame.copy()
    for column in columns:
        converted[column] = converted[column].astype(str)
    return converted
