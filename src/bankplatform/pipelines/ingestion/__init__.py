"""Governed ingestion of the core-banking raw extract."""

from bankplatform.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
