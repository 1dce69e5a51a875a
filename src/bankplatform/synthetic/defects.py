"""Defects that real core-banking extracts have, planted at a chosen rate.

Each table gets its own mix of defect kinds on disjoint rows, and the
generator counts what it planted, so tests can check that ingestion
quarantines every planted row with the right reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MISSING_KEY = "missing_key"
DUPLICATE_KEY = "duplicate_key"
IMPOSSIBLE_DATE = "impossible_date"
NEGATIVE_AMOUNT = "negative_amount"
NON_NUMERIC_AMOUNT = "non_numeric_amount"
UNKNOWN_CATEGORY = "unknown_category"
ORPHAN_FOREIGN_KEY = "orphan_foreign_key"

# Valid-looking ids that no generated row ever has: a planted orphan.
ORPHAN_IDS = {"customer_id": "C99", "account_id": "A999", "application_id": "L999"}


@dataclass(frozen=True)
class TableDefects:
    """Where each defect kind is planted in one raw table."""

    key: str
    date_column: str
    impossible_date: Any
    category_column: str
    unknown_category: Any
    foreign_key: str | None = None
    amount_column: str | None = None
    amount_is_text: bool = False
    amount_is_signed: bool = False
    non_numeric_values: tuple[str, ...] = ("N/A", "12,50 GBP", "#VALUE!")
    kinds: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        kinds = [MISSING_KEY, DUPLICATE_KEY, IMPOSSIBLE_DATE, UNKNOWN_CATEGORY]
        if self.amount_column is not None:
            if not self.amount_is_signed:
                kinds.append(NEGATIVE_AMOUNT)
            if self.amount_is_text:
                kinds.append(NON_NUMERIC_AMOUNT)
        if self.foreign_key is not None:
            kinds.append(ORPHAN_FOREIGN_KEY)
        object.__setattr__(self, "kinds", tuple(kinds))


TABLE_DEFECTS = {
    "customers": TableDefects(
        key="customer_id",
        date_column="date_of_birth",
        impossible_date=pd.Timestamp("2091-02-01").date(),
        category_column="employment_status",
        unknown_category="astronaut",
        amount_column="income",
    ),
    "accounts": TableDefects(
        key="account_id",
        date_column="opened_at",
        impossible_date=pd.Timestamp("2099-01-01").date(),
        category_column="product",
        unknown_category="crypto_wallet",
        foreign_key="customer_id",
    ),
    "transactions": TableDefects(
        key="transaction_id",
        date_column="booked_at",
        impossible_date=pd.Timestamp("2099-01-01 00:00:00"),
        category_column="channel",
        unknown_category="telex",
        foreign_key="account_id",
        amount_column="amount",
        amount_is_text=True,
        amount_is_signed=True,
    ),
    "loan_applications": TableDefects(
        key="application_id",
        date_column="applied_at",
        impossible_date=pd.Timestamp("1900-01-01 00:00:00"),
        category_column="purpose",
        unknown_category="lottery_tickets",
        foreign_key="customer_id",
        amount_column="amount",
        amount_is_text=True,
    ),
    "loan_outcomes": TableDefects(
        key="application_id",
        date_column="observed_at",
        impossible_date=pd.Timestamp("2099-01-01 00:00:00"),
        category_column="defaulted",
        unknown_category=7,
        foreign_key="application_id",
    ),
}


def plant_defects(
    rng: np.random.Generator,
    table: str,
    frame: pd.DataFrame,
    rate: float,
    orphan_seq: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Plant defects in ``rate`` of the rows of one chunk of a raw table.

    Args:
        rng: The chunk's random generator.
        table: Raw table name, a key of ``TABLE_DEFECTS``.
        frame: The clean chunk.
        rate: Share of rows to damage, split evenly over the table's kinds.
        orphan_seq: A number that makes this chunk's orphan ids unique.

    Returns:
        The damaged chunk (duplicates appended at the end) and the number of
        rows planted per kind.
    """
    spec = TABLE_DEFECTS[table]
    per_kind = round(rate * len(frame)) // len(spec.kinds)
    if per_kind == 0:
        return frame, dict.fromkeys(spec.kinds, 0)
    chosen = rng.permutation(len(frame))[: per_kind * len(spec.kinds)]
    rows = dict(zip(spec.kinds, np.split(chosen, len(spec.kinds)), strict=True))
    frame = frame.copy()
    _damage(rng, frame, spec, rows, orphan_seq)
    frame = pd.concat([frame, frame.iloc[rows[DUPLICATE_KEY]]], ignore_index=True)
    return frame, dict.fromkeys(spec.kinds, per_kind)


def _damage(
    rng: np.random.Generator,
    frame: pd.DataFrame,
    spec: TableDefects,
    rows: dict[str, np.ndarray],
    orphan_seq: int,
) -> None:
    _overwrite(frame, spec.key, rows[MISSING_KEY], None)
    _overwrite(frame, spec.date_column, rows[IMPOSSIBLE_DATE], spec.impossible_date)
    _overwrite(
        frame, spec.category_column, rows[UNKNOWN_CATEGORY], spec.unknown_category
    )
    if NEGATIVE_AMOUNT in rows and spec.amount_column is not None:
        negative = rows[NEGATIVE_AMOUNT]
        if spec.amount_is_text:
            _overwrite(frame, spec.amount_column, negative, "-5000.00")
        else:
            current = frame[spec.amount_column].to_numpy()[negative]
            _overwrite(frame, spec.amount_column, negative, -np.abs(current) - 1)
    if NON_NUMERIC_AMOUNT in rows and spec.amount_column is not None:
        bad = rows[NON_NUMERIC_AMOUNT]
        values = rng.choice(np.array(spec.non_numeric_values, dtype=object), bad.size)
        _overwrite(frame, spec.amount_column, bad, values)
    if spec.foreign_key is not None:
        orphans = rows[ORPHAN_FOREIGN_KEY]
        numbers = (orphan_seq * 10_000 + np.arange(orphans.size)) % 1_000_000
        orphan_ids = np.char.add(
            ORPHAN_IDS[spec.foreign_key], np.char.zfill(numbers.astype(str), 6)
        )
        _overwrite(frame, spec.foreign_key, orphans, orphan_ids.astype(object))


def _overwrite(frame: pd.DataFrame, column: str, rows: np.ndarray, value: Any) -> None:
    values = frame[column].to_numpy(copy=True)
    if values.dtype.kind in "US":
        values = values.astype(object)
    values[rows] = value
    frame[column] = values
