"""``ClassifiedParquetDataset``: a plain parquet file whose loads and saves the key
service decides (the feature layer, which Feast reads as plain files)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import DatasetError
from kedro_datasets.pandas import ParquetDataset

from bankplatform.datasets.classification import ClassificationPreview
from bankplatform.datasets.table_batches import ParquetBatches, write_frames
from bankplatform.security.runtime import guard_dataset

# Confidential feature files: the owner writes, the platform's group reads, nobody
# else (on a shared host the folder is setgid to that group, so files take it).
FEATURE_FILE_MODE = 0o640
FEATURE_FOLDER_MODE = 0o750


def restrict_feature_files(folder: Path) -> None:
    """Give ``folder`` and the files in it (one level down too) the feature layer's
    modes, where this user owns them."""
    uid = os.getuid()
    for path in [folder, *folder.glob("*"), *folder.glob("*/*")]:
        try:
            if path.is_symlink() or path.stat().st_uid != uid:
                continue
            path.chmod(FEATURE_FOLDER_MODE if path.is_dir() else FEATURE_FILE_MODE)
        except FileNotFoundError:  # a SQLite journal gone meanwhile
            continue


class ClassifiedParquetDataset(ClassificationPreview, ParquetDataset):  # type: ignore[misc]
    """Kedro's ``pandas.ParquetDataset`` with the key service's decision on every load
    and save, taken from the service's own catalog entry for ``dataset``.

    The file itself stays plain (Feast's offline store reads it directly), so
    file permissions remain its protection against someone who bypasses the
    dataset; the decision makes every use through the platform checked and audited.

    A table too large to hold whole: ``lazy: true`` loads a ``ParquetBatches``
    (read a row group at a time), and ``save`` also takes an iterable of
    DataFrames, written as they come (one row group each) to a temporary file
    renamed over the table at the end, so a failed save keeps the previous one.

    Example ``catalog.yml``:

    .. code-block:: yaml

        customer_features:
          type: bankplatform.datasets.ClassifiedParquetDataset
          filepath: data/04_feature/customer_features.parquet
          dataset: customer_features
          metadata: {zone: on_prem, classification: confidential}
    """

    def __init__(self, *, dataset: str, lazy: bool = False, **kwargs: Any) -> None:
        """Create the dataset.

        Args:
            dataset: The catalog name the service decides for.
            lazy: Load a ``ParquetBatches`` instead of a DataFrame.
            **kwargs: ``pandas.ParquetDataset``'s arguments.
        """
        super().__init__(**kwargs)
        self._dataset = dataset
        self._lazy = lazy

    def load(self) -> pd.DataFrame | ParquetBatches:
        """Read the table once the service allows it."""
        guard_dataset(self._dataset, "read")
        if not self._lazy:
            return super().load()
        path = Path(self._local_path(self._get_load_path()))
        if not path.is_file():
            msg = f"{self._dataset}: {path} not found"
            raise DatasetError(msg)
        return ParquetBatches(self._dataset, lambda: path.open("rb"))

    def save(self, data: pd.DataFrame | Iterable[pd.DataFrame]) -> None:
        """Write the table once the service allows it."""
        guard_dataset(self._dataset, "write")
        if isinstance(data, pd.DataFrame):
            super().save(data)
            self._restrict()
            return
        path = Path(self._local_path(self._get_save_path()))
        partial = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with partial.open("wb") as sink:
                write_frames(sink, data, self._save_args.get("compression", "snappy"))
                sink.flush()
                os.fsync(sink.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
        self._restrict()
        self._invalidate_cache()

    def _restrict(self) -> None:
        if self._protocol == "file":
            path = Path(self._local_path(self._get_save_path()))
            path.chmod(FEATURE_FILE_MODE)
            path.parent.chmod(FEATURE_FOLDER_MODE)

    def _local_path(self, path: Any) -> str:
        if self._protocol != "file":
            msg = f"{self._dataset}: lazy loads and batched saves need a local file"
            raise DatasetError(msg)
        return str(path)
