"""``ParquetBatches``: a parquet table a node reads a batch at a time; ``write_frames``
writes one a batch at a time.

What a dataset loads when the table is too large to hold whole (``lazy: true`` in
the catalog): the node asks for the columns it needs and gets DataFrames of at
most ``rows`` rows, read row group by row group, so memory holds one batch.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io.core import DatasetError

from bankplatform.security.envelope import EnvelopeError
from bankplatform.security.kms import KeyManagementError

# Text loads as Arrow-backed strings, as the raw extract does (fast contracts and joins).
TEXT_TYPES = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
}
DEFAULT_BATCH_ROWS = 1_000_000
# Opens a table file's (plaintext) bytes: a file, or a decrypting reader.
Opener = Callable[[], AbstractContextManager[io.IOBase]]


class ParquetBatches:
    """A parquet table opened anew for each pass and read in batches.

    Args:
        name: The catalog name, for error messages.
        opener: Opens the file's plaintext (a decrypting reader for an encrypted
            file); called once per pass, so each pass is its own key request.
    """

    def __init__(self, name: str, opener: Opener) -> None:
        self._name = name
        self._opener = opener

    def schema(self) -> pa.Schema:
        """The table's Arrow schema (read from the footer only)."""
        with self._opened() as table:
            return table.schema_arrow

    @property
    def name(self) -> str:
        """The catalog name."""
        return self._name

    def num_rows(self) -> int:
        """Rows in the table (read from the footer only)."""
        with self._opened() as table:
            return int(table.metadata.num_rows)

    def metadata(self) -> pq.FileMetaData:
        """The parquet footer: row groups, their sizes and statistics."""
        with self._opened() as table:
            return table.metadata

    def column_range(
        self, column: str, metadata: pq.FileMetaData | None = None
    ) -> tuple[Any, Any]:
        """The smallest and largest value of ``column``, from the row groups'
        statistics in the footer (``metadata`` if already read; nothing else is).

        Raises:
            DatasetError: No such column, no rows, or a row group without
                statistics for it.
        """
        footer = metadata if metadata is not None else self.metadata()
        if column not in footer.schema.names:
            msg = f"{self._name}: no column {column}"
            raise DatasetError(msg)
        low: Any = None
        high: Any = None
        for number in range(footer.num_row_groups):
            group = footer.row_group(number)
            if group.num_rows == 0:
                continue
            stats = next(
                group.column(i).statistics
                for i in range(group.num_columns)
                if group.column(i).path_in_schema == column
            )
            if stats is None or not stats.has_min_max:
                msg = f"{self._name}: row group {number} has no statistics of {column}"
                raise DatasetError(msg)
            low = stats.min if low is None else min(low, stats.min)
            high = stats.max if high is None else max(high, stats.max)
        if low is None:
            msg = f"{self._name}: no rows, so no range of {column}"
            raise DatasetError(msg)
        return low, high

    def batches(
        self,
        columns: list[str] | None = None,
        rows: int = DEFAULT_BATCH_ROWS,
        row_groups: list[int] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The table's rows in order (only ``row_groups``, if given), ``rows`` at
        most per DataFrame.

        Raises:
            DatasetError: A column is missing, or the file does not open or is
                damaged where it is read (named with the reason).
        """
        with self._opened() as table:
            self._require(table, columns)
            if table.metadata.num_rows == 0:  # still a frame, with the columns
                empty = table.schema_arrow.empty_table()
                yield empty.select(columns or empty.column_names).to_pandas(
                    types_mapper=TEXT_TYPES.get
                )
                return
            try:
                for batch in table.iter_batches(
                    batch_size=rows, columns=columns, row_groups=row_groups
                ):
                    yield batch.to_pandas(types_mapper=TEXT_TYPES.get)
            except (EnvelopeError, OSError) as error:
                msg = f"{self._name}: cannot read: {error}"
                raise DatasetError(msg) from None

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table (or some columns of it) as one DataFrame."""
        with self._opened() as table:
            self._require(table, columns)
            return table.read(columns=columns).to_pandas(types_mapper=TEXT_TYPES.get)

    def _opened(self) -> _OpenTable:
        return _OpenTable(self._name, self._opener)

    def _require(self, table: pq.ParquetFile, columns: list[str] | None) -> None:
        missing = sorted(set(columns or ()) - set(table.schema_arrow.names))
        if missing:
            msg = f"{self._name}: no column {', '.join(missing)}"
            raise DatasetError(msg)


class _OpenTable:
    """The file opened and its parquet footer parsed; errors name the dataset."""

    def __init__(self, name: str, opener: Opener) -> None:
        self._name = name
        self._opener = opener
        self._file: AbstractContextManager[io.IOBase] | None = None

    def __enter__(self) -> pq.ParquetFile:
        try:
            self._file = self._opener()
            stream = self._file.__enter__()
            return pq.ParquetFile(stream, pre_buffer=False)
        except (EnvelopeError, KeyManagementError, OSError, pa.ArrowException) as error:
            self._close()
            msg = f"{self._name}: cannot open: {error}"
            raise DatasetError(msg) from None

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.__exit__(None, None, None)
            self._file = None


def write_frames(sink: Any, frames: Iterable[pd.DataFrame], compression: str) -> int:
    """Write DataFrames to ``sink`` as one parquet file, a row group per frame.

    Returns:
        The rows written.

    Raises:
        DatasetError: No frame at all (a table needs its schema), or a frame whose
            columns or types differ from the first one's.
    """
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for frame in frames:
            table = pa.Table.from_pandas(
                frame,
                schema=None if writer is None else writer.schema,
                preserve_index=False,
            )
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema, compression=compression)
            writer.write_table(table)
            rows += len(frame)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as error:
        msg = f"a batch does not fit the table's schema: {error}"
        raise DatasetError(msg) from None
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise DatasetError("no batch to write: a table needs at least one")
    return rows
