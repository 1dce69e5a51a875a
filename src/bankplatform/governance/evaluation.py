"""The evaluation's measurements of a registered model on the out-of-time window.

Everything here takes a ``Scorer`` (the registered pyfunc's ``predict``) and
frames, so the evaluation pipeline, the validation notebook and the tests run the
same code on the artefact that would be served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bankplatform.governance import behaviour, fairness, performance, stability
from bankplatform.governance.explain import global_contributions
from bankplatform.training.boosting import LABEL

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

    from bankplatform.governance.settings import GovernanceSettings

SCORE = "score"
WINDOW = "window"
TRAIN, OUT_OF_TIME = "train", "out_of_time"


def scorer(model: PyFuncModel) -> behaviour.Scorer:
    """The pyfunc's probability of default as a plain function of a frame."""
    features = model_features(model)

    def score(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(model_input(frame, features)), dtype="float64")

    return score


def model_input(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The signature's columns as it types them: numbers as double, text as str.

    MLflow refuses to convert int64 to double itself (not lossless in general);
    counts and terms are small whole numbers, so the conversion is exact here.
    """
    columns = frame[features].copy()
    for column in features:
        if pd.api.types.is_numeric_dtype(columns[column]):
            columns[column] = columns[column].astype("float64")
        else:
            text = columns[column].astype(object)
            columns[column] = text.mask(text.isna(), None)
    return columns


def model_features(model: PyFuncModel) -> list[str]:
    """The input columns of the registered model's signature, in order."""
    signature = model.metadata.get_input_schema()  # type: ignore[no-untyped-call]
    if signature is None:  # every version we register has one
        msg = "the registered model has no input signature"
        raise ValueError(msg)
    return [str(name) for name in signature.input_names()]


def score_windows(
    score: behaviour.Scorer, train: pd.DataFrame, valid: pd.DataFrame
) -> pd.DataFrame:
    """Both windows with their scores, outcomes and protected attributes.

    Returns:
        ``application_id``, ``event_timestamp``, ``window``, ``defaulted``,
        ``score`` and every other non-feature column the windows carry.
    """
    parts = []
    for name, frame in ((TRAIN, train), (OUT_OF_TIME, valid)):
        part = frame.copy()
        part[WINDOW] = name
        part[SCORE] = score(frame)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def out_of_time_applicants(scores: pd.DataFrame) -> pd.DataFrame:
    """The out-of-time window's applicants as the training set had them (without
    the ``window`` and ``score`` columns ``score_windows`` added)."""
    out = scores[scores[WINDOW] == OUT_OF_TIME]
    return out.drop(columns=[WINDOW, SCORE]).reset_index(drop=True)


def measure_performance(scores: pd.DataFrame) -> dict[str, Any]:
    """Discrimination on both windows; calibration on the out-of-time one."""
    out = scores[scores[WINDOW] == OUT_OF_TIME]
    table = performance.calibration_table(out[LABEL], out[SCORE].to_numpy())
    return {
        str(window): performance.discrimination(part[LABEL], part[SCORE].to_numpy())
        for window, part in scores.groupby(WINDOW)
    } | {
        "calibration": table.to_dict(orient="records"),
        "calibration_error": performance.expected_calibration_error(table),
    }


def compare_with_champion(
    candidate_auc: float,
    champion: behaviour.Scorer | None,
    champion_version: int | None,
    valid: pd.DataFrame,
) -> dict[str, Any]:
    """The champion's metrics on the same out-of-time rows, and the AUC drop.

    No champion yet is a stated case: ``version`` is ``None``.
    """
    if champion is None:
        return {"version": None, "metrics": {}, "auc_drop": 0.0}
    metrics = performance.discrimination(valid[LABEL], champion(valid))
    return {
        "version": champion_version,
        "metrics": metrics,
        "auc_drop": metrics["auc"] - candidate_auc,
    }


def measure_fairness(
    scores: pd.DataFrame, settings: GovernanceSettings
) -> dict[str, Any]:
    """Fairness of the out-of-time decisions at the cut-off, per protected attribute."""
    out = scores[scores[WINDOW] == OUT_OF_TIME]
    return fairness.fairness_summary(
        out,
        settings.protected_attributes,
        settings.decision_cut_off,
        settings.min_group_size,
    )


def measure_stability(scores: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """PSI of every feature and of the score, training vs out-of-time window."""
    train = scores[scores[WINDOW] == TRAIN]
    out = scores[scores[WINDOW] == OUT_OF_TIME]
    values = stability.population_stability(train, out, [*features, SCORE])
    score_psi = values.pop(SCORE)
    return {"features": values, "score": score_psi}


def test_behaviour(
    score: behaviour.Scorer,
    valid: pd.DataFrame,
    monotone: dict[str, int],
    settings: GovernanceSettings,
) -> dict[str, Any]:
    """Monotone directions, invariance and minimum functionality on every
    out-of-time applicant."""
    cases = behaviour.clear_cut_applicants(valid, monotone)
    return {
        "monotone": behaviour.monotone_violations(
            score, valid, monotone, settings.monotone_step
        ),
        "invariance": behaviour.invariance(score, valid, settings.protected_attributes),
        "minimum_functionality": behaviour.minimum_functionality(
            score, cases, settings.decision_cut_off
        ),
    }


def explain(model: PyFuncModel, valid: pd.DataFrame) -> list[dict[str, Any]]:
    """Top global contributions on the out-of-time window (xgboost's own)."""
    contributions = model.predict(
        model_input(valid, model_features(model)), params={"output": "contributions"}
    )
    return global_contributions(pd.DataFrame(contributions))
