"""Behavioural tests of the registered credit default model: the artefact that
would be served (loaded from the registry through MLflow's pyfunc), checked with
the evaluation's own behavioural gate functions on every out-of-time applicant,
under the parameters the test env actually resolves."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest

from bankplatform.governance import behaviour
from bankplatform.governance.evaluation import scorer
from bankplatform.governance.performance import discrimination
from bankplatform.project import env_config_loader
from bankplatform.training.settings import TrainingParameters
from bankplatform.training.train import split_out_of_time
from tests.conftest import REPO, read_encrypted

pytestmark = [pytest.mark.model]
MONOTONE = TrainingParameters.model_validate(
    env_config_loader(REPO, "test")["parameters"]["training"]
).monotone


@pytest.fixture(scope="module")
def registered(
    governed_workspace: Path,
) -> tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]]:
    root = governed_workspace
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/credit_default_pd/1")
    rows = read_encrypted(
        root / "data/05_model_input/training_set.parquet.enc", "training_set"
    )
    parameters = TrainingParameters.model_validate(
        env_config_loader(root, "test")["parameters"]["training"]
    )
    _, valid = split_out_of_time(rows, parameters.split)
    report = json.loads((root / "data/08_reporting/gate_outcome.json").read_text())
    return scorer(model), valid, report


def test_the_test_env_trains_with_the_base_monotone_map() -> None:
    assert MONOTONE["income"] == -1
    assert len(MONOTONE) == 7


@pytest.mark.parametrize("step", [0.5, 2.0])
@pytest.mark.parametrize("feature", sorted(MONOTONE))
def test_known_directions_hold_for_every_applicant(
    registered: tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]],
    feature: str,
    step: float,
) -> None:
    score, valid, _ = registered
    found = behaviour.monotone_violations(
        score, valid, {feature: MONOTONE[feature]}, step
    )
    assert found[feature]["violations"] == 0.0
    assert found[feature]["worst_move"] == 0.0


def test_income_moves_scores_so_the_direction_check_is_not_vacuous(
    registered: tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]],
) -> None:
    score, valid, _ = registered
    richer = valid.assign(income=valid["income"] * 2)
    moved = score(richer) - score(valid)
    assert (moved < 0).sum() > len(valid) // 4
    assert (moved > 0).sum() == 0


def test_the_gate_report_checked_every_monotone_feature(
    registered: tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]],
) -> None:
    _, _, report = registered
    checked = report["measurements"]["behaviour"]["monotone"]  # type: ignore[index]
    assert set(checked) == set(MONOTONE)
    assert all(v["violations"] == 0 for v in checked.values())


def test_protected_attributes_never_move_a_score(
    registered: tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]],
) -> None:
    score, valid, _ = registered
    assert behaviour.invariance(score, valid, ["gender", "age_band"]) == {
        "gender": 0.0,
        "age_band": 0.0,
    }


def test_clear_cut_applicants_land_on_the_right_side(
    registered: tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]],
) -> None:
    score, valid, _ = registered
    cases = behaviour.clear_cut_applicants(valid, dict(MONOTONE))
    results = behaviour.minimum_functionality(score, cases, 0.15)
    assert [(r["expected"], r["passed"]) for r in results] == [
        ("approve", True),
        ("decline", True),
    ]
    assert results[0]["score"] < results[1]["score"]


def test_out_of_time_auc_is_in_the_planted_range(
    registered: tuple[behaviour.Scorer, pd.DataFrame, dict[str, object]],
) -> None:
    score, valid, report = registered
    measured = discrimination(valid["defaulted"], score(valid))
    assert 0.70 <= measured["auc"] <= 0.90, measured
    recorded = report["measurements"]["performance"]["out_of_time"]  # type: ignore[index]
    assert measured["auc"] == pytest.approx(recorded["auc"], abs=1e-12)
