"""A contract applied batch by batch gives every row the verdict the whole table
gives it: the same accepted rows in the same order, the same quarantine with the
same reasons and source rows, the same counts; duplicates across batches included."""

from __future__ import annotations

import copy
import pickle
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from bankplatform.contracts.quarantine import apply_contract
from bankplatform.contracts.rules import CONTRACTS
from bankplatform.contracts.streamed import StreamedContract, StreamOrderError
from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.synthetic import ExtractSummary
from tests.conftest import read_raw

pytestmark = pytest.mark.unit
AS_OF = date(2026, 12, 31)


def _raw_table(small_extract: tuple[Path, ExtractSummary], tmp_path: Path) -> Path:
    """The extract's transactions as plain parquet, with duplicates planted
    across batches: the first rows' keys again at the end."""
    folder, _ = small_extract
    raw = read_raw(folder, "transactions")
    moved = raw.iloc[[3, 10, 11]].copy()
    moved["amount"] = "1.00"
    raw = pd.concat([raw, moved], ignore_index=True)
    path = tmp_path / "transactions.parquet"
    raw.to_parquet(path, index=False)
    return path


def test_batches_get_the_verdicts_of_the_whole_table(
    small_extract: tuple[Path, ExtractSummary], tmp_path: Path
) -> None:
    folder, _ = small_extract
    path = _raw_table(small_extract, tmp_path)
    table = ParquetBatches("transactions_raw", lambda: path.open("rb"))
    raw = table.read()  # as the whole-table load reads it: Arrow-backed text
    accounts = read_raw(folder, "accounts")
    parents = pd.Index(accounts["account_id"].dropna().iloc[: len(accounts) // 2])
    contract = CONTRACTS["transactions"]
    whole = apply_contract(contract, raw, AS_OF, parents)

    streamed = StreamedContract(contract, table, AS_OF, parents, rows=7_001)
    counts = streamed.counts()
    with pytest.raises(StreamOrderError, match="only once its accepted rows"):
        dict(counts)
    accepted = list(streamed.accepted())
    assert len(accepted) == -(-len(raw) // 7_001) > 5
    pd.testing.assert_frame_equal(
        pd.concat(accepted, ignore_index=True), whole.accepted
    )
    (quarantined,) = list(streamed.quarantined())
    pd.testing.assert_frame_equal(quarantined, whole.quarantined)
    # What Kedro does with a node output: copied in memory, pickled to a worker.
    pickled = pickle.loads(pickle.dumps(counts))  # noqa: S301 - our own bytes
    assert copy.deepcopy(counts) == pickled == whole.counts
    assert type(pickled) is dict
    # The planted cross-batch duplicates: both copies of each key are held.
    keys = raw["transaction_id"].iloc[[3, 10, 11]]
    held = quarantined[quarantined["transaction_id"].isin(keys)]
    assert len(held) >= 6
    assert (
        held["_reason"].str.contains("duplicate_key(transaction_id)", regex=False).all()
    )
    assert whole.counts["by_rule"]["orphan_foreign_key"] > 0
