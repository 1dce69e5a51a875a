"""Customer features in the Feast feature store and the point-in-time training set."""

from bankplatform.pipelines.features.pipeline import create_pipeline

__all__ = ["create_pipeline"]
