"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

_NOT_DEFAULT = frozenset({"monitoring"})


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects; ``__default__``
        runs all but monitoring.
    """
    pipelines = find_pipelines(raise_errors=True)
    # Monitoring judges what the service decided: it runs on its own schedule.
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name not in _NOT_DEFAULT), Pipeline([])
    )
    return pipelines
