"""Behavioural tests of the credit default model trained on the pipeline's training
set: monotone directions, determinism, a plausible out-of-time AUC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bankplatform.feature_repo import credit_default_v1
from bankplatform.features.store import feature_names
from bankplatform.project import env_config_loader
from bankplatform.training.boosting import (
    BoostingConfig,
    auc,
    booster_params,
    fit,
    predict,
)
from bankplatform.training.settings import TrainingParameters
from bankplatform.training.train import split_out_of_time
from tests.conftest import REPO, read_encrypted

pytestmark = [pytest.mark.model, pytest.mark.xdist_group("ingested")]
FEATURES = feature_names(credit_default_v1)


@pytest.fixture(scope="module")
def fitted(
    featured_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[bytes, BoostingConfig, pd.DataFrame, pd.DataFrame]:
    rows = read_encrypted(
        featured_workspace / "data/05_model_input/training_set.parquet.enc",
        "training_set",
    )
    parameters = TrainingParameters.model_validate(
        env_config_loader(REPO, "local")["parameters"]["training"]
    )
    train, valid = split_out_of_time(rows, parameters.split)
    config = BoostingConfig(
        features=FEATURES,
        categories={
            name: sorted(train[name].astype(str).unique())
            for name in FEATURES
            if not pd.api.types.is_numeric_dtype(train[name])
        },
        params=booster_params(
            parameters.booster,
            parameters.monotone,
            FEATURES,
            seed=11,
            threads=1,
            device="cpu",
        ),
        rounds=120,
        early_stopping_rounds=30,
        checkpoint_every=1_000,
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
    )
    return fit(train, valid, config).model, config, train, valid


@pytest.mark.parametrize(
    ("feature", "change", "direction"),
    [
        ("income", 10_000.0, -1),  # more income never raises the PD
        ("card_utilisation", 0.3, 1),  # more utilisation never lowers it
        ("late_fee_count_365d", 2.0, 1),
        ("returned_dd_count_90d", 1.0, 1),
    ],
)
def test_known_directions_hold_for_every_applicant(
    fitted: tuple[bytes, BoostingConfig, pd.DataFrame, pd.DataFrame],
    feature: str,
    change: float,
    direction: int,
) -> None:
    model, config, _, valid = fitted
    known = valid.assign(**{feature: valid[feature].fillna(0)})
    base = predict(model, known, config)
    after = predict(model, known.assign(**{feature: known[feature] + change}), config)
    assert np.all(direction * (after - base) >= -1e-7)
    assert np.any(after != base)  # the feature is used, so the check is not vacuous


def test_protected_attributes_do_not_move_a_score(
    fitted: tuple[bytes, BoostingConfig, pd.DataFrame, pd.DataFrame],
) -> None:
    model, config, _, valid = fitted
    flipped = valid.assign(
        gender=valid["gender"].map({"F": "M", "M": "F"}), age_band="65+"
    )
    assert np.array_equal(
        predict(model, valid, config), predict(model, flipped, config)
    )


def test_same_data_and_seed_give_the_same_predictions(
    fitted: tuple[bytes, BoostingConfig, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    model, config, train, valid = fitted
    again = fit(
        train,
        valid,
        BoostingConfig(**{**config.__dict__, "checkpoint_dir": str(tmp_path)}),
    )
    assert np.array_equal(
        predict(model, valid, config), predict(again.model, valid, config)
    )


def test_out_of_time_auc_is_in_the_planted_range(
    fitted: tuple[bytes, BoostingConfig, pd.DataFrame, pd.DataFrame],
) -> None:
    model, config, _, valid = fitted
    value = auc(valid["defaulted"], predict(model, valid, config))
    assert 0.65 <= value <= 0.93, value
