"""Kedro datasets of bankplatform."""

from bankplatform.datasets.classified_parquet import ClassifiedParquetDataset
from bankplatform.datasets.encrypted_parquet import EncryptedParquetDataset
from bankplatform.datasets.encrypted_partitions import EncryptedPartitionsDataset
from bankplatform.datasets.feature_store import FeatureStoreDataset
from bankplatform.datasets.pseudonymiser import PseudonymiserDataset
from bankplatform.datasets.raw_table import RawTableDataset

__all__ = [
    "ClassifiedParquetDataset",
    "EncryptedParquetDataset",
    "EncryptedPartitionsDataset",
    "FeatureStoreDataset",
    "PseudonymiserDataset",
    "RawTableDataset",
]
