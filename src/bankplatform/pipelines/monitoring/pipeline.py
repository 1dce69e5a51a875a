"""The monitoring pipeline: champion's reference + a window of the decision log
-> drift and quality reports -> findings -> one audited action."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bankplatform.pipelines.monitoring.nodes import (
    act_on_verdict,
    collect_window_decisions,
    judge_monitoring_window,
    prepare_champion_reference,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the monitoring pipeline.

    Returns:
        Reference, window, verdict (reports, MLflow, audit) and action.
    """
    return Pipeline(
        [
            Node(
                prepare_champion_reference,
                inputs=["monitoring_references", "workspace"],
                outputs="champion_reference",
                name="prepare_champion_reference_node",
            ),
            Node(
                collect_window_decisions,
                inputs=["decision_outcomes", "workspace"],
                outputs="window_decisions",
                name="collect_window_decisions_node",
            ),
            Node(
                judge_monitoring_window,
                inputs=["champion_reference", "window_decisions", "workspace"],
                outputs="monitoring_verdict",
                name="judge_monitoring_window_node",
            ),
            Node(
                act_on_verdict,
                inputs=["monitoring_verdict", "workspace"],
                outputs="monitoring_action",
                name="act_on_verdict_node",
            ),
        ],
        tags=["monitoring", "governance"],
    )
