"""Registering a candidate in a real MLflow store (SQLite): the version's tags,
nested trial runs, signature and pinned requirements."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.training.boosting import fit, predict
from bankplatform.training.registry import (
    artefact_sha256,
    register_candidate,
    synthetic_applicant,
)
from bankplatform.training.train import TrainedModel
from tests.code.test_training import small_boosting_config, synthetic_training_set
from tests.conftest import REPO

pytestmark = pytest.mark.unit


@pytest.fixture
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A SQLite store puts artifacts under ./mlruns: keep them in the test's folder.
    monkeypatch.chdir(tmp_path)
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(before)


def test_a_candidate_is_registered_pending_with_its_trials(
    tmp_path: Path, tracking_store: str
) -> None:
    frame = synthetic_training_set(2_000)
    config = small_boosting_config(tmp_path / "checkpoints", rounds=20)
    fitted = fit(frame.iloc[:1_500], frame.iloc[1_500:], config)
    trained = TrainedModel(
        model=fitted.model,
        config=config,
        api="ray_tune",
        device="cpu",
        fit=fitted,
        metrics={"auc_out_of_time": 0.8123, "auc_train": 0.83},
        trials=[
            {"params": {"max_depth": 3, "eta": 0.1}, "valid_auc": 0.81},
            {"params": {"max_depth": 5, "eta": 0.05}, "valid_auc": 0.79},
        ],
    )

    def register() -> dict[str, Any]:
        return register_candidate(
            trained,
            model_name="credit_default_pd",
            feature_service={
                "name": "credit_default_v1",
                "version": "1",
                "features": config.features,
            },
            trainer="dana.scientist",
            service_identity="svc-training",
            lock_file=REPO / "requirements.lock",
            kedro_run_id="2026-12-06T08.52.44.123Z",
        )

    registered = register()
    client = MlflowClient()
    version = client.get_model_version("credit_default_pd", str(registered["version"]))
    assert registered["version"] == 1
    assert version.tags == {
        "gate_status": "pending",
        "trainer": "dana.scientist",
        "service_identity": "svc-training",
        "run_id": registered["run_id"],
        "kedro_run_id": "2026-12-06T08.52.44.123Z",
        "feature_service": "credit_default_v1",
        "feature_service_version": "1",
        "auc_out_of_time": "0.8123",
        "artefact_sha256": version.tags["artefact_sha256"],
    }
    # The hash read through the client's own stores equals the hash of MLflow's
    # own ``models:/`` download (its registered_model_meta file included).
    with tempfile.TemporaryDirectory() as folder:
        downloaded = mlflow.artifacts.download_artifacts(
            f"models:/credit_default_pd/{registered['version']}", dst_path=folder
        )
        assert (Path(downloaded) / "registered_model_meta").is_file()
        assert version.tags["artefact_sha256"] == artefact_sha256(Path(downloaded))
    parent = client.get_run(registered["run_id"])
    assert parent.info.run_name == "candidate:credit_default_pd"
    assert parent.data.metrics["auc_out_of_time"] == 0.8123
    trials = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{registered['run_id']}'",
    )
    assert sorted(r.data.metrics["valid_auc"] for r in trials) == [0.79, 0.81]
    info = mlflow.models.get_model_info("models:/credit_default_pd/1")
    assert [spec.name for spec in info.signature.inputs.inputs] == config.features
    # The stored input example is the synthetic applicant, never a training row.
    model = mlflow.pyfunc.load_model("models:/credit_default_pd/1")
    example = synthetic_applicant(config)
    assert not frame[config.features].eq(example.iloc[0]).all(axis=1).any()
    assert model.predict(example)[0] == pytest.approx(
        predict(fitted.model, example, config)[0], abs=1e-12
    )
    again = register()
    assert again["version"] == 2  # a new version each time, never an overwrite
