"""``EncryptedParquetDataset``: a pandas table as parquet, envelope-encrypted at rest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from bankplatform.datasets.classification import ClassificationPreview
from bankplatform.datasets.table_batches import (
    TEXT_TYPES,
    ParquetBatches,
    write_frames,
)
from bankplatform.security.envelope import (
    DecryptingReader,
    EncryptingWriter,
    EnvelopeError,
    decrypt,
)
from bankplatform.security.kms import DataKeySource, KeyManagementError
from bankplatform.security.runtime import active_key_service


class EncryptedParquetDataset(
    ClassificationPreview,
    AbstractVersionedDataset[pd.DataFrame | Iterable[pd.DataFrame], Any],
):
    """Saves a DataFrame as parquet inside an encrypted envelope; loads it back.

    Each save has a fresh AES-256-GCM data key wrapped by the KMS's primary key
    (format in ``bankplatform.security.envelope``). The file is bound to
    ``dataset``, the catalog name: a file copied over another dataset's fails to
    load. A wrong key, a flipped bit, a truncated, empty or swapped file raise a
    ``DatasetError`` naming the dataset and the reason; no partial data is ever
    returned. Saves are atomic (temporary file, then rename). Files live on a
    local or mounted on-prem file system. Versioned like Kedro's own datasets.

    A table too large to hold whole: ``lazy: true`` loads a ``ParquetBatches``
    (decrypted a segment at a time, read a row group at a time), and ``save``
    also takes an iterable of DataFrames, written as they come, one row group
    each.

    Example ``catalog.yml``:

    .. code-block:: yaml

        "{table}_accepted":
          type: bankplatform.datasets.EncryptedParquetDataset
          filepath: data/02_intermediate/{table}.parquet.enc
          dataset: "{table}_accepted"
          versioned: false

    Example in Python:

    .. code-block:: pycon

        >>> dataset = EncryptedParquetDataset(
        ...     filepath="data/03_primary/customers.parquet.enc",
        ...     dataset="customers_pseudonymised",
        ... )
        >>> dataset.save(frame)
        >>> same = dataset.load()
    """

    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {}
    DEFAULT_SAVE_ARGS: ClassVar[dict[str, Any]] = {
        "compression": "zstd",
        "index": False,
    }

    def __init__(
        self,
        *,
        filepath: str,
        dataset: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        key_service: DataKeySource | None = None,
        lazy: bool = False,
    ) -> None:
        """Create an encrypted parquet dataset.

        Args:
            filepath: Local path of the encrypted file.
            dataset: The catalog name the file is bound to.
            load_args: Passed to ``pyarrow.parquet.read_table`` (e.g. ``columns``).
            save_args: Passed to ``DataFrame.to_parquet``.
            version: Kedro's load/save version (``versioned: true`` in the catalog).
            metadata: Catalog metadata (zone, classification).
            key_service: Where data keys come from; default the active
                workspace's key service, which decides each load and save from
                its own catalog classification and audits it.
            lazy: Load a ``ParquetBatches`` instead of a DataFrame.
        """
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self._lazy = lazy
        self._dataset = dataset
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self._key_service = key_service
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "dataset": self._dataset,
            "version": self._version,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "lazy": self._lazy,
        }

    def _exists(self) -> bool:
        try:
            path = self._get_load_path()
        except DatasetError:
            return False
        return Path(path).is_file()

    def load(self) -> pd.DataFrame | ParquetBatches:
        """Decrypt and read the table (``lazy``: a handle that reads it in batches).

        Raises:
            DatasetError: Missing file, or a file that does not open (the reason).
            AccessDenied: The key service refused the data key (audited there).
        """
        path = Path(self._get_load_path())
        if not path.is_file():
            msg = f"{self._dataset}: {path} not found"
            raise DatasetError(msg)
        if self._lazy:
            return ParquetBatches(
                self._dataset, EncryptedFile(path, self._dataset, self._key_service)
            )
        try:
            plain = decrypt(path.read_bytes(), self._dataset, self._keys())
        except (EnvelopeError, KeyManagementError) as error:
            msg = f"{self._dataset}: {path}: cannot decrypt: {error}"
            raise DatasetError(msg) from None
        table = pq.read_table(pa.BufferReader(plain), **self._load_args)
        return table.to_pandas(types_mapper=TEXT_TYPES.get)

    def save(self, data: pd.DataFrame | Iterable[pd.DataFrame]) -> None:
        """Write the table encrypted; the previous file stays intact if this fails.

        An iterable of DataFrames is written as it comes, one row group each, in
        the first frame's schema (a later frame that does not fit fails the save).
        """
        path = Path(self._get_save_path())
        try:
            writer = EncryptingWriter(path, self._dataset, self._keys())
        except KeyManagementError as error:
            msg = f"{self._dataset}: cannot encrypt: {error}"
            raise DatasetError(msg) from None
        try:
            if isinstance(data, pd.DataFrame):
                data.to_parquet(writer, **self._save_args)  # type: ignore[call-overload]
            else:
                write_frames(writer, data, self._save_args.get("compression", "zstd"))
        except Exception:
            writer.abort()
            raise
        writer.close()
        self._clear_version_cache()

    def _keys(self) -> DataKeySource:
        return self._key_service or active_key_service()


@dataclass(frozen=True)
class EncryptedFile:
    """Opens an encrypted table file's plaintext (a ``ParquetBatches`` opener).

    Picklable, so a Ray task can open the same file itself: the data key is asked
    for when the file is opened, from ``key_service`` or else the key service
    active in the process that opens it (a worker's, acting for the same node).
    """

    path: Path
    dataset: str
    key_service: DataKeySource | None = None

    def __call__(self) -> DecryptingReader:
        """The file's plaintext, decrypted a segment at a time."""
        keys = self.key_service or active_key_service()
        return DecryptingReader(self.path, self.dataset, keys)
