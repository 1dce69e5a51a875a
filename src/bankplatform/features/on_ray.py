"""The snapshots step as Ray Data tasks, over the same encrypted files, for a book
too large for one machine (``features.engine: ray``).

* **read**: one task per row group of the transactions file. Each task opens
  the file itself, asking the key service for the data key as the node that handed
  it the work (``DelegatedCaller``): a worker holds a credential, never a key, and
  every opening is decided and audited by the service. Only its row groups are
  decrypted and read.
* **map**: each batch becomes compact columns (account and customer positions,
  codes) tagged with its customers' chunk, as the local path files them.
* **shuffle**: ``groupby(chunk)`` with Ray Data's sort shuffle, so the chunks come
  out in customer order; every chunk has one placeholder booking, so a chunk whose
  customers booked nothing still gets its (all-zero) snapshots.
* **map_groups**: one chunk's snapshots, computed by the same code as the local path.

The node's dataset writes the chunks as they come back, and the order is checked:
the table stays sorted by customer token and time, as the online store loader needs.
Decrypted blocks live in Ray's object store for the length of the step, like the
training set does when training runs on Ray.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
from kedro.io.core import DatasetError
from ray.data.block import BlockMetadata
from ray.data.context import ShuffleStrategy
from ray.data.datasource import Datasource, ReadTask

from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.errors import BankplatformError
from bankplatform.features.customer_features import (
    BOOK_COLUMNS,
    BOOKING_COLUMNS,
    Population,
    snapshot_months,
)
from bankplatform.security.runtime import DelegatedCaller

# Bytes a booking takes as read (its account token as text): Ray's size estimate.
_READ_BYTES_PER_ROW = 120
_CHUNK = "chunk"
# A booking's row in the file: a chunk's bookings are put back in file order, so
# ties in time resolve as on the local path and the sums add up in the same order.
_POSITION = "position"


class EncryptedTableSource(Datasource):
    """Row groups of a ``ParquetBatches`` table read by Ray tasks, each opening the
    file itself as ``caller``."""

    def __init__(
        self,
        table: ParquetBatches,
        footer: pq.FileMetaData,
        columns: list[str],
        caller: DelegatedCaller,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._table = table
        self._columns = columns
        self._caller = caller
        self._rows = [
            footer.row_group(i).num_rows for i in range(footer.num_row_groups)
        ]

    def get_name(self) -> str:
        """The name in Ray's progress and stats."""
        return f"Read({self._table.name})"

    def estimate_inmemory_data_size(self) -> int:
        """Rows times the bytes a booking takes as read."""
        return sum(self._rows) * _READ_BYTES_PER_ROW

    def task_count(self) -> int:
        """Read tasks (at least one, so Ray has a block to plan with)."""
        return max(1, len(self._rows))

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        """One task per row group (``parallelism`` is Ray's hint; the file's row
        groups decide)."""
        return [
            ReadTask(
                self._reader(group),
                BlockMetadata(
                    num_rows=rows,
                    size_bytes=rows * _READ_BYTES_PER_ROW,
                    input_files=None,
                    exec_stats=None,
                ),
            )
            for group, rows in enumerate(self._rows)
        ]

    def _reader(self, group: int) -> Callable[[], Iterator[pd.DataFrame]]:
        table, columns, caller = self._table, self._columns, self._caller
        start = sum(self._rows[:group])

        def read() -> Iterator[pd.DataFrame]:
            position = start
            with caller.acting():
                for batch in table.batches(columns, row_groups=[group]):
                    batch[_POSITION] = np.arange(position, position + len(batch))
                    position += len(batch)
                    yield batch

        return read


def customer_snapshot_chunks_on_ray(
    population: Population,
    transactions: ParquetBatches,
    caller: DelegatedCaller,
) -> Iterator[pd.DataFrame]:
    """The snapshots a chunk of customers at a time, computed by Ray Data tasks on
    the connected cluster; the same rows, in the same order, as the local path.

    Args:
        population: The customers, accounts and profile, cut into chunks.
        transactions: The transactions table (its file is opened by the tasks).
        caller: Who the tasks ask the key service as.

    Yields:
        Snapshot rows, sorted by ``customer_token`` and ``event_timestamp``.

    Raises:
        DatasetError: The table has no rows, or no statistics of ``booked_at``.
        RuntimeError: Ray returned the chunks out of customer order.
    """
    last_token: str | None = None
    with _ray_data_quiet():
        computed = _snapshots_dataset(population, transactions, caller)
        try:
            for batch in computed.iter_batches(batch_size=None, batch_format="pandas"):
                frame = cast(pd.DataFrame, batch)
                if not len(frame):
                    continue
                first_token = str(frame["customer_token"].iloc[0])
                if last_token is not None and first_token <= last_token:
                    msg = f"Ray returned the snapshot chunks out of customer order ({first_token} after {last_token})"
                    raise RuntimeError(msg)
                last_token = str(frame["customer_token"].iloc[-1])
                yield frame
        except ray.exceptions.RayTaskError as error:
            # A task's own refusal (the key service's, a damaged file) in its
            # words, as the local path would say it; Ray's traceback stays in its logs.
            # (Ray Data appends its retry advice to the message: the first line
            # is the task's own.)
            cause = error.cause
            if isinstance(cause, BankplatformError | DatasetError):
                raise type(cause)(str(cause).splitlines()[0]) from None
            raise


