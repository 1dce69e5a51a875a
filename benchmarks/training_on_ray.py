"""Training through our Ray path against plain `xgboost.train` on the same data.

1M rows x 40 features (synthetic, with a learnable signal), the same out-of-time
split, parameters, rounds (no early stop) and evaluation sets. Measured three ways,
medians of 3:

* plain `xgboost.train` in this process (the floor);
* `train_credit_model` with Ray already running (a notebook's or a cluster's):
  the task's data transfer, worker start, checkpoints and the scoring of both
  windows included. Target: <= 1.3x;
* the same including starting and stopping a local Ray (what one `kedro run`
  pays on a workstation), reported, not targeted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import xgboost as xgb

from bankplatform.ray_cluster import ray_connection
from bankplatform.training.boosting import booster_params
from bankplatform.training.settings import QualityGate, TrainingParameters
from bankplatform.training.train import split_out_of_time, train_credit_model

REPEATS = 3
FEATURES = [f"f{i:02d}" for i in range(40)]
# The benchmark measures speed: any AUC passes.
ANY_AUC = QualityGate(min_auc=0.5, leakage_ceiling=1.0)


def synthetic_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(8)
    values = rng.normal(size=(rows, len(FEATURES)))
    logit = -2.4 + values[:, :8] @ np.linspace(0.6, 0.1, 8)
    frame = pd.DataFrame(values, columns=FEATURES)
    frame["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 730, rows), unit="D"
    )
    frame["defaulted"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int8")
    return frame


def _parameters(rounds: int) -> TrainingParameters:
    return TrainingParameters.model_validate(
        {
            "split": {"train_until": "2025-06-30", "validate_from": "2025-07-01"},
            "rounds": rounds,
            "early_stopping_rounds": rounds,
            "checkpoint_every": 25,
            "cpus_per_worker": 2,
            "use_gpu": False,
            "booster": {"max_depth": 6, "eta": 0.1},
        }
    )


def _plain(frame: pd.DataFrame, parameters: TrainingParameters) -> float:
    started = time.perf_counter()
    train, valid = split_out_of_time(frame, parameters.split)
    params = booster_params(
        parameters.booster, {}, FEATURES, seed=parameters.seed, threads=2, device="cpu"
    )
    dtrain = xgb.DMatrix(train[FEATURES], label=train["defaulted"])
    dvalid = xgb.DMatrix(valid[FEATURES], label=valid["defaulted"])
    xgb.train(
        params,
        dtrain,
        num_boost_round=parameters.rounds,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        verbose_eval=False,
    )
    return time.perf_counter() - started


def _ours(frame: pd.DataFrame, parameters: TrainingParameters, folder: Path) -> float:
    started = time.perf_counter()
    trained = train_credit_model(frame, FEATURES, parameters, folder, ANY_AUC)
    assert trained.api == "ray_task"  # noqa: S101 - the benchmark measures this path
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Time the floor and our path alternately, with Ray running, then cold."""
    rows, rounds = (100_000, 30) if quick else (1_000_000, 100)
    frame = synthetic_frame(rows)
    parameters = _parameters(rounds)
    plain, warm, cold = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        with ray_connection(2):
            for attempt in range(REPEATS):
                plain.append(_plain(frame, parameters))
                warm.append(_ours(frame, parameters, Path(tmp) / f"warm{attempt}"))
        assert not ray.is_initialized()  # noqa: S101
        for attempt in range(REPEATS):
            cold.append(_ours(frame, parameters, Path(tmp) / f"cold{attempt}"))
    floor = statistics.median(plain)
    print(
        f"  {rows:,} rows x {len(FEATURES)} features, {rounds} rounds, median of {REPEATS}"
    )
    print(f"  plain xgboost.train:                 {floor:6.2f} s")
    print(f"  our Ray path, Ray already running:   {statistics.median(warm):6.2f} s")
    print(f"  our Ray path, starting a local Ray:  {statistics.median(cold):6.2f} s")
    print(
        f"  ratio (Ray running) / plain: {statistics.median(warm) / floor:.2f}x (target <= 1.3x)"
    )
    print(f"  ratio (starting Ray) / plain: {statistics.median(cold) / floor:.2f}x")
