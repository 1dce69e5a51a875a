"""Data contracts of the raw extract, as pandera schemas, one per table.

Every check carries the name of the rule a rejected row is quarantined under:

| rule | meaning |
| --- | --- |
| ``missing_key`` | the primary key is empty |
| ``duplicate_key`` | two or more rows share the primary key (all are held) |
| ``missing_value`` | a required field is empty |
| ``bad_format`` | an id does not have the source system's format |
| ``impossible_date`` | on or before 1900-01-01 (births) or 1990-01-01 (events), or after the extract's as-of date |
| ``negative_amount`` | an amount or income below zero where that cannot be |
| ``non_numeric_amount`` | an amount that is not decimal text |
| ``unknown_category`` | a code outside the reference data |
| ``orphan_foreign_key`` | a reference to a row that is not (or no longer) accepted |
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import pandas as pd
import pandera.pandas as pa

from bankplatform.contracts import reference

# 1900-01-01 is the legacy systems' "no date" sentinel: never a real date here.
EARLIEST_BIRTH = pd.Timestamp("1900-01-01")
EARLIEST_EVENT = pd.Timestamp("1990-01-01")
TEXT = pd.StringDtype("pyarrow")
_DECIMAL_TEXT = r"-?\d+(\.\d+)?"
CUSTOMER_ID_PATTERN = r"C\d{8}"


@dataclass(frozen=True)
class TableContract:
    """The contract of one raw table.

    Attributes:
        table: Raw table name.
        key: Primary key column.
        foreign_key: Column that must reference an accepted parent row.
        id_pattern: Regular expression of the primary key's format.
        decimal_columns: Columns delivered as decimal text, parsed on acceptance.
    """

    table: str
    key: str
    id_pattern: str
    foreign_key: str | None = None
    decimal_columns: tuple[str, ...] = ()

    def schema(
        self, as_of: date, parent_keys: Collection[str] | None
    ) -> pa.DataFrameSchema:
        """The pandera schema for one run.

        Args:
            as_of: Extract date; later dates are impossible.
            parent_keys: Accepted keys of the parent table, if there is one.

        Returns:
            A schema whose failed checks are named by quarantine rule.
        """
        columns = {
            self.key: pa.Column(
                TEXT,
                _matches(self.id_pattern, "bad_format"),
                nullable=False,
                unique=True,
                report_duplicates="all",
            ),
            **_COLUMN_RULES[self.table](pd.Timestamp(as_of)),
        }
        if self.foreign_key is not None and parent_keys is not None:
            fk_checks = [_references(parent_keys)]
            if self.foreign_key == self.key:
                columns[self.key] = columns[self.key].set_checks(
                    [*columns[self.key].checks, *fk_checks]
                )
            else:
                columns[self.foreign_key] = pa.Column(TEXT, fk_checks, nullable=False)
        return pa.DataFrameSchema(columns, name=self.table, strict=False, coerce=False)


def _references(parent_keys: Collection[str]) -> pa.Check:
    """The value is an accepted parent key. Looked up in an index, whose hash table
    pandas builds once and keeps: a table checked batch by batch, with the same
    ``pd.Index`` of parent keys each time, does not rebuild it per batch."""
    lookup = (
        parent_keys
        if isinstance(parent_keys, pd.Index) and parent_keys.is_unique
        else pd.Index(parent_keys).unique()
    )
    return pa.Check(
        lambda s: pd.Series(lookup.get_indexer(s) >= 0, index=s.index),
        name="orphan_foreign_key",
    )


def _matches(pattern: str, rule: str) -> pa.Check:
    return pa.Check(lambda s: s.str.fullmatch(pattern), name=rule)


def _one_of(values: Collection[object]) -> pa.Check:
    allowed = list(values)
    return pa.Check(lambda s: s.isin(allowed), name="unknown_category")


def _dated(as_of: pd.Timestamp, earliest: pd.Timestamp = EARLIEST_EVENT) -> pa.Check:
    return pa.Check(
        lambda s: (pd.to_datetime(s) > earliest) & (pd.to_datetime(s) <= as_of),
        name="impossible_date",
    )


def _not_negative() -> pa.Check:
    return pa.Check(
        lambda s: pd.Series(pd.to_numeric(s, errors="coerce")).fillna(0) >= 0,
        name="negative_amount",
    )


def _decimal_text() -> pa.Check:
    return _matches(_DECIMAL_TEXT, "non_numeric_amount")


def _customer_rules(as_of: pd.Timestamp) -> dict[str, pa.Column]:
    return {
        "name": pa.Column(TEXT, nullable=False),
        "date_of_birth": pa.Column(
            checks=_dated(as_of, EARLIEST_BIRTH), nullable=False
        ),
        "national_id": pa.Column(TEXT, nullable=False),
        "email": pa.Column(TEXT, nullable=True),
        "phone": pa.Column(TEXT, nullable=True),
        "postcode": pa.Column(TEXT, nullable=False),
        "gender": pa.Column(TEXT, _one_of(reference.GENDERS), nullable=False),
        "income": pa.Column(float, _not_negative(), nullable=False),
        "employment_status": pa.Column(
            str, _one_of(reference.EMPLOYMENT_STATUSES), nullable=False
        ),
        "tenure_months": pa.Column("int32", _not_negative(), nullable=False),
    }


def _account_rules(as_of: pd.Timestamp) -> dict[str, pa.Column]:
    return {
        "product": pa.Column(TEXT, _one_of(reference.PRODUCTS), nullable=False),
        "opened_at": pa.Column(checks=_dated(as_of), nullable=False),
        "credit_limit": pa.Column(float, _not_negative(), nullable=True),
    }


def _transaction_rules(as_of: pd.Timestamp) -> dict[str, pa.Column]:
    return {
        "booked_at": pa.Column(checks=_dated(as_of), nullable=False),
        "amount": pa.Column(TEXT, _decimal_text(), nullable=False),
        "channel": pa.Column(TEXT, _one_of(reference.CHANNELS), nullable=False),
        "mcc": pa.Column(TEXT, _matches(r"\d{4}", "bad_format"), nullable=True),
        "counterparty": pa.Column(TEXT, nullable=True),
        "balance_after": pa.Column(float, nullable=True),
    }


def _application_rules(as_of: pd.Timestamp) -> dict[str, pa.Column]:
    return {
        "applied_at": pa.Column(checks=_dated(as_of), nullable=False),
        "amount": pa.Column(TEXT, [_decimal_text(), _not_negative()], nullable=False),
        "term_months": pa.Column(
            "int32", _one_of(reference.TERMS_MONTHS), nullable=False
        ),
        "purpose": pa.Column(TEXT, _one_of(reference.PURPOSES), nullable=False),
    }


def _outcome_rules(as_of: pd.Timestamp) -> dict[str, pa.Column]:
    return {
        "defaulted": pa.Column(
            "int8", _one_of(reference.DEFAULT_FLAGS), nullable=False
        ),
        "observed_at": pa.Column(checks=_dated(as_of), nullable=False),
    }


def _decision_outcome_rules(as_of: pd.Timestamp) -> dict[str, pa.Column]:
    """The loan-servicing system's export, read as text (CSV or parquet alike)."""
    return {
        "customer_id": pa.Column(
            TEXT, _matches(CUSTOMER_ID_PATTERN, "bad_format"), nullable=False
        ),
        "defaulted": pa.Column(
            TEXT,
            _one_of([str(flag) for flag in reference.DEFAULT_FLAGS]),
            nullable=False,
        ),
        "observed_at": pa.Column(TEXT, _date_text(as_of), nullable=False),
    }


