"""Training on Ray: the connection, and the Ray API whose fixed cost fits the job.

Measured on a 2-core machine (Ray 2.60): every ``ray.train.report()`` costs about
2 s, ``RayTrainReportCallback`` reports every boosting round by default (a 50-round
``XGBoostTrainer.fit()`` took ~125 s), and starting Ray Train's worker group costs
~20 s even with one report; the same fit in one plain Ray task took 3.4 s. So:

* one worker, no GPU: a plain Ray task running xgboost with its own threads
  (``num_cpus`` = ``cpus_per_worker``), retried by Ray if its worker dies and
  resuming from the task's last checkpoint;
* several workers or a GPU: Ray Train's ``XGBoostTrainer`` (xgboost's collective
  across workers), reporting once at the end, ``FailureConfig`` retries resuming
  from the last Ray Train checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import ray

from bankplatform.training.boosting import BoostingConfig, FitResult, fit

TASK_RETRIES = 3
WORKER_PID_FILE = "worker.pid"
MODEL_FILE = "model.ubj"


def wants_gpu(use_gpu: str | bool, resources: dict[str, float]) -> bool:
    """``auto`` -> whether the cluster has a GPU; otherwise as asked."""
    if use_gpu == "auto":
        return resources.get("GPU", 0) > 0
    return bool(use_gpu)


def train_in_task(
    train: pd.DataFrame, valid: pd.DataFrame, config: BoostingConfig, cpus: int
) -> FitResult:
    """One plain Ray task; a killed worker is retried and resumes from its checkpoint."""
    task = _fit_task.options(num_cpus=cpus, max_retries=TASK_RETRIES)
    result: FitResult = ray.get(task.remote(ray.put(train), ray.put(valid), config))
    return result


@ray.remote
def _fit_task(
    train: pd.DataFrame, valid: pd.DataFrame, config: BoostingConfig
) -> FitResult:
    folder = Path(config.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # The pid lets an operator (and the fault-tolerance test) find the worker.
    (folder / WORKER_PID_FILE).write_text(str(os.getpid()))
    return fit(train, valid, config)


def train_with_ray_train(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    config: BoostingConfig,
    *,
    workers: int,
    cpus_per_worker: int,
    use_gpu: bool,
) -> FitResult:
    """Ray Train's ``XGBoostTrainer`` over ``workers``, one report at the end."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig  # noqa: PLC0415
    from ray.train.xgboost import XGBoostTrainer  # noqa: PLC0415

    # Frames go through the object store, each worker taking its rows by rank:
    # Ray Data's executor added tens of seconds per fit on this machine.
    trainer = XGBoostTrainer(
        _train_loop,
        train_loop_config={
            "config": config,
            "train": ray.put(train),
            "valid": ray.put(valid),
        },
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker},
        ),
        run_config=RunConfig(
            storage_path=config.checkpoint_dir,
            failure_config=FailureConfig(max_failures=TASK_RETRIES),
        ),
    )
    result = trainer.fit()
    metrics = result.metrics or {}
    if result.checkpoint is None:
        msg = "Ray Train finished without a model checkpoint"
        raise RuntimeError(msg)
    with result.checkpoint.as_directory() as folder:
        model = (Path(folder) / MODEL_FILE).read_bytes()
    return FitResult(
        model=model,
        best_iteration=int(metrics["best_iteration"]),
        curve=metrics["curve"],
        resumed_from_round=int(metrics.get("resumed_from_round", 0)),
    )


def _train_loop(loop_config: dict[str, Any]) -> None:
    """Each Ray Train worker: its rows, xgboost's collective, one report at the end."""
    import ray.train  # noqa: PLC0415

    config: BoostingConfig = loop_config["config"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    shard = ray.get(loop_config["train"]).iloc[rank::world]
    valid = ray.get(loop_config["valid"])
    # xgboost checkpoints on rank 0 only; every rank resumes from that same folder
    # (shared storage on a cluster), so after a restart all ranks start at one round.
    result = fit(shard, valid, config)
    metrics = {
        "best_iteration": result.best_iteration,
        "curve": result.curve,
        "resumed_from_round": result.resumed_from_round,
    }
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / MODEL_FILE).write_bytes(result.model)
        ray.train.report(
            metrics, checkpoint=ray.train.Checkpoint.from_directory(folder)
        )
