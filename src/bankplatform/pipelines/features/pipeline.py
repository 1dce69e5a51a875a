"""The features pipeline: primary layer -> feature tables -> Feast apply and
materialise -> point-in-time training set (model input layer)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bankplatform.pipelines.features.nodes import (
    build_application_features,
    build_customer_features,
    build_training_set,
    keep_protected_attributes,
    materialize_online_store,
    register_feature_repository,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the features pipeline.

    Returns:
        Feature tables, registration, materialisation and the training set.
    """
    return Pipeline(
        [
            Node(
                build_customer_features,
                inputs=[
                    "customers_primary",
                    "accounts_primary",
                    "transactions_primary",
                    "params:features",
                ],
                outputs="customer_features",
                name="build_customer_features_node",
            ),
            Node(
                build_application_features,
                inputs="loan_applications_primary",
                outputs="application_features",
                name="build_application_features_node",
            ),
            Node(
                register_feature_repository,
                inputs=["feature_store", "customer_features", "application_features"],
                outputs="feature_registration",
                name="register_feature_repository_node",
            ),
            Node(
                materialize_online_store,
                inputs=["feature_store", "customer_features", "feature_registration"],
                outputs="online_store_materialization",
                name="materialize_online_store_node",
            ),
            Node(
                build_training_set,
                inputs=[
                    "feature_store",
                    "loan_applications_primary",
                    "loan_outcomes_primary",
                    "customers_primary",
                    "feature_registration",
                    "params:features",
                    "params:governance.protected_attributes",
                ],
                outputs="training_set",
                name="build_training_set_node",
            ),
            Node(
                keep_protected_attributes,
                inputs=[
                    "customers_primary",
                    "params:governance.protected_attributes",
                ],
                outputs="customer_attributes",
                name="keep_protected_attributes_node",
            ),
        ],
        tags="features",
    )
