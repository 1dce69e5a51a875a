"""GPU against CPU training on about 10M rows, through our Ray path.

On a machine with an NVIDIA GPU: the same 10M x 40 synthetic data, rounds and
parameters, once with `use_gpu: true` (Ray Train, xgboost `device="cuda"`) and
once on CPU (`hist`, all cores in one Ray task); prints both times and the
out-of-time AUCs. Target: GPU >= 5x faster. Without a GPU it says so and stops.

Run alone: `python benchmarks/run.py gpu` (or `--quick` for 1M rows).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bankplatform.ray_cluster import ray_connection
from bankplatform.training.settings import TrainingParameters
from bankplatform.training.train import train_credit_model
from training_on_ray import ANY_AUC, FEATURES, synthetic_frame

ROUNDS = 200


def _parameters(use_gpu: bool, cpus: int) -> TrainingParameters:
    return TrainingParameters.model_validate(
        {
            "split": {"train_until": "2025-06-30", "validate_from": "2025-07-01"},
            "rounds": ROUNDS,
            "early_stopping_rounds": ROUNDS,
            "checkpoint_every": 100,
            "cpus_per_worker": cpus,
            "use_gpu": use_gpu,
            "booster": {"max_depth": 8, "eta": 0.1, "max_bin": 256},
        }
    )


def main(quick: bool = False) -> None:
    """Train on GPU and on CPU; print times, AUCs and the speed-up."""
    cpus = os.cpu_count() or 1
    rows = 1_000_000 if quick else 10_000_000
    with ray_connection(cpus) as resources:
        if resources.get("GPU", 0) < 1:
            print(
                "  no GPU in this Ray cluster: skipped (the CPU tests cover the code path)"
            )
            return
        frame = synthetic_frame(rows)
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, gpu in (("gpu", True), ("cpu", False)):
                started = time.perf_counter()
                trained = train_credit_model(
                    frame, FEATURES, _parameters(gpu, cpus), Path(tmp) / name, ANY_AUC
                )
                results[name] = (time.perf_counter() - started, trained)
    (gpu_s, gpu_model), (cpu_s, cpu_model) = results["gpu"], results["cpu"]
    print(f"  {rows:,} rows x {len(FEATURES)} features, {ROUNDS} rounds, depth 8")
    print(
        f"  GPU ({gpu_model.api}, {gpu_model.device}): {gpu_s:7.1f} s, out-of-time AUC {gpu_model.metrics['auc_out_of_time']:.4f}"
    )
    print(
        f"  CPU ({cpu_model.api}, {cpus} threads):  {cpu_s:7.1f} s, out-of-time AUC {cpu_model.metrics['auc_out_of_time']:.4f}"
    )
    print(f"  speed-up GPU / CPU: {cpu_s / gpu_s:.1f}x (target >= 5x)")
