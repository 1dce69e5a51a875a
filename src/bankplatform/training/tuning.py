"""Optional Ray Tune search over depth and learning rate; the best trial's model wins.

Each trial is one plain fit reporting once (a report costs ~2 s here); trials run
in parallel as far as the cluster's CPUs allow.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune as ray_tune
from ray.tune import Checkpoint, RunConfig, TuneConfig, Tuner
from ray.tune.search import BasicVariantGenerator

from bankplatform.training.boosting import BoostingConfig, FitResult, fit
from bankplatform.training.settings import TrainingParameters

_MODEL_FILE = "model.ubj"
SEARCH_SPACE = {
    "max_depth": ray_tune.choice([3, 4, 5, 6]),
    "eta": ray_tune.loguniform(0.02, 0.2),
}


def tune(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    config: BoostingConfig,
    parameters: TrainingParameters,
) -> tuple[FitResult, BoostingConfig, list[dict[str, Any]]]:
    """Run ``tune_trials`` trials; return the best fit, its config and every trial."""
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(_trial, train=train, valid=valid, base=config),
        {"cpu": parameters.cpus_per_worker},
    )
    tuner = Tuner(
        trainable,
        param_space=SEARCH_SPACE,
        tune_config=TuneConfig(
            num_samples=parameters.tune_trials,
            metric="valid_auc",
            mode="max",
            search_alg=BasicVariantGenerator(random_state=parameters.seed),
        ),
        run_config=RunConfig(
            storage_path=str(Path(config.checkpoint_dir) / "tune"), verbose=0
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    if best.checkpoint is None or best.config is None:
        msg = "Ray Tune finished without a best trial"
        raise RuntimeError(msg)
    with best.checkpoint.as_directory() as folder:
        model = (Path(folder) / _MODEL_FILE).read_bytes()
    trials = [
        {
            "params": dict(r.config or {}),
            "valid_auc": float(r.metrics.get("valid_auc", 0.0)),
        }
        for r in (results[i] for i in range(len(results)))
        if r.metrics
    ]
    chosen = replace(config, params={**config.params, **best.config})
    metrics = best.metrics or {}
    fitted = FitResult(
        model=model,
        best_iteration=int(metrics["best_iteration"]),
        curve=metrics["curve"],
    )
    return fitted, chosen, trials


def _trial(
    trial: dict[str, Any],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    base: BoostingConfig,
) -> None:
    name = ray_tune.get_context().get_trial_id()
    config = replace(
        base,
        params={**base.params, **trial},
        checkpoint_dir=str(Path(base.checkpoint_dir) / f"trial-{name}"),
    )
    result = fit(train, valid, config)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / _MODEL_FILE).write_bytes(result.model)
        ray_tune.report(
            {
                "valid_auc": max(result.curve["valid_auc"]),
                "best_iteration": result.best_iteration,
                "curve": result.curve,
            },
            checkpoint=Checkpoint.from_directory(folder),
        )
