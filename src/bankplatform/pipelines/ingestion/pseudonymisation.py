"""Nodes that pseudonymise accepted tables into the primary layer.

Direct identifiers (name, national id, email, phone, customer and account ids)
become keyed tokens or are dropped; date of birth becomes an age band and the
postcode its area, so no raw PII value reaches the primary layer or later ones.
Gender and age band stay as protected attributes for fairness testing, never as
model features.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pandas as pd

from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.pipelines.ingestion.nodes import IngestionParameters
from bankplatform.security.pseudonyms import IdentifierKind, TokenMaker

AGE_BANDS = (18, 25, 35, 45, 55, 65)
_DROPPED = ["customer_id", "name", "date_of_birth", "national_id", "email", "phone"]
_TEXT = pd.StringDtype("pyarrow")


def pseudonymise_customers(
    customers: pd.DataFrame, pseudonymiser: TokenMaker, ingestion: dict[str, Any]
) -> pd.DataFrame:
    """Tokens for the identifiers, age band and postcode area; the rest kept.

    Args:
        customers: Accepted customers.
        pseudonymiser: Keyed tokens (the ``pseudonymiser`` of the key service).
        ingestion: ``params:ingestion`` (ages are taken at ``as_of``).

    Returns:
        Pseudonymised customers, one row per accepted customer.
    """
    as_of = IngestionParameters.model_validate(ingestion).as_of
    tokens = pd.DataFrame(
        {
            "customer_token": pseudonymiser.tokens(
                customers["customer_id"], IdentifierKind.CUSTOMER
            ),
            "national_id_token": pseudonymiser.tokens(
                customers["national_id"], IdentifierKind.NATIONAL_ID
            ),
            "email_token": pseudonymiser.tokens(
                customers["email"], IdentifierKind.EMAIL
            ),
            "phone_token": pseudonymiser.tokens(
                customers["phone"], IdentifierKind.PHONE
            ),
            "age_band": age_bands(customers["date_of_birth"], as_of),
            "postcode_area": postcode_areas(customers["postcode"]),
        }
    )
    kept = customers.drop(columns=[*_DROPPED, "postcode"])
    return pd.concat([tokens, kept], axis=1)


def pseudonymise_accounts(
    accounts: pd.DataFrame, pseudonymiser: TokenMaker
) -> pd.DataFrame:
    """Account and customer ids replaced by their tokens.

    Args:
        accounts: Accepted accounts.
        pseudonymiser: Keyed tokens.

    Returns:
        Pseudonymised accounts.
    """
    return _replace_ids(
        accounts,
        pseudonymiser,
        {"account_id": IdentifierKind.ACCOUNT, "customer_id": IdentifierKind.CUSTOMER},
    )


def pseudonymise_transactions(
    transactions: ParquetBatches, pseudonymiser: TokenMaker
) -> Iterator[pd.DataFrame]:
    """Account ids replaced by their tokens, batch by batch.

    Args:
        transactions: Accepted transactions, read in batches.
        pseudonymiser: Keyed tokens.

    Returns:
        Pseudonymised transactions, one batch at a time.
    """
    ids = {"account_id": IdentifierKind.ACCOUNT}
    return (_replace_ids(batch, pseudonymiser, ids) for batch in transactions.batches())


def pseudonymise_loan_applications(
    loan_applications: pd.DataFrame, pseudonymiser: TokenMaker
) -> pd.DataFrame:
    """Applicant ids replaced by their customer tokens.

    Args:
        loan_applications: Accepted loan applications.
        pseudonymiser: Keyed tokens.

    Returns:
        Pseudonymised loan applications.
    """
    return _replace_ids(
        loan_applications, pseudonymiser, {"customer_id": IdentifierKind.CUSTOMER}
    )


def publish_loan_outcomes(loan_outcomes: pd.DataFrame) -> pd.DataFrame:
    """Outcomes carry no identifier: published to the primary layer as they are.

    Args:
        loan_outcomes: Accepted loan outcomes.

    Returns:
        The same rows, now readable where the primary layer is.
    """
    return loan_outcomes


def age_bands(birth_dates: pd.Series, as_of: Any) -> pd.Series:
    """Age at ``as_of`` in bands (``18-24`` ... ``65+``); younger than 18 is ``<18``."""
    born = pd.to_datetime(birth_dates)
    reference = pd.Timestamp(as_of)
    had_birthday = (born.dt.month < reference.month) | (
        (born.dt.month == reference.month) & (born.dt.day <= reference.day)
    )
    age = reference.year - born.dt.year - (~had_birthday).astype(int)
    edges = [-1, *AGE_BANDS, 200]
    labels = ["<18"] + [f"{low}-{high - 1}" for low, high in pairwise(AGE_BANDS)]
    labels.append(f"{AGE_BANDS[-1]}+")
    bands = pd.cut(age, bins=edges, labels=labels, right=False)
    return bands.astype(_TEXT)


def postcode_areas(postcodes: pd.Series) -> pd.Series:
    """The postcode area: the leading letters of the outward code (``SW1A 1AA`` -> ``SW``)."""
    return (
        postcodes.astype(_TEXT)
        .str.upper()
        .str.extract(r"^([A-Z]{1,2})")[0]
        .astype(_TEXT)
    )


def _replace_ids(
    frame: pd.DataFrame,
    pseudonymiser: TokenMaker,
    columns: dict[str, IdentifierKind],
) -> pd.DataFrame:
    result = frame.copy()
    for column, kind in columns.items():
        result[column] = pseudonymiser.tokens(frame[column], kind)
    return result.rename(
        columns={column: column.replace("_id", "_token") for column in columns}
    )
