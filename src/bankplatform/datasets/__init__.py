"""Kedro datasets of bankplatform."""

from bankplatform.datasets.raw_table import RawTableDataset

__all__ = ["RawTableDataset"]
