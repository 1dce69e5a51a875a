"""Evaluating the registered candidate: gates, evidence notebooks, the gate outcome."""

from bankplatform.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
