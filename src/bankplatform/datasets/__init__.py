"""Kedro datasets of bankplatform."""

from bankplatform.datasets.encrypted_parquet import EncryptedParquetDataset
from bankplatform.datasets.feature_store import FeatureStoreDataset
from bankplatform.datasets.pseudonymisation_key import PseudonymisationKeyDataset
from bankplatform.datasets.raw_table import RawTableDataset

__all__ = [
    "EncryptedParquetDataset",
    "FeatureStoreDataset",
    "PseudonymisationKeyDataset",
    "RawTableDataset",
]
