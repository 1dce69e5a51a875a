"""Nodes of the training pipeline: train on Ray, register the candidate."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd

# Imported at run time: Kedro reads node type hints (it warns of unresolvable ones).
from bankplatform.context import WorkspaceContext
from bankplatform.feature_repo import FEATURE_SERVICES
from bankplatform.feature_repo.services import feature_names
from bankplatform.features.settings import FeaturesParameters
from bankplatform.lineage.records import current_kedro_run
from bankplatform.monitoring.windows import logged_decisions, vouched_decision_lines
from bankplatform.security.policy import Action
from bankplatform.security.runtime import acting_principal
from bankplatform.training.boosting import load_booster
from bankplatform.training.registry import register_candidate
from bankplatform.training.served import labelled_decisions, training_window
from bankplatform.training.settings import QualityGate, TrainingParameters
from bankplatform.training.train import (
    TrainedModel,
    train_credit_model,
    window_summary,
)

CHECKPOINTS = "data/06_models/checkpoints"


def label_served_decisions(
    decision_outcomes: dict[str, Callable[[], pd.DataFrame]],
    customer_attributes: pd.DataFrame,
    workspace: WorkspaceContext,
) -> pd.DataFrame:
    """The scoring service's decisions whose loan outcomes arrived, as training
    rows (only lines the audit log vouches for: a planted line trains nothing).

    Args:
        decision_outcomes: The loan-servicing system's deliveries.
        customer_attributes: Protected attributes by customer token.

    Returns:
        One row per labelled decision (``training.served.labelled_decisions``).
    """
    vouched = vouched_decision_lines(
        workspace.security.audit_log().records(resource="request:")
    )
    decisions = logged_decisions(workspace.serving.decision_log, vouched)
    outcomes = (
        pd.concat([load() for load in decision_outcomes.values()], ignore_index=True)
        if decision_outcomes
        else pd.DataFrame(columns=["request_id", "defaulted"])
    )
    return labelled_decisions(decisions, outcomes, customer_attributes)


def train_credit_default_model(
    training_set: pd.DataFrame,
    labelled_decisions: pd.DataFrame,
    training: dict[str, Any],
    features: dict[str, Any],
    workspace: WorkspaceContext,
) -> tuple[TrainedModel, dict[str, Any]]:
    """Train XGBoost on Ray on the feature service's features, out of time.

    Args:
        training_set: The point-in-time training set.
        labelled_decisions: Served decisions whose outcomes arrived (they join
            the training window; the rolling split moves with them).
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
    window = training_window(training_set, labelled_decisions)
    trained = train_credit_model(window, names, parameters, checkpoints, quality)
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
        "training_window": window_summary(window, parameters.split),
        "served_decisions": len(labelled_decisions),
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
