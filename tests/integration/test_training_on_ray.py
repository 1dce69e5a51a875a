"""Training on a real local Ray: a killed worker resumes from its checkpoint, the
Ray Train path for several workers, and Ray Tune trials."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import ray

from bankplatform.ray_cluster import ray_connection
from bankplatform.training.boosting import (
    auc,
    load_booster,
    predict,
)
from bankplatform.training.on_ray import (
    WORKER_PID_FILE,
    train_in_task,
    train_with_ray_train,
)
from bankplatform.training.settings import QualityGate, TrainingParameters
from bankplatform.training.train import TrainingError, train_credit_model
from bankplatform.training.tuning import tune
from tests.code.test_training import small_boosting_config, synthetic_training_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FEATURES = ["income", "card_utilisation", "purpose"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, float]]:
    ray.shutdown()  # the Ray of this process's in-memory runs (worker_ray), if any
    with ray_connection(2) as resources:
        yield resources
    assert not ray.is_initialized()  # started here, so shut down here


def test_a_killed_worker_is_retried_from_its_last_checkpoint(
    cluster: dict[str, float], tmp_path: Path
) -> None:
    frame = synthetic_training_set(80_000)
    train, valid = frame.iloc[:60_000], frame.iloc[60_000:]
    config = small_boosting_config(tmp_path, rounds=600, depth=7, checkpoint_every=20)
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            checkpoints = list(tmp_path.glob("round_*"))
            pid_file = tmp_path / WORKER_PID_FILE
            if checkpoints and pid_file.is_file():
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    result = train_in_task(train, valid, config, cpus=1)
    killer.join()
    assert killed, "the worker finished before a checkpoint appeared"
    assert int((tmp_path / WORKER_PID_FILE).read_text()) != killed[0]  # a new worker
    assert result.resumed_from_round >= 21
    assert load_booster(result.model).num_boosted_rounds() == 600
    assert len(result.curve["valid_auc"]) == 600 - result.resumed_from_round


def test_several_workers_train_through_ray_train_with_one_report(
    cluster: dict[str, float], tmp_path: Path
) -> None:
    frame = synthetic_training_set(6_000)
    train, valid = frame.iloc[:4_000], frame.iloc[4_000:]
    config = small_boosting_config(tmp_path, rounds=40)
    result = train_with_ray_train(
        train, valid, config, workers=2, cpus_per_worker=1, use_gpu=False
    )
    # One report at the end carries the whole run (no per-round reports).
    assert load_booster(result.model).num_boosted_rounds() == 40
    assert len(result.curve["valid_auc"]) == 40
    assert auc(valid["defaulted"], predict(result.model, valid, config)) > 0.7


def test_ray_tune_trials_pick_the_best(
    cluster: dict[str, float], tmp_path: Path
) -> None:
    frame = synthetic_training_set(4_000)
    train, valid = frame.iloc[:3_000], frame.iloc[3_000:]
    parameters = TrainingParameters.model_validate(
        {
            "split": {"train_until": "2025-06-30", "validate_from": "2025-07-01"},
            "tune_trials": 2,
            "cpus_per_worker": 1,
        }
    )
    fitted, chosen, trials = tune(
        train, valid, small_boosting_config(tmp_path, rounds=30), parameters
    )
    assert len(trials) == 2
    best = max(trials, key=lambda t: t["valid_auc"])
    assert chosen.params["max_depth"] == best["params"]["max_depth"]
    assert auc(
        valid["defaulted"], predict(fitted.model, valid, replace(chosen))
    ) == pytest.approx(best["valid_auc"], abs=1e-6)


def test_a_leaking_feature_fails_the_quality_gate(
    cluster: dict[str, float], tmp_path: Path
) -> None:
    frame = synthetic_training_set(3_000)
    frame["recoveries_booked"] = frame["defaulted"] * 100.0  # known only after default
    parameters = TrainingParameters.model_validate(
        {
            "split": {"train_until": "2025-06-30", "validate_from": "2025-07-01"},
            "rounds": 20,
            "cpus_per_worker": 1,
            "use_gpu": False,
        }
    )
    with pytest.raises(TrainingError) as caught:
        train_credit_model(
            frame,
            [*FEATURES, "recoveries_booked"],
            parameters,
            tmp_path,
            QualityGate(min_auc=0.6, leakage_ceiling=0.93),
        )
    assert str(caught.value) == (
        "out-of-time AUC 1.000 is above the leakage ceiling 0.93: a feature probably leaks the outcome"
    )
    assert (
        ray.is_initialized()
    )  # the notebook's (here: the fixture's) Ray is reused, not stopped
