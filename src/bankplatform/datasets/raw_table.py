"""``RawTableDataset``: one table of the core-banking raw extract, read-only."""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io.core import (
    AbstractDataset,
    DatasetError,
    get_filepath_str,
    get_protocol_and_path,
)

from bankplatform.contracts.raw import RAW_SCHEMAS
from bankplatform.datasets.classification import ClassificationPreview
from bankplatform.datasets.table_batches import TEXT_TYPES, ParquetBatches
from bankplatform.security.envelope import DecryptingReader, EnvelopeError, decrypt
from bankplatform.security.kms import DataKeySource, KeyManagementError
from bankplatform.security.runtime import active_key_service, guard_dataset


class RawTableDataset(
    ClassificationPreview, AbstractDataset[pd.DataFrame, pd.DataFrame | ParquetBatches]
):
    """Loads one raw extract table from parquet, checking its layout first.

    A file that is not parquet, lacks a column or has a column of the wrong
    type fails with a one-line ``DatasetError`` naming the file, before any
    row is judged. Text columns load as Arrow-backed strings, which keeps
    the data contracts fast on tens of millions of rows. The raw extract is
    the source system's: the pipeline never writes it. With ``encrypted: true``
    the file must be envelope-encrypted for ``<table>_raw`` (what
    ``bankplatform data generate`` writes); a plain file is refused. With
    ``lazy: true`` (a local file) the layout is checked from the footer and a
    ``ParquetBatches`` is loaded: the rows are read a batch at a time.

    Example ``catalog.yml``:

    .. code-block:: yaml

        "{table}_raw":
          type: bankplatform.datasets.RawTableDataset
          filepath: data/01_raw/{table}.parquet.enc
          table: "{table}"
          encrypted: true

    Example in Python:

    .. code-block:: pycon

        >>> dataset = RawTableDataset(
        ...     filepath="data/01_raw/customers.parquet", table="customers"
        ... )
        >>> customers = dataset.load()
    """

    def __init__(
        self,
        *,
        filepath: str,
        table: str,
        encrypted: bool = False,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        key_service: DataKeySource | None = None,
        lazy: bool = False,
    ) -> None:
        """Create a dataset for one raw table.

        Args:
            filepath: Path or fsspec URL of the parquet file.
            table: Raw table name, one of ``RAW_SCHEMAS``.
            encrypted: The file is envelope-encrypted (bound to ``<table>_raw``).
            fs_args: Extra arguments for the fsspec filesystem.
            metadata: Catalog metadata (zone, classification); not used here.
            key_service: The KMS; default the active workspace's keyring.
            lazy: Load a ``ParquetBatches`` (a local file only).

        Raises:
            DatasetError: ``table`` is not a raw extract table.
        """
        if table not in RAW_SCHEMAS:
            msg = f"{filepath}: unknown raw table {table!r}; expected one of {sorted(RAW_SCHEMAS)}"
            raise DatasetError(msg)
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol, **(fs_args or {}))
        self._table = table
        self._encrypted = encrypted
        self._key_service = key_service
        self._lazy = lazy
        self.metadata = metadata
        if lazy and protocol != "file":
            msg = f"{filepath}: a lazy raw table must be a local file"
            raise DatasetError(msg)

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "protocol": self._protocol,
            "table": self._table,
            "encrypted": self._encrypted,
            "lazy": self._lazy,
        }

    def _exists(self) -> bool:
        return bool(self._fs.exists(get_filepath_str(self._filepath, self._protocol)))

    def load(self) -> pd.DataFrame | ParquetBatches:
        """Read the table after checking that its layout is the extract's.

        Returns:
            The raw rows, text columns as Arrow-backed strings (``lazy``: a
            ``ParquetBatches`` over them).

        Raises:
            DatasetError: Missing or unreadable file, or the wrong layout.
        """
        if not self._encrypted:  # an encrypted file's key request is the decision
            guard_dataset(f"{self._table}_raw", "read")
        path = get_filepath_str(self._filepath, self._protocol)
        if not self._fs.exists(path):
            msg = f"{path}: raw table {self._table} not found (run `bankplatform data generate`)"
            raise DatasetError(msg)
        if self._lazy:
            return self._batches(path)
        with self._fs.open(path, "rb") as stream:
            content = stream.read()
        if self._encrypted:
            content = self._decrypt(path, content)
        try:
            table = pq.read_table(pa.BufferReader(content))
        except (pa.ArrowInvalid, OSError) as error:
            raise DatasetError(_unreadable(path, error)) from None
        self._check_layout(path, table.schema)
        return table.to_pandas(types_mapper=TEXT_TYPES.get)

    def _batches(self, path: str) -> ParquetBatches:
        """The table read in batches, once its footer shows the extract's layout."""
        try:
            with self._open(path) as stream:
                schema = pq.ParquetFile(stream).schema_arrow
        except (EnvelopeError, KeyManagementError) as error:
            msg = f"{path}: cannot decrypt raw table {self._table}: {error}"
            raise DatasetError(msg) from None
        except (pa.ArrowInvalid, OSError) as error:
            raise DatasetError(_unreadable(path, error)) from None
        self._check_layout(path, schema)
        return ParquetBatches(
            f"{path}: raw table {self._table}", lambda: self._open(path)
        )

    def _open(self, path: str) -> io.IOBase:
        if not self._encrypted:
            return Path(path).open("rb")
        keys = self._key_service or active_key_service()
        return DecryptingReader(Path(path), f"{self._table}_raw", keys)

    def _decrypt(self, path: str, content: bytes) -> bytes:
        try:
            keys = self._key_service or active_key_service()
            return decrypt(content, f"{self._table}_raw", keys)
        except (EnvelopeError, KeyManagementError) as error:
            msg = f"{path}: cannot decrypt raw table {self._table}: {error}"
            raise DatasetError(msg) from None

    def save(self, data: pd.DataFrame) -> None:
        """Refuse: the raw extract is written by the source system only."""
        msg = f"{self._filepath}: the raw extract is read-only for pipelines"
        raise DatasetError(msg)

    def _check_layout(self, path: str, schema: pa.Schema) -> None:
        expected = RAW_SCHEMAS[self._table]
        missing = [name for name in expected.names if name not in schema.names]
        if missing:
            msg = (
                f"{path}: raw table {self._table} lacks column(s) {', '.join(missing)}"
            )
            raise DatasetError(msg)
        unexpected = [name for name in schema.names if name not in expected.names]
        if unexpected:
            msg = f"{path}: raw table {self._table} has unexpected column(s) {', '.join(unexpected)}"
            raise DatasetError(msg)
        for field in expected:
            actual = schema.field(field.name).type
            if actual != field.type:
                msg = (
                    f"{path}: column {field.name} of raw table {self._table} is {actual}, "
                    f"expected {field.type}"
                )
                raise DatasetError(msg)


def _unreadable(path: str, error: Exception) -> str:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{path}: not a readable parquet file ({reason})"
