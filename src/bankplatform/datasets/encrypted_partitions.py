"""``EncryptedPartitionsDataset``: a folder of encrypted parquet files, one per
partition (a model version's reference, a delivery of loan outcomes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset

from bankplatform.datasets.classification import ClassificationPreview

_SUFFIX = ".parquet.enc"


class EncryptedPartitionsDataset(ClassificationPreview, PartitionedDataset):  # type: ignore[misc]
    """Kedro's ``PartitionedDataset`` whose partitions are always
    ``EncryptedParquetDataset`` files bound to one catalog name.

    The partition type is fixed here, not in the catalog entry, so the key
    service's check of a run's catalog (same type as the workspace's) also
    covers the files inside. Saving adds or replaces the partitions given and
    keeps the others; an empty or missing folder loads as no partitions.

    Example ``catalog.yml``:

    .. code-block:: yaml

        monitoring_references:
          type: bankplatform.datasets.EncryptedPartitionsDataset
          path: data/07_model_output/monitoring_references
          dataset: monitoring_references
          metadata: {zone: on_prem, classification: confidential}
    """

    def __init__(
        self, *, path: str, dataset: str, metadata: dict[str, Any] | None = None
    ) -> None:
        """Create the dataset.

        Args:
            path: The folder of the partitions.
            dataset: The catalog name every partition's file is bound to.
            metadata: Kedro metadata (zone, classification).
        """
        super().__init__(
            path=path,
            dataset={
                "type": "bankplatform.datasets.EncryptedParquetDataset",
                "dataset": dataset,
            },
            filename_suffix=_SUFFIX,
            metadata=metadata,
        )

    def load(self) -> dict[str, Callable[[], Any]]:
        """Partition name -> loader; empty when there is none yet."""
        if not self._list_partitions():
            return {}
        return dict(super().load())

    def _exists(self) -> bool:
        return True
