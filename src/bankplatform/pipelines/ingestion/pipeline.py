"""The ingestion pipeline: raw extract -> data contracts -> accepted and quarantine."""

from __future__ import annotations

from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from bankplatform.contracts.raw import RAW_TABLES
from bankplatform.pipelines.ingestion.nodes import (
    ContractResult,
    check_accounts,
    check_customers,
    check_loan_applications,
    check_loan_outcomes,
    check_transactions,
    report_ingestion,
)

_PARENT = {
    "accounts": "customers",
    "transactions": "accounts",
    "loan_applications": "customers",
    "loan_outcomes": "loan_applications",
}
_CHECKS: dict[str, Callable[..., ContractResult]] = {
    "customers": check_customers,
    "accounts": check_accounts,
    "transactions": check_transactions,
    "loan_applications": check_loan_applications,
    "loan_outcomes": check_loan_outcomes,
}


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the ingestion pipeline.

    Returns:
        One contract node per raw table, parents first, and the report node.
    """
    nodes = [_contract_node(table) for table in RAW_TABLES]
    nodes.append(
        Node(
            report_ingestion,
            inputs={f"{t}_contract_counts": f"{t}_contract_counts" for t in RAW_TABLES},
            outputs="ingestion_report",
            name="report_ingestion_node",
        )
    )
    return Pipeline(nodes, tags="ingestion")


def _contract_node(table: str) -> Node:
    inputs = [f"{table}_raw"]
    if table in _PARENT:
        inputs.append(f"{_PARENT[table]}_accepted")
    inputs.append("params:ingestion")
    return Node(
        _CHECKS[table],
        inputs=inputs,
        outputs=[
            f"{table}_accepted",
            f"{table}_quarantine",
            f"{table}_contract_counts",
        ],
        name=f"check_{table}_contract_node",
    )
