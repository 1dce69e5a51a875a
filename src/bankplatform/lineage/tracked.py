"""``tracked_run``: an ad-hoc notebook experiment gets a run with the pipelines' tags."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bankplatform.lineage import provenance
from bankplatform.lineage.records import workspace_tags
from bankplatform.lineage.settings import describe_sink, load_settings
from bankplatform.lineage.sinks import LineageSink, open_sink
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader, find_project_root, resolve_env


class TrackedRun:
    """The run of a ``with tracked_run(...)`` block."""

    def __init__(self, sink: LineageSink, run_id: str) -> None:
        self._sink = sink
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Record parameters (values as text)."""
        self._sink.log_params(
            {
                k: v if isinstance(v, str) else json.dumps(v, default=str)
                for k, v in params.items()
            }
        )

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Record metrics."""
        self._sink.log_metrics({k: float(v) for k, v in metrics.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        """Record tags."""
        self._sink.set_tags(tags)


@contextmanager
def tracked_run(
    name: str, env: str | None = None, start: Path | None = None
) -> Iterator[TrackedRun]:
    """Open a tracked run for an exploration, closed FINISHED or FAILED with the block.

    .. code-block:: python

        with tracked_run("income-bands") as run:
            run.log_metrics({"auc": 0.78})

    Args:
        name: Run name.
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's.
        start: Folder to find the workspace from.

    Yields:
        The run, to log parameters, metrics and tags to.
    """
    root = find_project_root(start)
    manifest = load_manifest(root)
    chosen = resolve_env(manifest, env)
    loader = env_config_loader(root, chosen)
    settings, tracking_uri = load_settings(loader, root)
    sink, reason = open_sink(settings, tracking_uri, chosen)
    tags = {
        "kedro.env": chosen,
        "run.kind": "exploration",
        **workspace_tags(manifest),
        **provenance.describe(root),
        "lineage.sink": describe_sink(reason),
    }
    run = TrackedRun(sink, sink.start(manifest.model_name, name, tags))
    try:
        yield run
    except BaseException as error:
        failure = {
            "error.type": type(error).__name__,
            "error.message": str(error)[:8000],
        }
        sink.finish("FAILED", {}, failure)
        raise
    sink.finish("FINISHED", {}, {})
