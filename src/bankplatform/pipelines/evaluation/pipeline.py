"""The evaluation pipeline: registered candidate -> measurements -> gates ->
evidence notebooks -> gate outcome on the model version."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bankplatform.pipelines.evaluation.nodes import (
    decide_gates,
    keep_monitoring_reference,
    measure_candidate,
    record_gate_outcome,
    score_validation_windows,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the evaluation pipeline.

    Returns:
        Score both windows with the registered model, measure, decide the
        gates, execute the evidence notebooks and record the outcome.
    """
    return Pipeline(
        [
            Node(
                score_validation_windows,
                inputs=[
                    "model_registration",
                    "training_set",
                    "labelled_decisions",
                    "params:training",
                ],
                outputs="validation_scores",
                name="score_validation_windows_node",
            ),
            Node(
                keep_monitoring_reference,
                inputs=["model_registration", "validation_scores"],
                outputs="monitoring_references",
                name="keep_monitoring_reference_node",
            ),
            Node(
                measure_candidate,
                inputs=[
                    "model_registration",
                    "validation_scores",
                    "params:training",
                    "workspace",
                ],
                outputs="evaluation_measurements",
                name="measure_candidate_node",
            ),
            Node(
                decide_gates,
                inputs=[
                    "model_registration",
                    "evaluation_measurements",
                    "workspace",
                ],
                outputs="gate_report",
                name="decide_gates_node",
            ),
            Node(
                record_gate_outcome,
                inputs=["gate_report", "workspace"],
                outputs="gate_outcome",
                name="record_gate_outcome_node",
            ),
        ],
        tags=["evaluation", "governance"],
    )
