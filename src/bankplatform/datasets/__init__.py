"""Kedro datasets of bankplatform."""

from bankplatform.datasets.encrypted_parquet import EncryptedParquetDataset
from bankplatform.datasets.pseudonymisation_key import PseudonymisationKeyDataset
from bankplatform.datasets.raw_table import RawTableDataset

__all__ = ["EncryptedParquetDataset", "PseudonymisationKeyDataset", "RawTableDataset"]
