"""Train the credit default model on Ray: split, choose the API, fit, score, gate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bankplatform.errors import BankplatformError
from bankplatform.ray_cluster import alive_nodes, ray_connection
from bankplatform.training.boosting import (
    LABEL,
    BoostingConfig,
    FitResult,
    auc,
    booster_params,
    predict,
)
from bankplatform.training.on_ray import (
    train_in_task,
    train_with_ray_train,
    wants_gpu,
)
from bankplatform.training.settings import (
    OutOfTimeSplit,
    QualityGate,
    TrainingParameters,
)


class TrainingError(BankplatformError):
    """Training cannot proceed or its result fails the quality gate."""


@dataclass
class TrainedModel:
    """A candidate model and the evidence about it.

    Attributes:
        model: The booster's raw UBJSON bytes.
        config: Features, categories and parameters it was fitted with.
        api: ``ray_task`` or ``ray_train``.
        device: ``cpu`` or ``cuda``.
        fit: The fit's curve, best iteration and resume point.
        metrics: Out-of-time AUC, train AUC, row counts, seconds.
        trials: Ray Tune trials (parameters and validation AUC), if tuned.
    """

    model: bytes
    config: BoostingConfig
    api: str
    device: str
    fit: FitResult
    metrics: dict[str, float]
    trials: list[dict[str, Any]] = field(default_factory=list)


def split_out_of_time(
    training_set: pd.DataFrame, split: OutOfTimeSplit
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Earlier applications train, later ones validate; the gap between is unused.
    A rolling split takes its dates from the newest labelled application
    (``OutOfTimeSplit.dates``), so training and evaluation of one training set
    always agree.

    Raises:
        TrainingError: Either side is empty or has a single class.
    """
    applied = pd.to_datetime(training_set["event_timestamp"], utc=True).dt.date
    if applied.empty:
        msg = "the training set is empty"
        raise TrainingError(msg)
    train_until, validate_from = split.dates(applied.max())
    train = training_set[applied <= train_until]
    valid = training_set[applied >= validate_from]
    for name, part in (("train", train), ("validation", valid)):
        if part[LABEL].nunique() < 2:  # noqa: PLR2004 - two classes
            msg = f"the {name} window of the out-of-time split has {len(part)} rows and not both outcomes"
            raise TrainingError(msg)
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def window_summary(training_set: pd.DataFrame, split: OutOfTimeSplit) -> dict[str, str]:
    """The dates a split of ``training_set`` uses, for the training report and
    the model card: newest labelled application, train until, validate from."""
    applied = pd.to_datetime(training_set["event_timestamp"], utc=True).dt.date
    newest = applied.max()
    train_until, validate_from = split.dates(newest)
    return {
        "newest_labelled": newest.isoformat(),
        "train_until": train_until.isoformat(),
        "validate_from": validate_from.isoformat(),
    }


def train_credit_model(
    training_set: pd.DataFrame,
    features: list[str],
    parameters: TrainingParameters,
    checkpoint_dir: Path,
    quality: QualityGate,
) -> TrainedModel:
    """Split out of time, train on Ray (task or Ray Train, CPU or GPU), score, gate.

    Raises:
        TrainingError: An empty split window, or an out-of-time AUC outside the
            quality gate (above the leakage ceiling, or below the minimum).
    """
    train, valid = split_out_of_time(training_set, parameters.split)
    categories = {
        name: sorted(train[name].dropna().astype(str).unique())
        for name in features
        if not pd.api.types.is_numeric_dtype(train[name])
    }
    numeric_monotone = {
        k: v for k, v in parameters.monotone.items() if k not in categories
    }
    started = time.perf_counter()
    with ray_connection(
        parameters.workers * parameters.cpus_per_worker,
        parameters.require_cluster,
        "training.require_cluster",
    ) as resources:
        nodes = alive_nodes()
        gpu = wants_gpu(parameters.use_gpu, resources)
        device = "cuda" if gpu else "cpu"
        config = BoostingConfig(
            features=features,
            categories=categories,
            params=booster_params(
                parameters.booster,
                numeric_monotone,
                features,
                seed=parameters.seed,
                threads=parameters.cpus_per_worker,
                device=device,
            ),
            rounds=parameters.rounds,
            early_stopping_rounds=parameters.early_stopping_rounds,
            checkpoint_every=parameters.checkpoint_every,
            checkpoint_dir=str(checkpoint_dir),
        )
        trials: list[dict[str, Any]] = []
        if parameters.tune_trials:
            from bankplatform.training.tuning import tune  # noqa: PLC0415

            fitted, config, trials = tune(train, valid, config, parameters)
            api = "ray_tune"
        elif parameters.workers > 1 or gpu:
            fitted = train_with_ray_train(
                train,
                valid,
                config,
                workers=parameters.workers,
                cpus_per_worker=parameters.cpus_per_worker,
                use_gpu=gpu,
            )
            api = "ray_train"
        else:
            fitted = train_in_task(train, valid, config, parameters.cpus_per_worker)
            api = "ray_task"
    seconds = time.perf_counter() - started
    metrics = {
        "auc_out_of_time": auc(valid[LABEL], predict(fitted.model, valid, config)),
        "auc_train": auc(train[LABEL], predict(fitted.model, train, config)),
        "rows_train": float(len(train)),
        "rows_out_of_time": float(len(valid)),
        "default_rate_train": float(train[LABEL].mean()),
        "best_iteration": float(fitted.best_iteration),
        "training_seconds": seconds,
        "ray_nodes": float(nodes),
    }
    check_quality(metrics["auc_out_of_time"], quality)
    return TrainedModel(fitted.model, config, api, device, fitted, metrics, trials)


def check_quality(out_of_time_auc: float, gate: QualityGate) -> None:
    """The quality gate on the out-of-time AUC.

    Raises:
        TrainingError: Above the leakage ceiling (too good for credit data: a
            feature probably leaks the outcome) or below the minimum.
    """
    if out_of_time_auc > gate.leakage_ceiling:
        msg = (
            f"out-of-time AUC {out_of_time_auc:.3f} is above the leakage ceiling "
            f"{gate.leakage_ceiling}: a feature probably leaks the outcome"
        )
        raise TrainingError(msg)
    if out_of_time_auc < gate.min_auc:
        msg = (
            f"out-of-time AUC {out_of_time_auc:.3f} is below the minimum {gate.min_auc}"
        )
        raise TrainingError(msg)