def _date_text(as_of: pd.Timestamp) -> pa.Check:
    """An ISO date (or instant) after 1990 and not after ``as_of``."""

    def check(s: pd.Series) -> pd.Series:
        parsed = pd.to_datetime(s, errors="coerce", format="ISO8601", utc=True)
        day = parsed.dt.tz_localize(None).dt.normalize()
        return (day > EARLIEST_EVENT) & (day <= as_of)

    return pa.Check(check, name="impossible_date")


_COLUMN_RULES = {
    "customers": _customer_rules,
    "accounts": _account_rules,
    "transactions": _transaction_rules,
    "loan_applications": _application_rules,
    "loan_outcomes": _outcome_rules,
    "decision_outcomes": _decision_outcome_rules,
}

CONTRACTS = {
    "customers": TableContract(
        table="customers", key="customer_id", id_pattern=CUSTOMER_ID_PATTERN
    ),
    "accounts": TableContract(
        table="accounts",
        key="account_id",
        id_pattern=r"A\d{9}",
        foreign_key="customer_id",
    ),
    "transactions": TableContract(
        table="transactions",
        key="transaction_id",
        id_pattern=r"T\d{11}",
        foreign_key="account_id",
        decimal_columns=("amount",),
    ),
    "loan_applications": TableContract(
        table="loan_applications",
        key="application_id",
        id_pattern=r"L\d{9}",
        foreign_key="customer_id",
        decimal_columns=("amount",),
    ),
    "loan_outcomes": TableContract(
        table="loan_outcomes",
        key="application_id",
        id_pattern=r"L\d{9}",
        foreign_key="application_id",
    ),
    # The loan-servicing system's outcomes of scored applications: the request
    # must be a decision the audit log vouches for (`bankplatform data outcomes`).
    "decision_outcomes": TableContract(
        table="decision_outcomes",
        key="request_id",
        id_pattern=r"req_[0-9a-f]{32}",
        foreign_key="request_id",
    ),
}