@contextmanager
def _ray_data_quiet() -> Iterator[None]:
    """Ray Data's progress lines and its stack traces stay in Ray's own log files
    (``/tmp/ray/session_*/logs/ray-data``), not on the run's console."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # Ray Data's own deprecated settings, read each time it copies its context.
            warnings.filterwarnings(
                "ignore", category=DeprecationWarning, module="ray.data.context"
            )
            yield
    finally:
        logger.setLevel(level)


def _snapshots_dataset(
    population: Population,
    transactions: ParquetBatches,
    caller: DelegatedCaller,
) -> ray.data.Dataset:
    """read -> file by chunk (+ one placeholder a chunk) -> sort by chunk -> snapshots."""
    footer = transactions.metadata()  # one opening (one key request) on the driver
    first, last = transactions.column_range("booked_at", footer)
    snapshots = snapshot_months(_naive(first), _naive(last))
    shared = ray.put(population)
    source = EncryptedTableSource(transactions, footer, BOOKING_COLUMNS, caller)
    # One block per read task: Ray would otherwise split each row group's output
    # into small blocks, and every block is a task of the steps after it.
    bookings = ray.data.read_datasource(source, override_num_blocks=source.task_count())
    # The dataset's own copy of Ray Data's context: sort shuffle (chunks come out
    # in key order), blocks kept in order, no progress bars on a node's stderr.
    context = bookings.context
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    compact = bookings.map_batches(
        _file_by_chunk,
        fn_kwargs={"shared": shared},
        batch_format="pandas",
        batch_size=None,
    ).union(ray.data.from_arrow(_placeholders(population.chunks)))
    computed = compact.groupby(_CHUNK).map_groups(
        _chunk_snapshots,
        fn_kwargs={"shared": shared, "snapshots": snapshots},
        batch_format="pandas",
    )
    return computed


def _file_by_chunk(batch: pd.DataFrame, shared: Any) -> pa.Table:
    """Arrow blocks throughout: Ray's sort samples refuse a mix with pandas ones."""
    population = _population(shared)
    columns, chunk, kept = population.file_bookings(batch)
    return pa.table(
        {
            **columns,
            _CHUNK: chunk.astype("int64"),
            _POSITION: batch[_POSITION].to_numpy()[kept],
        }
    )


_unpacked: dict[str, Population] = {}


def _population(shared: Any) -> Population:
    """The step's ``Population``, unpickled once per worker process (its token
    arrays take ~80 ms to unpickle at 100k customers; a worker runs many tasks)."""
    key = shared.hex()
    if key not in _unpacked:
        _unpacked.clear()  # the previous step's, if this worker served one
        _unpacked[key] = ray.get(shared)
    return _unpacked[key]


def _placeholders(chunks: int) -> pa.Table:
    """One booking per chunk on account -1, dropped before the features."""
    return pa.table(
        {
            "account": np.full(chunks, -1, dtype="int32"),
            "booked_at": np.zeros(chunks, dtype="datetime64[ns]"),
            "amount": np.zeros(chunks),
            "balance_after": np.zeros(chunks),
            "channel": np.zeros(chunks, dtype="int8"),
            "mcc": np.zeros(chunks, dtype="int8"),
            _CHUNK: np.arange(chunks, dtype="int64"),
            _POSITION: np.full(chunks, -1, dtype="int64"),
        }
    )


def _chunk_snapshots(
    group: pd.DataFrame, shared: Any, snapshots: pd.DatetimeIndex
) -> pd.DataFrame:
    population = _population(shared)
    number = int(group[_CHUNK].iloc[0])
    group = group[group["account"].to_numpy() >= 0]
    order = np.argsort(group[_POSITION].to_numpy(), kind="stable")
    columns = {name: group[name].to_numpy()[order] for name in BOOK_COLUMNS}
    columns["account"] = columns["account"].astype("int32")
    columns["channel"] = columns["channel"].astype("int8")
    columns["mcc"] = columns["mcc"].astype("int8")
    booked = population.bookings_frame(columns)
    return population.chunk_snapshots(number, booked, snapshots)


def _naive(value: Any) -> pd.Timestamp:
    """A statistic as a naive UTC timestamp (how bookings are computed on)."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp
