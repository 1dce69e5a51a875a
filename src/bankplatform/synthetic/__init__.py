"""Synthetic core-banking data: a seeded, deterministic raw extract at any scale."""

from bankplatform.synthetic.config import GeneratorConfig
from bankplatform.synthetic.extract import (
    ExtractSummary,
    generate_raw_extract,
    raw_file_name,
)

__all__ = ["ExtractSummary", "GeneratorConfig", "generate_raw_extract", "raw_file_name"]
