"""Nodes of the evaluation pipeline.

They load the candidate **from the registry** (the artefact that would be
served, not the in-memory booster), measure it on the out-of-time window, decide
the gates, execute the evidence notebooks and record the outcome on the model
version, its MLflow run and in the audit log.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc import PyFuncModel

# Imported at run time: Kedro reads node type hints (it warns of unresolvable ones).
from bankplatform.context import WorkspaceContext
from bankplatform.governance import evaluation
from bankplatform.governance.gates import as_records, measurement_gates, verdict
from bankplatform.governance.outcome import EvaluationRecord, record_evaluation
from bankplatform.governance.registry import CHAMPION
from bankplatform.monitoring.inputs import out_of_time_reference, reference_partition
from bankplatform.training.served import training_window
from bankplatform.training.settings import TrainingParameters
from bankplatform.training.train import split_out_of_time


def score_validation_windows(
    model_registration: dict[str, Any],
    training_set: pd.DataFrame,
    labelled_decisions: pd.DataFrame,
    training: dict[str, Any],
) -> pd.DataFrame:
    """Score the training and out-of-time windows with the registered candidate.

    Args:
        model_registration: Name and version of the candidate.
        training_set: The point-in-time training set.
        labelled_decisions: Served decisions whose outcomes arrived (the
            training pipeline's: the same window the candidate was trained on).
        training: ``params:training`` (the out-of-time split).

    Returns:
        Both windows with ``window``, ``score``, outcome and protected attributes.
    """
    split = TrainingParameters.model_validate(training).split
    window = training_window(training_set, labelled_decisions)
    train, valid = split_out_of_time(window, split)
    model = _load(model_registration["model_name"], model_registration["version"])
    return evaluation.score_windows(evaluation.scorer(model), train, valid)


def keep_monitoring_reference(
    model_registration: dict[str, Any], validation_scores: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The candidate's out-of-time window with its scores: what monitoring will
    compare its decisions with if it becomes the champion.

    Returns:
        One partition of ``monitoring_references``, named after the version.
    """
    name = reference_partition(
        model_registration["model_name"], int(model_registration["version"])
    )
    return {name: out_of_time_reference(validation_scores)}


def measure_candidate(
    model_registration: dict[str, Any],
    validation_scores: pd.DataFrame,
    training: dict[str, Any],
    workspace: WorkspaceContext,
) -> dict[str, Any]:
    """Performance, champion regression, fairness, stability, behaviour, explanation,
    all on the windows ``score_validation_windows`` split and scored once.

    Returns:
        The measurements, keyed as ``gates.measurement_gates`` reads them.
    """
    settings = workspace.governance
    parameters = TrainingParameters.model_validate(training)
    name, version = model_registration["model_name"], model_registration["version"]
    model = _load(name, version)
    score = evaluation.scorer(model)
    valid = evaluation.out_of_time_applicants(validation_scores)
    perf = evaluation.measure_performance(validation_scores)
    champion_version = _champion_version(name, version)
    champion = (
        evaluation.scorer(_load(name, champion_version))
        if champion_version is not None
        else None
    )
    return {
        "performance": perf,
        "champion": evaluation.compare_with_champion(
            perf[evaluation.OUT_OF_TIME]["auc"], champion, champion_version, valid
        ),
        "fairness": evaluation.measure_fairness(validation_scores, settings),
        "stability": evaluation.measure_stability(
            validation_scores, evaluation.model_features(model)
        ),
        "behaviour": evaluation.test_behaviour(
            score, valid, dict(parameters.monotone), settings
        ),
        "explanation": evaluation.explain(model, valid),
    }


def decide_gates(
    model_registration: dict[str, Any],
    measurements: dict[str, Any],
    workspace: WorkspaceContext,
) -> dict[str, Any]:
    """The gate report: every gate against its threshold, and the verdict so far
    (the evidence gate is added when the notebooks have run).

    Returns:
        Model, version, run id, the settings used, the measurements, the gates
        and ``gate_status``.
    """
    settings = workspace.governance
    gates = as_records(measurement_gates(measurements, settings))
    return {
        "model_name": model_registration["model_name"],
        "version": model_registration["version"],
        "run_id": model_registration["run_id"],
        "settings": settings.model_dump(mode="json"),
        "measurements": measurements,
        "gates": gates,
        "gate_status": verdict(gates),
    }


def record_gate_outcome(
    gate_report: dict[str, Any], workspace: WorkspaceContext
) -> dict[str, Any]:
    """Execute the evidence notebooks, add the evidence gate, and record the outcome:
    tags on the model version, metrics and artifacts on its run, the audit log.

    Returns:
        The final gate report (with the evidence gate and the evidence hashes).
    """
    return record_evaluation(
        EvaluationRecord(root=workspace.root, report=gate_report),
        workspace.governance,
    )


def _load(name: str, version: int) -> PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


def _champion_version(name: str, candidate: int) -> int | None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    from bankplatform.governance.registry import alias_holder  # noqa: PLC0415

    holder = alias_holder(MlflowClient(), name, CHAMPION)
    return holder if holder != candidate else None
