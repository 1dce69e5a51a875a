"""The training pipeline: served decisions whose outcomes arrived -> training
window (with the training set) -> XGBoost on Ray -> registered candidate."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bankplatform.pipelines.training.nodes import (
    label_served_decisions,
    register_credit_default_model,
    train_credit_default_model,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the training pipeline.

    Returns:
        Train on Ray, then register the candidate in MLflow.
    """
    return Pipeline(
        [
            Node(
                label_served_decisions,
                inputs=["decision_outcomes", "customer_attributes", "workspace"],
                outputs="labelled_decisions",
                name="label_served_decisions_node",
            ),
            Node(
                train_credit_default_model,
                inputs=[
                    "training_set",
                    "labelled_decisions",
                    "params:training",
                    "params:features",
                    "workspace",
                ],
                outputs=["trained_model", "training_report"],
                name="train_credit_default_model_node",
                # Runs on Ray, and may burst to a GPU cluster outside the bank
                # (`cloud`): it reads pseudonymised features only, which the
                # residency check proves before every run (no pii input).
                tags=["ray", "cloud"],
            ),
            Node(
                register_credit_default_model,
                inputs=["trained_model", "params:features", "workspace"],
                outputs="model_registration",
                name="register_credit_default_model_node",
            ),
        ],
        tags="training",
    )
