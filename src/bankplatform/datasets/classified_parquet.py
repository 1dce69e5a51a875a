"""``ClassifiedParquetDataset``: a plain parquet file whose loads and saves the key
service decides (the feature layer, which Feast reads as plain files)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro_datasets.pandas import ParquetDataset

from bankplatform.datasets.classification import ClassificationPreview
from bankplatform.security.runtime import guard_dataset


class ClassifiedParquetDataset(ClassificationPreview, ParquetDataset):  # type: ignore[misc]
    """Kedro's ``pandas.ParquetDataset`` with the key service's decision on every load
    and save, taken from the service's own catalog entry for ``dataset``.

    The file itself stays plain (Feast's offline store reads it directly), so
    file permissions remain its protection against someone who bypasses the
    dataset; the decision makes every use through the platform checked and audited.

    Example ``catalog.yml``:

    .. code-block:: yaml

        customer_features:
          type: bankplatform.datasets.ClassifiedParquetDataset
          filepath: data/04_feature/customer_features.parquet
          dataset: customer_features
          metadata: {zone: on_prem, classification: confidential}
    """

    def __init__(self, *, dataset: str, **kwargs: Any) -> None:
        """Create the dataset.

        Args:
            dataset: The catalog name the service decides for.
            **kwargs: ``pandas.ParquetDataset``'s arguments.
        """
        super().__init__(**kwargs)
        self._dataset = dataset

    def load(self) -> pd.DataFrame:
        """Read the table once the service allows it."""
        guard_dataset(self._dataset, "read")
        return super().load()

    def save(self, data: pd.DataFrame) -> None:
        """Write the table once the service allows it."""
        guard_dataset(self._dataset, "write")
        super().save(data)
