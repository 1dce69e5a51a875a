"""Split a raw table into accepted rows and quarantined rows with their reasons.

Nothing is dropped: every input row is either accepted or quarantined, and a
quarantined row keeps its raw values plus the rules it broke.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pa_compute

from bankplatform.contracts.rules import TableContract
from bankplatform.errors import RawExtractError

REASON_COLUMN = "_reason"
SOURCE_ROW_COLUMN = "_source_row"
_BUILTIN_RULES = {"not_nullable": "missing_value", "field_uniqueness": "duplicate_key"}


@dataclass(frozen=True)
class ContractOutcome:
    """Result of applying a contract to one raw table.

    Attributes:
        accepted: Rows that passed, decimal text parsed to numbers.
        quarantined: Raw rows that failed, with ``_reason`` and ``_source_row``.
        counts: ``input``, ``accepted``, ``quarantined`` and ``by_rule``.
    """

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    counts: dict[str, object]


def apply_contract(
    contract: TableContract,
    raw: pd.DataFrame,
    as_of: date,
    parent_keys: Collection[str] | None = None,
    repeated_keys: np.ndarray | None = None,
    first_row: int = 0,
) -> ContractOutcome:
    """Validate a raw table and route each row to accepted or quarantine.

    Args:
        contract: The table's contract.
        raw: The raw table as read from the extract (or one batch of it).
        as_of: Extract date; later dates are impossible.
        parent_keys: Accepted keys of the parent table (for the foreign key).
        repeated_keys: For a batch: the sorted ``key_hashes`` of the keys that
            occur more than once in the whole table (``duplicate_key`` across
            batches, since the schema sees only this batch).
        first_row: For a batch: the table row of its first row (``_source_row``).

    Returns:
        Accepted rows, quarantined rows and the counts.

    Raises:
        RawExtractError: The table as a whole is unusable (a column missing
            or of the wrong type), so no row can be judged.
    """
    raw = raw.reset_index(drop=True)
    failures = _failures(contract.schema(as_of, parent_keys), raw)
    _refuse_table_level(contract.table, failures)
    if repeated_keys is not None:
        failures = pd.concat(
            [failures, _repeated(raw[contract.key], repeated_keys, contract.key)],
            ignore_index=True,
        )
    labelled = _label_failures(contract, raw, failures)
    reasons = _join_reasons(labelled)
    rejected = raw.index.isin(reasons.index)
    quarantined = raw.loc[rejected].copy()
    quarantined[REASON_COLUMN] = reasons.reindex(quarantined.index).to_numpy()
    quarantined[SOURCE_ROW_COLUMN] = (
        quarantined.index.to_numpy(dtype="int64") + first_row
    )
    accepted = _parse_decimals(raw.loc[~rejected], contract.decimal_columns)
    return ContractOutcome(
        accepted=accepted.reset_index(drop=True),
        quarantined=quarantined.reset_index(drop=True),
        counts=_counts(len(raw), len(accepted), labelled),
    )


def key_hashes(keys: pd.Series) -> np.ndarray:
    """64-bit hashes of primary keys (pandas' own hash), for duplicates across batches."""
    return pd.util.hash_pandas_object(keys.astype(str), index=False).to_numpy()


def _repeated(keys: pd.Series, repeated_keys: np.ndarray, column: str) -> pd.DataFrame:
    """A ``field_uniqueness`` failure for each row whose key is repeated elsewhere."""
    present = keys.notna().to_numpy()
    hit = np.zeros(len(keys), dtype=bool)
    hit[present] = np.isin(key_hashes(keys[present]), repeated_keys)
    rows = np.flatnonzero(hit)
    return pd.DataFrame(
        {
            "column": column,
            "check": "field_uniqueness",
            "failure_case": keys.to_numpy()[rows],
            "index": rows.astype("float64"),
        }
    )


def _failures(schema: pa.DataFrameSchema, raw: pd.DataFrame) -> pd.DataFrame:
    try:
        schema.validate(raw, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pd.DataFrame(columns=["column", "check", "failure_case", "index"])


def _refuse_table_level(table: str, failures: pd.DataFrame) -> None:
    table_level = failures[failures["index"].isna()]
    if table_level.empty:
        return
    first = table_level.iloc[0]
    if first["check"] == "column_in_dataframe":
        problem = f"column {first['failure_case']!r} is missing"
    else:
        problem = f"column {first['column']!r} fails {first['check']} ({first['failure_case']})"
    msg = f"raw table {table}: {problem}"
    raise RawExtractError(msg)


def _label_failures(
    contract: TableContract, raw: pd.DataFrame, failures: pd.DataFrame
) -> pd.DataFrame:
    """One row per (input row, broken rule), with the rule and its column."""
    rule = failures["check"].map(lambda check: _BUILTIN_RULES.get(check, check))
    is_key = failures["column"] == contract.key
    rule = rule.where(~(is_key & (rule == "missing_value")), "missing_key")
    labelled = pd.DataFrame(
        {
            "index": failures["index"].astype("int64"),
            "rule": rule.astype(str),
            "reason": rule.astype(str) + "(" + failures["column"].astype(str) + ")",
        }
    )
    # A row with no key is reported as missing_key, not also as a duplicate of
    # the other rows without one.
    keyless = raw.index[raw[contract.key].isna()]
    labelled = labelled[
        ~(labelled["index"].isin(keyless) & (labelled["rule"] == "duplicate_key"))
    ]
    return labelled.drop_duplicates().sort_values(["index", "reason"])


def _join_reasons(labelled: pd.DataFrame) -> pd.Series:
    """The reasons of each rejected row, joined with ``"; "``."""
    if labelled.empty:
        return pd.Series(dtype=object)
    repeated = labelled["index"].duplicated(keep=False)
    single = labelled.loc[~repeated].set_index("index")["reason"]
    several = labelled.loc[repeated].groupby("index")["reason"].agg("; ".join)
    return pd.concat([single, several]).sort_index()


def _parse_decimals(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    if not columns:
        return frame
    parsed = {
        column: pa_compute.cast(
            pyarrow.array(frame[column]), pyarrow.float64()
        ).to_numpy(zero_copy_only=False)
        for column in columns
    }
    return frame.assign(**parsed)


def _counts(total: int, accepted: int, labelled: pd.DataFrame) -> dict[str, object]:
    # A row that breaks one rule on two columns counts once for that rule.
    rules = labelled.drop_duplicates(["index", "rule"])["rule"]
    by_rule = {
        str(rule): int(count)
        for rule, count in rules.value_counts().sort_index().items()
    }
    return {
        "input": total,
        "accepted": accepted,
        "quarantined": total - accepted,
        "by_rule": by_rule,
    }
