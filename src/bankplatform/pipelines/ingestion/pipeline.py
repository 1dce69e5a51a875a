"""The ingestion pipeline: raw extract -> data contracts -> accepted and quarantine
-> pseudonymised primary layer."""

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
from bankplatform.pipelines.ingestion.pseudonymisation import (
    pseudonymise_accounts,
    pseudonymise_customers,
    pseudonymise_loan_applications,
    pseudonymise_transactions,
    publish_loan_outcomes,
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

_PSEUDONYMISE: dict[str, Callable[..., object]] = {
    "customers": pseudonymise_customers,
    "accounts": pseudonymise_accounts,
    "transactions": pseudonymise_transactions,
    "loan_applications": pseudonymise_loan_applications,
}


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the ingestion pipeline.

    Returns:
        One contract node per raw table (parents first), one pseudonymisation
        node per table with identifiers, and the report node.
    """
    nodes = [_contract_node(table) for table in RAW_TABLES]
    nodes.extend(_pseudonymise_node(table) for table in _PSEUDONYMISE)
    nodes.append(
        Node(
            publish_loan_outcomes,
            inputs="loan_outcomes_accepted",
            outputs="loan_outcomes_primary",
            name="publish_loan_outcomes_node",
        )
    )
    nodes.append(
        Node(
            report_ingestion,
            inputs={f"{t}_contract_counts": f"{t}_contract_counts" for t in RAW_TABLES},
            outputs="ingestion_report",
            name="report_ingestion_node",
        )
    )
    return Pipeline(nodes, tags=["ingestion", "pii"])


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


def _pseudonymise_node(table: str) -> Node:
    inputs = [f"{table}_accepted", "pseudonymiser"]
    if table == "customers":
        inputs.append("params:ingestion")
    return Node(
        _PSEUDONYMISE[table],
        inputs=inputs,
        outputs=f"{table}_primary",
        name=f"pseudonymise_{table}_node",
    )
