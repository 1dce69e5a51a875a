"""Nodes of the training pipeline: train on Ray, register the candidate."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import pandas as pd

# Imported at run time: Kedro reads node type hints (it warns of unresolvable ones).
from bankplatform.context import WorkspaceContext
from bankplatform.feature_repo import FEATURE_SERVICES
from bankplatform.feature_repo.services import feature_names
from bankplatform.features.settings import FeaturesParameters
from bankplatform.lineage.records import current_kedro_run
from bankplatform.security.policy import Action
from bankplatform.security.runtime import acting_principal
from bankplatform.training.boosting import load_booster
from bankplatform.training.registry import register_candidate
from bankplatform.training.settings import QualityGate, TrainingParameters
from bankplatform.training.train import TrainedModel, train_credit_model

CHECKPOINTS = "data/06_models/checkpoints"


def train_credit_default_model(
    training_set: pd.DataFrame,
    training: dict[str, Any],
    features: dict[str, Any],
    workspace: WorkspaceContext,
) -> tuple[TrainedModel, dict[str, Any]]:
    """Train XGBoost on Ray on the feature service's features, out of time.

    Args:
        training_set: The point-in-time training set.
        training: ``params:training``.
        features: ``params:features`` (which feature service).
        governance: ``params:governance`` (its discrimination and leakage gates
            stop a run early, before anything is registered).

    Returns:
        The candidate, and a report: metrics, Ray API and device, learning
        curve, feature importance (gain), monotone directions, trials.
    """
    parameters = TrainingParameters.model_validate(training)
    names = _feature_names(features)
    checkpoints = workspace.root / CHECKPOINTS / uuid.uuid4().hex
    gates = workspace.governance.gates
    quality = QualityGate(
        min_auc=gates.discrimination.threshold,
        leakage_ceiling=gates.leakage.threshold,
    )
    trained = train_credit_model(training_set, names, parameters, checkpoints, quality)
    # Checkpoints serve retries within this run only; a failed run keeps them.
    shutil.rmtree(checkpoints, ignore_errors=True)
    booster = load_booster(trained.model)
    report = {
        "feature_service": FeaturesParameters.model_validate(features).feature_service,
        "api": trained.api,
        "device": trained.device,
        "metrics": trained.metrics,
        "resumed_from_round": trained.fit.resumed_from_round,
        "learning_curve": trained.fit.curve,
        "feature_importance": booster.get_score(importance_type="gain"),
        "monotone": parameters.monotone,
        "trials": trained.trials,
    }
    return trained, report


def register_credit_default_model(
    trained_model: TrainedModel, features: dict[str, Any], workspace: WorkspaceContext
) -> dict[str, Any]:
    """Log the candidate to MLflow and register it as a new version, gate pending.

    The acting identity (the training service) needs ``register_model``.

    Args:
        trained_model: The candidate.
        features: ``params:features`` (which feature service).

    Returns:
        Model name, version, run id, URI and tags.
    """
    acting = acting_principal()
    model_name = workspace.model_name
    # Checked and audited like any governed action: who registered which model.
    workspace.security.enforce(Action.REGISTER_MODEL, f"model:{model_name}")
    service = FeaturesParameters.model_validate(features).feature_service
    registration = register_candidate(
        trained_model,
        model_name=model_name,
        feature_service={
            "name": service,
            "version": FEATURE_SERVICES[service].tags.get("version"),
            "features": _feature_names(features),
        },
        trainer=acting.on_behalf_of or acting.name,
        service_identity=acting.name,
        lock_file=workspace.root / "requirements.lock",
        kedro_run_id=current_kedro_run(),
    )
    # The maker of record: approval reads who trained a version from here, not
    # from the version's tags (editable by anyone with registry access).
    workspace.security.audit_log().append(
        action="model.register",
        resource=f"model:{model_name}/{registration['version']}",
        outcome="allowed",
        details={
            "trainer": registration["tags"]["trainer"],
            "run_id": registration["run_id"],
            "kedro_run_id": registration["tags"]["kedro_run_id"],
            "artefact_sha256": registration["tags"]["artefact_sha256"],
            "feature_service": registration["tags"]["feature_service"],
            "feature_service_version": registration["tags"]["feature_service_version"],
        },
    )
    return registration


def _feature_names(features: dict[str, Any]) -> list[str]:
    service = FEATURE_SERVICES[
        FeaturesParameters.model_validate(features).feature_service
    ]
    return feature_names(service)
