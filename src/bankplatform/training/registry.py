"""Log a trained candidate to MLflow and register it as a new model version.

The model is an MLflow pyfunc (``pd_model.py``: the booster plus the design
matrix), so ``mlflow.pyfunc.load_model("models:/<name>@champion")`` scores the
signature's columns anywhere. Its input example is a synthetic applicant, never
a row of the training set. The version is tagged ``gate_status=pending`` (the
evaluation gates and a validator's approval decide its fate), with the trainer's
identity, the run id and the feature service; its pip requirements are pinned
from the lock file (inferring them cost ~2 s of a ~3 s ``log_model`` here).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from bankplatform.security.bundles import files_sha256
from bankplatform.third_party import mlflow_event_lines_off
from bankplatform.training import pd_model
from bankplatform.training.boosting import BoostingConfig, predict
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


def model_files(folder: Path) -> list[Path]:
    """A logged model's files, without Python's bytecode caches: ``__pycache__`` is
    rewritten by whichever process imports the model's code where it lies, and a
    cached ``.pyc`` could run other code than its source; it is never hashed,
    packaged or served."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix != ".pyc"
        and "__pycache__" not in p.relative_to(folder).parts
    )


def artefact_sha256(folder: Path) -> str:
    """One hash over a logged model's files (relative path and content of each;
    bytecode caches excluded, see ``model_files``).

    Recorded at registration (in the audit log) and recomputed when the version is
    packaged, by the scoring service when it loads its bundle and by ``decision
    trace``: the bytes that score are the bytes that were registered and approved.
    """
    return files_sha256(
        {p.relative_to(folder).as_posix(): p.read_bytes() for p in model_files(folder)}
    )


def registered_model_files(
    client: MlflowClient, model_name: str, version: int | str
) -> dict[str, bytes]:
    """A registered version's files (relative path -> bytes), read through
    ``client``'s own registry and tracking stores.

    ``models:/`` URIs resolve the version in the *process-wide* registry (MLflow's
    ``ModelsArtifactRepository`` ignores the stores it is given), so a process that
    serves several workspaces, or a test suite, could read another registry's
    version. The version's download URI is asked of ``client`` instead, and the
    ``registered_model_meta`` file MLflow adds to a ``models:/`` download is written
    the same way, so the hash equals the one recorded at registration.
    """
    from mlflow.models.model import MLMODEL_FILE_NAME  # noqa: PLC0415
    from mlflow.store.artifact.artifact_repository_registry import (  # noqa: PLC0415
        get_artifact_repository,
    )
    from mlflow.store.artifact.models_artifact_repo import (  # noqa: PLC0415
        REGISTERED_MODEL_META_FILE_NAME,
    )
    from mlflow.utils.yaml_utils import write_yaml  # noqa: PLC0415

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    source = client.get_model_version_download_uri(model_name, str(version))
    repository = get_artifact_repository(
        source,
        tracking_uri=client._tracking_client.tracking_uri,
        registry_uri=client._registry_uri,
    )
    with tempfile.TemporaryDirectory(prefix="bankplatform-artefact-") as folder:
        local = Path(repository.download_artifacts("", dst_path=folder))  # type: ignore[no-untyped-call]
        if (local / MLMODEL_FILE_NAME).is_file():
            write_yaml(  # type: ignore[no-untyped-call]
                str(local),
                REGISTERED_MODEL_META_FILE_NAME,
                {"model_name": model_name, "model_version": str(version)},
                overwrite=True,
                ensure_yaml_extension=False,
            )
        return {
            path.relative_to(local).as_posix(): path.read_bytes()
            for path in model_files(local)
        }


def registered_artefact_sha256(
    client: MlflowClient, model_name: str, version: int | str
) -> str:
    """``artefact_sha256`` of a registered version, read through ``client``'s stores."""
    return files_sha256(registered_model_files(client, model_name, version))


def synthetic_applicant(config: BoostingConfig) -> pd.DataFrame:
    """One clearly fake applicant with the model's columns: the input example
    MLflow stores with the model (never a real row: everyone who can read the
    registry can read it). Numbers are float64 (the signature says double, so a
    missing value is never a schema error), text features are strings.

    Args:
        config: The model's features and category levels.
    """
    values: dict[str, Any] = dict.fromkeys(config.features, 0.0)
    values.update(
        income=25_000.0, tenure_months=24.0, loan_amount=5_000.0, term_months=36.0
    )
    for column, levels in config.categories.items():
        values[column] = "other" if "other" in levels else levels[0]
    return pd.DataFrame([{name: values[name] for name in config.features}])


def register_candidate(
    trained: TrainedModel,
    *,
    model_name: str,
    feature_service: dict[str, Any],
    trainer: str,
    service_identity: str,
    lock_file: Path,
    kedro_run_id: str,
) -> dict[str, Any]:
    """Log the model (signature, input example, pinned requirements) and register it.

    Args:
        trained: The candidate and its evidence.
        model_name: Registered model name (``.kedro.yml`` ``model_name``).
        feature_service: ``{"name", "version", "features"}`` it was trained on.
        trainer: The person (or scheduler) who started the training.
        service_identity: The service identity the training ran as.
        lock_file: ``requirements.lock``.
        kedro_run_id: The Kedro run that trained it (its lineage run's
            ``kedro.run_id``; empty outside a Kedro run).

    Returns:
        Model name, version, run id, model URI and the version's tags.
    """
    example = synthetic_applicant(trained.config)
    scores = predict(trained.model, example, trained.config)
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
        info = _log_pyfunc(trained, example, scores, lock_file)
    with mlflow_event_lines_off():  # the training report says what was registered
        version = mlflow.register_model(info.model_uri, model_name)
    tags = {
        "gate_status": "pending",
        "trainer": trainer,
        "service_identity": service_identity,
        "run_id": run.info.run_id,
        "kedro_run_id": kedro_run_id,
        "feature_service": str(feature_service["name"]),
        "feature_service_version": str(feature_service["version"]),
        "auc_out_of_time": f"{trained.metrics['auc_out_of_time']:.4f}",
    }
    client = MlflowClient()
    tags["artefact_sha256"] = registered_artefact_sha256(
        client, model_name, version.version
    )
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version.version, key, value)
    return {
        "model_name": model_name,
        "version": int(version.version),
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "tags": tags,
    }


def _log_pyfunc(
    trained: TrainedModel, example: pd.DataFrame, scores: np.ndarray, lock_file: Path
) -> mlflow.models.model.ModelInfo:
    with tempfile.TemporaryDirectory(prefix="bankplatform-model-") as folder:
        booster_file = Path(folder) / "booster.ubj"
        booster_file.write_bytes(trained.model)
        design_file = Path(folder) / "design.json"
        design_file.write_text(
            json.dumps(
                {
                    "features": trained.config.features,
                    "categories": trained.config.categories,
                }
            )
        )
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=pd_model.__file__,
            artifacts={
                pd_model.BOOSTER_ARTIFACT: str(booster_file),
                pd_model.DESIGN_ARTIFACT: str(design_file),
            },
            signature=infer_signature(
                example, scores, params={"output": "probability"}
            ),
            input_example=example,
            pip_requirements=pinned_requirements(lock_file),
        )
