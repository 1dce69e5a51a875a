"""The monitoring pipeline: the decision log against the champion's reference,
Evidently's reports, and the policy's one action per window."""

from bankplatform.pipelines.monitoring.pipeline import create_pipeline

__all__ = ["create_pipeline"]
