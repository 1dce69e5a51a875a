"""Training units: out-of-time split, booster parameters, quality gate, pinned
requirements, checkpoints and resume (plain xgboost, no Ray)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bankplatform.training.boosting import (
    BoostingConfig,
    booster_params,
    fit,
    latest_checkpoint,
    predict,
)
from bankplatform.training.on_ray import wants_gpu
from bankplatform.training.registry import pinned_requirements
from bankplatform.training.served import labelled_decisions, training_window
from bankplatform.training.settings import QualityGate, TrainingParameters
from bankplatform.training.train import TrainingError, check_quality, split_out_of_time
from tests.conftest import REPO

pytestmark = pytest.mark.unit
SPLIT = {"train_until": "2025-06-30", "validate_from": "2025-07-01"}


def synthetic_training_set(rows: int, seed: int = 0) -> pd.DataFrame:
    """Applications over 2024-2025 whose default depends on income and utilisation."""
    rng = np.random.default_rng(seed)
    income = rng.normal(40_000, 12_000, rows)
    utilisation = rng.uniform(0, 1.2, rows)
    logit = -2.5 - (income - 40_000) / 15_000 + 2.0 * utilisation
    return pd.DataFrame(
        {
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 730, rows), unit="D"),
            "income": income,
            "card_utilisation": utilisation,
            "purpose": rng.choice(["car", "holiday"], rows),
            "defaulted": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int8"),
        }
    )


def small_boosting_config(
    folder: Path, rounds: int = 60, depth: int = 3, checkpoint_every: int = 10
) -> BoostingConfig:
    """Boosting on ``synthetic_training_set``'s features, no early stop."""
    features = ["income", "card_utilisation", "purpose"]
    return BoostingConfig(
        features=features,
        categories={"purpose": ["car", "holiday"]},
        params=booster_params(
            {"max_depth": depth, "eta": 0.1},
            {"income": -1, "card_utilisation": 1},
            features,
            seed=7,
            threads=1,
            device="cpu",
        ),
        rounds=rounds,
        early_stopping_rounds=rounds,
        checkpoint_every=checkpoint_every,
        checkpoint_dir=str(folder),
    )


def test_the_split_is_out_of_time_and_refuses_an_empty_side() -> None:
    frame = synthetic_training_set(2_000)
    parameters = TrainingParameters.model_validate({"split": SPLIT})
    train, valid = split_out_of_time(frame, parameters.split)
    assert train["event_timestamp"].max() < pd.Timestamp("2025-07-01", tz="UTC")
    assert valid["event_timestamp"].min() >= pd.Timestamp("2025-07-01", tz="UTC")
    assert len(train) + len(valid) == len(frame)
    late = TrainingParameters.model_validate(
        {"split": {"train_until": "2027-01-01", "validate_from": "2027-02-01"}}
    )
    with pytest.raises(
        TrainingError, match="the validation window of the out-of-time split has 0 rows"
    ):
        split_out_of_time(frame, late.split)
    with pytest.raises(
        ValidationError, match="validate_from must be after train_until"
    ):
        TrainingParameters.model_validate(
            {"split": {"train_until": "2025-07-01", "validate_from": "2025-06-30"}}
        )


def test_the_rolling_split_moves_with_the_newest_labelled_application() -> None:
    """The newest 6 calendar months validate: an extract labelled to December
    2025 splits where the fixed dates did; served decisions labelled in December
    2026 move both windows a year on."""
    frame = synthetic_training_set(2_000)
    rolling = TrainingParameters.model_validate(
        {"split": {"out_of_time_months": 6}}
    ).split
    newest = pd.to_datetime(frame["event_timestamp"], utc=True).max().date()
    assert (newest.year, newest.month) == (2025, 12)
    assert rolling.dates(newest) == (date(2025, 6, 30), date(2025, 7, 1))
    fixed = TrainingParameters.model_validate({"split": SPLIT}).split
    for left, right in zip(
        split_out_of_time(frame, rolling), split_out_of_time(frame, fixed), strict=True
    ):
        pd.testing.assert_frame_equal(left, right)
    assert rolling.dates(date(2026, 12, 6)) == (date(2026, 6, 30), date(2026, 7, 1))
    assert rolling.dates(date(2026, 3, 31)) == (date(2025, 9, 30), date(2025, 10, 1))
    later = frame.copy()
    later.loc[later.index[:300], "event_timestamp"] = pd.Timestamp(
        "2026-12-01", tz="UTC"
    )
    train, valid = split_out_of_time(later, rolling)
    assert valid["event_timestamp"].min() >= pd.Timestamp("2026-07-01", tz="UTC")
    assert len(valid) == 300 and len(train) == len(frame) - 300
    with pytest.raises(ValidationError, match="not both"):
        TrainingParameters.model_validate(
            {"split": {"out_of_time_months": 6, "train_until": "2025-06-30"}}
        )


