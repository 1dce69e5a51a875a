"""Evidence notebooks' cost, and the evaluation pipeline's share of `kedro run`.

* A fresh workspace (5k customers; `--quick`: 1k) runs `kedro run --env test`
  (ingestion, features, training, evaluation); the evaluation's share is the sum
  of its nodes' `node_seconds.*` over the run's `run_seconds`, both recorded by
  the lineage hook in MLflow.
* Then, on that workspace, three times each (medians): the governance code the
  two evidence notebooks run (loading their inputs, tables, challenger, outcomes
  analysis, the same plots rendered to PNG), called in-process in a warm process,
  against executing each notebook with papermill and converting it to offline
  HTML. Target: at most 3 s over the in-process time.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display here
import matplotlib.pyplot as plt
import pandas as pd
from mlflow.tracking import MlflowClient

from bankplatform.governance import notebooks, validation
from bankplatform.governance.evidence import execute_notebook

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPEATS = 3
EVALUATION_NODES = (
    "score_validation_windows_node",
    "measure_candidate_node",
    "decide_gates_node",
    "record_gate_outcome_node",
)


def _workspace(folder: Path, customers: int) -> Path:
    for name in ("pyproject.toml", ".kedro.yml", ".telemetry", "requirements.lock"):
        shutil.copy(REPO / name, folder / name)
    shutil.copytree(
        REPO / "conf", folder / "conf", ignore=shutil.ignore_patterns("local")
    )
    (folder / "conf" / "local").mkdir()
    shutil.copytree(REPO / "notebooks", folder / "notebooks")
    (folder / "src").mkdir()
    env = {**os.environ, "PYTHONOPTIMIZE": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    for args in (
        ["bankplatform", "keys", "init"],
        [
            "bankplatform",
            "data",
            "generate",
            "--env",
            "test",
            "--customers",
            str(customers),
        ],
        ["kedro", "run", "--env", "test"],
    ):
        subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
    return folder


def _evaluation_share(root: Path) -> tuple[float, float]:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("credit_default_pd")
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`kedro.pipelines` LIKE '%'"
    )
    metrics = run.data.metrics
    evaluation = sum(metrics[f"node_seconds.{node}"] for node in EVALUATION_NODES)
    return evaluation, metrics["run_seconds"]


def _in_process(root: Path) -> float:
    evidence = notebooks.open_evidence("credit_default_pd", 1, "test", str(root))
    started = time.perf_counter()
    report = evidence.report
    scores = evidence.load("validation_scores")
    validation.gate_table(report)
    roc = validation.roc_points(scores)
    calibration = pd.DataFrame(report["measurements"]["performance"]["calibration"])
    validation.fairness_table(report)
    features = list(report["measurements"]["stability"]["features"])
    validation.challenger_comparison(
        scores, features, report["measurements"]["performance"]["out_of_time"]
    )
    validation.calibration_by_grade(scores)
    quarters = validation.performance_by_quarter(scores)
    quality = notebooks.quarantine_table(evidence.load("ingestion_report"))
    for draw in (
        lambda ax: ax.plot(roc["false_positive_rate"], roc["true_positive_rate"]),
        lambda ax: ax.plot(calibration["expected"], calibration["observed"]),
        lambda ax: quarters.plot(x="quarter", y=["auc", "ks"], ax=ax),
        lambda ax: quality.set_index("table")[["quarantined"]].plot.barh(ax=ax),
    ):
        figure, axis = plt.subplots()
        draw(axis)
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
    return time.perf_counter() - started


def _notebook(root: Path, name: str, folder: Path) -> float:
    started = time.perf_counter()
    record = execute_notebook(
        root,
        name,
        folder,
        {
            "model_name": "credit_default_pd",
            "version": 1,
            "run_id": "",
            "env": "test",
            "project_dir": str(root),
        },
        600,
    )
    if record.error:
        raise RuntimeError(record.error)
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Build a workspace, then time evidence notebooks against in-process code."""
    customers = 1_000 if quick else 5_000
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        _workspace(root, customers)
        print(
            f"kedro run --env test on {customers:,} customers: {time.perf_counter() - started:.0f} s (incl. generation)"
        )
        evaluation, total = _evaluation_share(root)
        print(
            f"evaluation pipeline: {evaluation:.1f} s of a {total:.1f} s kedro run = {evaluation / total:.0%}"
        )
        os.chdir(root)
        inline = [_in_process(root) for _ in range(REPEATS)]
        inline_s = statistics.median(inline)
        print(
            f"governance code in-process, both notebooks' work: median {inline_s:.2f} s"
        )
        executed_s = 0.0
        for name in ("model_validation", "data_quality"):
            runs = [_notebook(root, name, root / f"bench-{i}") for i in range(REPEATS)]
            executed_s += statistics.median(runs)
            print(
                f"papermill + offline HTML, {name}: median {statistics.median(runs):.2f} s"
            )
        print(
            f"evidence overhead, both notebooks: {executed_s - inline_s:.2f} s over in-process "
            f"({executed_s / inline_s:.0f}x; target <= 3 s over per notebook)"
        )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
