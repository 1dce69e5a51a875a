"""The training pipeline run from notebook 03 on the 1k workspace: the registered
version, its tags, the logged model, lineage."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.governance.evaluation import model_input
from tests.conftest import copy_workspace, notebook_summary, read_encrypted

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def trained(
    featured_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("trained") / "workspace"
    copy_workspace(featured_workspace, root)
    summary = notebook_summary("03_train_on_ray.ipynb", root, root.parent)
    return root, summary


def test_the_notebook_trains_on_ray_and_registers_a_pending_version(
    trained: tuple[Path, dict[str, object]],
) -> None:
    root, summary = trained
    report = json.loads((root / "data/08_reporting/training_report.json").read_text())
    assert summary == {
        "api": "ray_task",
        "device": "cpu",
        "auc_out_of_time": round(report["metrics"]["auc_out_of_time"], 4),
        "best_iteration": int(report["metrics"]["best_iteration"]),
        "model_name": "credit_default_pd",
        "version": 1,
        "gate_status": "pending",
    }
    assert 0.60 <= report["metrics"]["auc_out_of_time"] <= 0.93
    assert list((root / "data/06_models/checkpoints").iterdir()) == []  # cleaned up
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version("credit_default_pd", "1")
    assert {
        k: version.tags[k]
        for k in (
            "gate_status",
            "trainer",
            "service_identity",
            "feature_service",
            "feature_service_version",
        )
    } == {
        "gate_status": "pending",
        "trainer": "local-developer",
        "service_identity": "svc-training",
        "feature_service": "credit_default_v1",
        "feature_service_version": "1",
    }
    log = root / ".bankplatform" / "audit" / "audit.jsonl"
    registered = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if '"register_model"' in line
    ]
    assert [
        (r["actor"], r["on_behalf_of"], r["resource"], r["outcome"]) for r in registered
    ] == [("svc-training", "local-developer", "model:credit_default_pd", "allowed")]
    run = client.get_run(version.tags["run_id"])
    assert run.data.metrics["auc_out_of_time"] == pytest.approx(
        report["metrics"]["auc_out_of_time"]
    )
    assert run.data.tags["training.api"] == "ray_task"


def test_the_registered_pyfunc_scores_the_signature_columns(
    trained: tuple[Path, dict[str, object]],
) -> None:
    root, _ = trained
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/credit_default_pd/1")
    info = mlflow.models.get_model_info("models:/credit_default_pd/1")
    assert info.signature is not None
    names = [spec.name for spec in info.signature.inputs.inputs]
    assert len(names) == 32
    assert {spec.name: spec.type.name for spec in info.signature.inputs.inputs}[
        "purpose"
    ] == "string"
    rows = read_encrypted(
        root / "data/05_model_input/training_set.parquet.enc", "training_set"
    )
    scores = np.asarray(model.predict(model_input(rows, names)))
    assert scores.shape == (len(rows),)
    assert np.all((scores > 0) & (scores < 1))
    contributions = model.predict(
        model_input(rows.head(3), names), params={"output": "contributions"}
    )
    assert list(contributions.columns) == [*names, "bias"]
    # Contributions are log-odds: their sum is the score's logit.
    logits = np.log(scores[:3] / (1 - scores[:3]))
    assert np.allclose(contributions.sum(axis=1), logits, atol=1e-5)
    requirements = Path(
        mlflow.pyfunc.get_model_dependencies("models:/credit_default_pd/1")
    ).read_text()
    assert "xgboost==3.2.0" in requirements.splitlines()


def test_the_training_run_records_its_lineage(
    trained: tuple[Path, dict[str, object]],
) -> None:
    root, _ = trained
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("credit_default_pd")
    assert experiment is not None
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`kedro.pipelines` = 'training'"
    )
    assert run.info.status == "FINISHED"
    assert run.data.tags["feast.feature_service"] == "credit_default_v1"
    # The training set and the customers' protected attributes (for served
    # decisions whose outcomes arrived: none yet, so no decision_outcomes input).
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        "training_set",
        "customer_attributes",
    }
