"""Nodes of the ingestion pipeline: data contracts, quarantine and the run report.

Tables are checked parents first, so a row that references a quarantined
parent is itself quarantined as an orphan and no dangling reference reaches
the later layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from bankplatform.contracts.quarantine import apply_contract
from bankplatform.contracts.rules import CONTRACTS
from bankplatform.contracts.streamed import StreamedContract
from bankplatform.datasets.table_batches import ParquetBatches

# Accepted rows, quarantined rows, counts; for a table read in batches, the
# accepted and quarantined rows come as iterators of frames, in that order.
ContractResult = tuple[
    pd.DataFrame | Iterator[pd.DataFrame],
    pd.DataFrame | Iterator[pd.DataFrame],
    Mapping[str, Any],
]


class IngestionParameters(BaseModel):
    """``params:ingestion``.

    Attributes:
        as_of: Date of the extract; any later date in it is impossible.
    """

    model_config = ConfigDict(extra="forbid")

    as_of: date


def check_customers(
    customers_raw: pd.DataFrame, ingestion: dict[str, Any]
) -> ContractResult:
    """Apply the customers contract.

    Args:
        customers_raw: Raw customers.
        ingestion: ``params:ingestion``.

    Returns:
        Accepted customers, quarantined customers and the counts.
    """
    return _check("customers", customers_raw, ingestion)


def check_accounts(
    accounts_raw: pd.DataFrame, customers: pd.DataFrame, ingestion: dict[str, Any]
) -> ContractResult:
    """Apply the accounts contract; the owner must be an accepted customer.

    Args:
        accounts_raw: Raw accounts.
        customers: Accepted customers.
        ingestion: ``params:ingestion``.

    Returns:
        Accepted accounts, quarantined accounts and the counts.
    """
    return _check("accounts", accounts_raw, ingestion, customers["customer_id"])


def check_transactions(
    transactions_raw: pd.DataFrame | ParquetBatches,
    accounts: pd.DataFrame,
    ingestion: dict[str, Any],
) -> ContractResult:
    """Apply the transactions contract; the account must be accepted.

    Args:
        transactions_raw: Raw transactions (whole, or read in batches: then the
            accepted rows are handed on batch by batch).
        accounts: Accepted accounts.
        ingestion: ``params:ingestion``.

    Returns:
        Accepted transactions (amounts parsed), quarantined ones and the counts.
    """
    return _check("transactions", transactions_raw, ingestion, accounts["account_id"])


def check_loan_applications(
    loan_applications_raw: pd.DataFrame,
    customers: pd.DataFrame,
    ingestion: dict[str, Any],
) -> ContractResult:
    """Apply the loan applications contract; the applicant must be accepted.

    Args:
        loan_applications_raw: Raw loan applications.
        customers: Accepted customers.
        ingestion: ``params:ingestion``.

    Returns:
        Accepted applications (amounts parsed), quarantined ones and the counts.
    """
    return _check(
        "loan_applications", loan_applications_raw, ingestion, customers["customer_id"]
    )


def check_loan_outcomes(
    loan_outcomes_raw: pd.DataFrame,
    applications: pd.DataFrame,
    ingestion: dict[str, Any],
) -> ContractResult:
    """Apply the loan outcomes contract; the application must be accepted.

    Args:
        loan_outcomes_raw: Raw 12-month default outcomes.
        applications: Accepted loan applications.
        ingestion: ``params:ingestion``.

    Returns:
        Accepted outcomes, quarantined outcomes and the counts.
    """
    return _check(
        "loan_outcomes", loan_outcomes_raw, ingestion, applications["application_id"]
    )


def report_ingestion(**counts: dict[str, Any]) -> dict[str, Any]:
    """Gather the per-table counts into the ingestion report.

    Args:
        **counts: ``<table>_contract_counts`` for each raw table.

    Returns:
        Counts per table and totals; accepted + quarantined = input for each.
    """
    tables = {
        name.removesuffix("_contract_counts"): value for name, value in counts.items()
    }
    return {
        "tables": tables,
        "input_rows": sum(int(t["input"]) for t in tables.values()),
        "quarantined_rows": sum(int(t["quarantined"]) for t in tables.values()),
    }


def _check(
    table: str,
    raw: pd.DataFrame | ParquetBatches,
    ingestion: dict[str, Any],
    parent_keys: pd.Series | None = None,
) -> ContractResult:
    parameters = IngestionParameters.model_validate(ingestion)
    keys = None if parent_keys is None else pd.Index(parent_keys)
    if isinstance(raw, ParquetBatches):
        streamed = StreamedContract(CONTRACTS[table], raw, parameters.as_of, keys)
        return streamed.accepted(), streamed.quarantined(), streamed.counts()
    outcome = apply_contract(CONTRACTS[table], raw, parameters.as_of, keys)
    return outcome.accepted, outcome.quarantined, outcome.counts
