"""Data contracts: each rule routes a row to quarantine with its reason."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from bankplatform.contracts.quarantine import (
    REASON_COLUMN,
    SOURCE_ROW_COLUMN,
    apply_contract,
)
from bankplatform.contracts.rules import CONTRACTS
from bankplatform.errors import RawExtractError

pytestmark = pytest.mark.unit
AS_OF = date(2026, 12, 31)
TEXT = pd.StringDtype("pyarrow")


def _applications(**overrides: list[object]) -> pd.DataFrame:
    rows = {
        "application_id": ["L000000001", "L000000002", "L000000003"],
        "customer_id": ["C00000001", "C00000002", "C00000001"],
        "applied_at": pd.to_datetime(["2025-01-02", "2025-02-03", "2025-03-04"]),
        "amount": ["5000.0", "1200.5", "900"],
        "term_months": pd.array([12, 24, 36], dtype="int32"),
        "purpose": ["car", "holiday", "other"],
    }
    rows.update(overrides)
    frame = pd.DataFrame(rows)
    for column in ("application_id", "customer_id", "amount", "purpose"):
        frame[column] = frame[column].astype(TEXT)
    return frame


PARENTS = pd.Index(["C00000001", "C00000002"])


def test_clean_rows_are_accepted_and_amounts_parsed() -> None:
    outcome = apply_contract(
        CONTRACTS["loan_applications"], _applications(), AS_OF, PARENTS
    )
    assert outcome.accepted["amount"].tolist() == [5000.0, 1200.5, 900.0]
    assert outcome.quarantined.empty
    assert outcome.counts == {
        "input": 3,
        "accepted": 3,
        "quarantined": 0,
        "by_rule": {},
    }


@pytest.mark.parametrize(
    ("column", "bad_value", "reason"),
    [
        ("application_id", None, "missing_key(application_id)"),
        ("application_id", "X-1", "bad_format(application_id)"),
        ("customer_id", "C99000001", "orphan_foreign_key(customer_id)"),
        (
            "applied_at",
            pd.Timestamp("1900-01-01") - pd.Timedelta(days=1),
            "impossible_date(applied_at)",
        ),
        ("applied_at", pd.Timestamp("2099-01-01"), "impossible_date(applied_at)"),
        ("amount", "-5000.00", "negative_amount(amount)"),
        ("amount", "12,50 GBP", "non_numeric_amount(amount)"),
        ("purpose", "lottery_tickets", "unknown_category(purpose)"),
        ("term_months", 7, "unknown_category(term_months)"),
    ],
)
def test_each_rule_quarantines_the_row_with_its_reason(
    column: str, bad_value: object, reason: str
) -> None:
    frame = _applications()
    values = frame[column].astype(object).tolist()
    values[1] = bad_value
    frame[column] = pd.Series(values, dtype=frame[column].dtype)
    outcome = apply_contract(CONTRACTS["loan_applications"], frame, AS_OF, PARENTS)
    assert outcome.quarantined[REASON_COLUMN].tolist() == [reason]
    assert outcome.quarantined[SOURCE_ROW_COLUMN].tolist() == [1]
    assert outcome.accepted["application_id"].tolist() == ["L000000001", "L000000003"]
    assert outcome.counts["accepted"] + outcome.counts["quarantined"] == 3


def test_all_copies_of_a_duplicate_key_are_held() -> None:
    frame = _applications(application_id=["L000000001", "L000000001", "L000000003"])
    outcome = apply_contract(CONTRACTS["loan_applications"], frame, AS_OF, PARENTS)
    assert (
        outcome.quarantined[REASON_COLUMN].tolist()
        == ["duplicate_key(application_id)"] * 2
    )
    assert outcome.counts["by_rule"] == {"duplicate_key": 2}


def test_rows_without_key_are_missing_not_duplicates_of_each_other() -> None:
    frame = _applications(application_id=[None, None, "L000000003"])
    outcome = apply_contract(CONTRACTS["loan_applications"], frame, AS_OF, PARENTS)
    assert (
        outcome.quarantined[REASON_COLUMN].tolist()
        == ["missing_key(application_id)"] * 2
    )


def test_a_row_breaking_two_rules_lists_both() -> None:
    frame = _applications(
        amount=["5000.0", "oops", "900"], purpose=["car", "crypto", "other"]
    )
    outcome = apply_contract(CONTRACTS["loan_applications"], frame, AS_OF, PARENTS)
    assert outcome.quarantined[REASON_COLUMN].tolist() == [
        "non_numeric_amount(amount); unknown_category(purpose)"
    ]
    assert outcome.counts["by_rule"] == {"non_numeric_amount": 1, "unknown_category": 1}


def test_a_missing_column_refuses_the_whole_table() -> None:
    frame = _applications().drop(columns=["purpose"])
    with pytest.raises(
        RawExtractError,
        match=r"^raw table loan_applications: column 'purpose' is missing$",
    ):
        apply_contract(CONTRACTS["loan_applications"], frame, AS_OF, PARENTS)