def test_booster_parameters_carry_the_monotone_directions_in_feature_order() -> None:
    params = booster_params(
        {"max_depth": 4},
        {"income": -1, "card_utilisation": 1},
        ["card_utilisation", "purpose", "income"],
        seed=3,
        threads=2,
        device="cuda",
    )
    assert params["monotone_constraints"] == "(1, 0, -1)"
    assert (
        params["device"],
        params["tree_method"],
        params["nthread"],
        params["max_depth"],
    ) == ("cuda", "hist", 2, 4)


@pytest.mark.parametrize(
    ("auc", "message"),
    [
        (
            0.97,
            "out-of-time AUC 0.970 is above the leakage ceiling 0.93: a feature probably leaks the outcome",
        ),
        (0.52, "out-of-time AUC 0.520 is below the minimum 0.7"),
    ],
)
def test_the_quality_gate_fails_implausible_aucs(auc: float, message: str) -> None:
    gate = QualityGate(min_auc=0.7, leakage_ceiling=0.93)
    with pytest.raises(TrainingError) as caught:
        check_quality(auc, gate)
    assert str(caught.value) == message
    check_quality(0.80, gate)  # inside the planted range: passes


def test_model_requirements_are_pinned_from_the_lock() -> None:
    pins = pinned_requirements(REPO / "requirements.lock")
    lock = (REPO / "requirements.lock").read_text().splitlines()
    assert [p.split("==")[0] for p in pins] == [
        "mlflow",
        "xgboost",
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
    ]
    assert all(pin in lock for pin in pins)


def test_a_fit_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    frame = synthetic_training_set(3_000)
    train, valid = frame.iloc[:2_000], frame.iloc[2_000:]
    partial = small_boosting_config(tmp_path / "run", rounds=25)
    fit(train, valid, partial)  # xgboost checkpoints after rounds 11 and 21
    rounds_done, booster = latest_checkpoint(tmp_path / "run")
    assert rounds_done == 21 and booster is not None
    resumed = fit(train, valid, small_boosting_config(tmp_path / "run", rounds=60))
    assert resumed.resumed_from_round == 21
    full = fit(train, valid, small_boosting_config(tmp_path / "fresh", rounds=60))
    assert full.resumed_from_round == 0
    assert len(resumed.curve["valid_auc"]) == 39  # only the remaining rounds ran
    scores = predict(resumed.model, valid, small_boosting_config(tmp_path / "x"))
    assert scores.shape == (1_000,) and 0 < scores.min() < scores.max() < 1


@pytest.mark.parametrize(
    ("use_gpu", "resources", "expected"),
    [
        ("auto", {"CPU": 16.0, "GPU": 1.0}, True),
        ("auto", {"CPU": 2.0}, False),
        (True, {"CPU": 2.0}, True),  # asked for: Ray Train will wait for a GPU
        (False, {"CPU": 16.0, "GPU": 8.0}, False),
    ],
)
def test_use_gpu_auto_follows_the_cluster(
    use_gpu: str | bool, resources: dict[str, float], expected: bool
) -> None:
    assert wants_gpu(use_gpu, resources) is expected


def test_served_decisions_with_outcomes_join_the_training_window() -> None:
    """A decision whose outcome arrived is a training row with the logged inputs,
    the decision's time and the customer's protected attributes; a decision
    without one is not; a request delivered twice counts once (the latest)."""
    base = synthetic_training_set(200).assign(gender="f")
    base.insert(0, "customer_token", "tok_old")
    decisions = pd.DataFrame(
        {
            "request_id": ["req_a", "req_b", "req_c"],
            "time": [
                "2026-12-01T10:00:00+00:00",
                "2026-12-02T10:00:00+00:00",
                "2026-12-03T10:00:00.5+00:00",
            ],
            "customer_token": ["tok_1", "tok_2", "tok_3"],
            "model_version": [1, 1, 1],
            "score": [0.1, 0.2, 0.3],
            "income": [30_000, 50_000.5, 20_000],
            "card_utilisation": [0.5, 0.1, 0.9],
            "purpose": ["car", "holiday", "car"],
        }
    )
    outcomes = pd.DataFrame(
        {"request_id": ["req_a", "req_c", "req_c"], "defaulted": [0, 0, 1]}
    )
    attributes = pd.DataFrame(
        {"customer_token": ["tok_1", "tok_3"], "gender": ["m", "f"]}
    )
    labelled = labelled_decisions(decisions, outcomes, attributes)
    assert labelled["application_id"].tolist() == ["req_a", "req_c"]
    assert labelled["defaulted"].tolist() == [0, 1]
    assert labelled["gender"].tolist() == ["m", "f"]
    assert labelled["event_timestamp"].tolist() == [
        pd.Timestamp("2026-12-01T10:00:00", tz="UTC"),
        pd.Timestamp("2026-12-03T10:00:00.5", tz="UTC"),
    ]
    assert "score" not in labelled.columns and "model_version" not in labelled
    window = training_window(base, labelled)
    assert len(window) == len(base) + 2
    assert window.columns.tolist() == base.columns.tolist()
    assert window.dtypes.to_dict() == base.dtypes.to_dict()
    assert window["income"].tolist()[-2:] == [30_000.0, 20_000.0]
    # No outcome yet: the window is the training set itself.
    assert (
        training_window(base, labelled_decisions(decisions, outcomes[:0], attributes))
        is base
    )
