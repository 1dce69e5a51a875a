"""A data contract applied to a table too large to hold whole, one batch at a time.

One pass over the key column finds the keys that occur more than once anywhere in
the table (as 64-bit hashes: at 87M keys the chance that two different keys share
one is about 2 in 10,000, and such a pair would be held as ``duplicate_key``, never
lost); a second pass validates each batch against the contract and that list, so
every row gets the verdict it would get in one piece: the accepted rows are handed
on batch by batch, the quarantined rows (few) and the counts are kept until the
pass ends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import date
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bankplatform.contracts.quarantine import apply_contract, key_hashes
from bankplatform.contracts.rules import TableContract
from bankplatform.errors import BankplatformError

BATCH_ROWS = 500_000


class BatchedTable(Protocol):
    """A table read in batches (``bankplatform.datasets.ParquetBatches``)."""

    def batches(
        self, columns: list[str] | None = None, rows: int = ...
    ) -> Iterator[pd.DataFrame]:
        """The rows in order, some columns, ``rows`` at most per frame."""
        ...


class StreamOrderError(BankplatformError):
    """The quarantine or counts of a streamed contract were asked for before its
    accepted rows were all saved (they exist only once the pass is over)."""


class StreamedContract:
    """One table's contract over its batches: accepted rows as they come, then the
    quarantined rows and the counts.

    Args:
        contract: The table's contract.
        table: The raw table, read in batches.
        as_of: Extract date.
        parent_keys: Accepted keys of the parent table.
        rows: Rows per batch.
    """

    def __init__(
        self,
        contract: TableContract,
        table: BatchedTable,
        as_of: date,
        parent_keys: Collection[str] | None,
        rows: int = BATCH_ROWS,
    ) -> None:
        self._contract = contract
        self._table = table
        self._as_of = as_of
        self._parent_keys = None if parent_keys is None else pd.Index(parent_keys)
        self._rows = rows
        self._quarantined: list[pd.DataFrame] = []
        self._counts: dict[str, Any] = {
            "input": 0,
            "accepted": 0,
            "quarantined": 0,
            "by_rule": {},
        }
        self._done = False

    def accepted(self) -> Iterator[pd.DataFrame]:
        """The accepted rows, batch by batch (this drives the pass)."""
        repeated = repeated_keys(
            batch[self._contract.key]
            for batch in self._table.batches([self._contract.key])
        )
        first_row = 0
        for batch in self._table.batches(rows=self._rows):
            outcome = apply_contract(
                self._contract,
                batch,
                self._as_of,
                self._parent_keys,
                repeated,
                first_row,
            )
            first_row += len(batch)
            self._quarantined.append(outcome.quarantined)
            self._add(outcome.counts)
            yield outcome.accepted
        self._done = True

    def quarantined(self) -> Iterator[pd.DataFrame]:
        """The quarantined rows, once the accepted ones are all out."""
        self._require_done("quarantine")
        yield pd.concat(self._quarantined, ignore_index=True)

    def counts(self) -> ContractCounts:
        """The counts, readable once the accepted rows are all out."""
        return ContractCounts(self)

    def finished_counts(self) -> dict[str, Any]:
        """The counts of the finished pass (``by_rule`` sorted by rule)."""
        self._require_done("counts")
        return {
            **self._counts,
            "by_rule": dict(sorted(self._counts["by_rule"].items())),
        }

    def _add(self, counts: Mapping[str, Any]) -> None:
        for field in ("input", "accepted", "quarantined"):
            self._counts[field] += int(counts[field])
        by_rule = self._counts["by_rule"]
        for rule, count in counts["by_rule"].items():
            by_rule[rule] = by_rule.get(rule, 0) + int(count)

    def _require_done(self, what: str) -> None:
        if not self._done:
            msg = (
                f"{self._contract.table}: the {what} of a streamed contract exists "
                "only once its accepted rows are all saved"
            )
            raise StreamOrderError(msg)


class ContractCounts(Mapping[str, Any]):
    """A streamed contract's counts: a plain dict once copied or pickled (Kedro's
    memory datasets copy what they hold), readable after the pass."""

    def __init__(self, contract: StreamedContract) -> None:
        self._contract = contract

    def __getitem__(self, key: str) -> Any:
        return self._contract.finished_counts()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._contract.finished_counts())

    def __len__(self) -> int:
        return len(self._contract.finished_counts())

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return self._contract.finished_counts()

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (self._contract.finished_counts(),)


def repeated_keys(keys: Iterator[pd.Series]) -> np.ndarray:
    """The sorted hashes of the keys that occur more than once across all batches."""
    hashes = np.concatenate(
        [key_hashes(batch.dropna()) for batch in keys] or [np.empty(0, "uint64")]
    )
    hashes.sort()
    return np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
