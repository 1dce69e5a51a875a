"""Log a trained candidate to MLflow and register it as a new model version.

The version is tagged ``gate_status=pending`` (the evaluation gates and a
validator's approval decide its fate), with the trainer's identity, the run id
and the feature service; its pip requirements are pinned from the lock file
(inferring them cost ~2 s of a ~3 s ``log_model`` here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.xgboost
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from bankplatform.training.boosting import design_matrix, load_booster
from bankplatform.training.train import TrainedModel

_MODEL_PACKAGES = ("mlflow", "xgboost", "numpy", "pandas", "scipy", "scikit-learn")


def pinned_requirements(lock_file: Path) -> list[str]:
    """The model's runtime packages, pinned exactly as ``requirements.lock`` has them."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if version and name.lower() in _MODEL_PACKAGES:
            pins[name.lower()] = f"{name.lower()}=={version.split()[0]}"
    return [pins[name] for name in _MODEL_PACKAGES if name in pins]


def register_candidate(
    trained: TrainedModel,
    example: pd.DataFrame,
    *,
    model_name: str,
    feature_service: dict[str, Any],
    trainer: str,
    service_identity: str,
    lock_file: Path,
) -> dict[str, Any]:
    """Log the model (signature, input example, pinned requirements) and register it.

    Args:
        trained: The candidate and its evidence.
        example: Rows of the training set for the signature and input example.
        model_name: Registered model name (``.kedro.yml`` ``model_name``).
        feature_service: ``{"name", "version", "features"}`` it was trained on.
        trainer: The person (or scheduler) who started the training.
        service_identity: The service identity the training ran as.
        lock_file: ``requirements.lock``.

    Returns:
        Model name, version, run id, model URI and the version's tags.
    """
    booster = load_booster(trained.model)
    inputs = design_matrix(example, trained.config.features, trained.config.categories)
    scores = booster.predict(xgb.DMatrix(inputs, enable_categorical=True))
    mlflow.set_experiment(model_name)
    with mlflow.start_run(run_name=f"candidate:{model_name}") as run:
        mlflow.set_tags(
            {
                "training.api": trained.api,
                "training.device": trained.device,
                "trainer": trainer,
                "service_identity": service_identity,
                "feast.feature_service": str(feature_service["name"]),
                "feast.feature_service_version": str(feature_service["version"]),
            }
        )
        mlflow.log_params(
            {
                f"booster.{k}": v
                for k, v in trained.config.params.items()
                if k != "nthread"
            }
        )
        mlflow.log_metrics(trained.metrics)
        mlflow.log_dict(trained.fit.curve, "training/learning_curve.json")
        for number, trial in enumerate(trained.trials):
            with mlflow.start_run(run_name=f"trial-{number}", nested=True):
                mlflow.log_params(trial["params"])
                mlflow.log_metric("valid_auc", trial["valid_auc"])
        info = mlflow.xgboost.log_model(
            booster,
            name="model",
            signature=infer_signature(inputs, scores),
            input_example=inputs.head(5),
            pip_requirements=pinned_requirements(lock_file),
            model_format="ubj",
        )
    version = mlflow.register_model(info.model_uri, model_name)
    tags = {
        "gate_status": "pending",
        "trainer": trainer,
        "service_identity": service_identity,
        "run_id": run.info.run_id,
        "feature_service": str(feature_service["name"]),
        "feature_service_version": str(feature_service["version"]),
        "auc_out_of_time": f"{trained.metrics['auc_out_of_time']:.4f}",
    }
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version.version, key, value)
    return {
        "model_name": model_name,
        "version": int(version.version),
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "tags": tags,
    }
