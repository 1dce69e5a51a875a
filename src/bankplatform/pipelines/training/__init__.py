"""Training the credit default model on Ray and registering the candidate."""

from bankplatform.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
