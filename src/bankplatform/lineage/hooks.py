"""``LineageHook``: one MLflow run per Kedro run, whatever the runner.

Everything is written by run id through ``MlflowClient`` (never MLflow's
thread-local "active run"), so ThreadRunner works; with ParallelRunner the
worker processes append their node timings to a file the main process reads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from bankplatform.lineage import provenance
from bankplatform.lineage.background import BackgroundSink
from bankplatform.lineage.fingerprint import FingerprintCache
from bankplatform.lineage.records import (
    KEDRO_RUN_ENV_VAR,
    KEDRO_RUN_TAG,
    flatten_parameters,
    input_records,
    output_feature_service_tags,
    pipeline_graph,
    read_dataset_tags,
    run_tags,
)
from bankplatform.lineage.settings import describe_sink, load_settings
from bankplatform.lineage.sinks import LineageSink, SpoolSink, open_sink
from bankplatform.manifest import load_manifest
from bankplatform.project import context_env, pipeline_names

TIMINGS_ENV_VAR = "BANKPLATFORM_LINEAGE_TIMINGS"


class LineageHook:
    """Records the lineage of each Kedro run (see ``bankplatform.lineage``)."""

    def __init__(self) -> None:
        self._context: Any = None
        self._sink: LineageSink | None = None
        self._cache: FingerprintCache | None = None
        self._catalog: Any = None
        self._root = Path()
        self._started: dict[str, float] = {}
        self._timings: dict[str, float] = {}
        self._run_started = 0.0
        self._owner_pid = 0

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Keep the context: its config loader and params feed the run record."""
        self._context = context

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Open the run and record who, what code, which parameters and which data."""
        root = Path(run_params["project_path"])
        settings, tracking_uri = load_settings(self._context.config_loader, root)
        # Nodes that log to MLflow themselves (model registration) use the same store.
        mlflow.set_tracking_uri(tracking_uri)
        env = context_env(self._context)
        sink, reason = open_sink(settings, tracking_uri, env)
        if reason is None and "ParallelRunner" not in str(run_params.get("runner")):
            # A thread must not be running when ParallelRunner forks its workers.
            fallback = (
                (lambda: SpoolSink(settings.spool_dir))
                if settings.when_unreachable == "spool"
                else None
            )
            sink = BackgroundSink(sink, fallback)
        self._run_started = time.perf_counter()
        self._owner_pid = os.getpid()
        self._started, self._timings = {}, {}
        self._cache = FingerprintCache(settings.fingerprint_cache)
        self._catalog, self._root = catalog, root
        manifest = load_manifest(root)
        found = {**provenance.describe(root), "lineage.sink": describe_sink(reason)}
        records, input_tags = input_records(pipeline.inputs(), catalog, self._cache)
        tags = {
            **run_tags(run_params, env, manifest, found),
            **output_feature_service_tags(pipeline.all_outputs(), catalog),
            **input_tags,
        }
        sink.start(manifest.model_name, "+".join(pipeline_names(run_params)), tags)
        self._sink = sink
        params = dict(self._context.params)
        sink.log_params(flatten_parameters(params))
        if records:
            sink.log_inputs(records)
        texts = {
            "lineage/parameters.json": json.dumps(params, indent=2, default=str),
            "lineage/pipeline_graph.json": pipeline_graph(pipeline),
        }
        if "env.lock_sha256" in found:
            texts["lineage/requirements.lock"] = (
                root / provenance.LOCK_FILE
            ).read_text()
        sink.log_texts(texts)
        timings = settings.spool_dir / f".timings-{os.getpid()}-{time.time_ns()}.jsonl"
        os.environ[TIMINGS_ENV_VAR] = str(timings)
        os.environ[KEDRO_RUN_ENV_VAR] = tags[KEDRO_RUN_TAG]

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Start the node's clock."""
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        """Stop the node's clock; a parallel worker hands its time to the main process."""
        self._record_time(node)

    @hook_impl
    def after_dataset_saved(self, node: Node) -> None:
        """A node that hands on its output in batches works while it is saved: its
        time runs until its last output is written."""
        self._record_time(node)

    def _record_time(self, node: Node) -> None:
        seconds = time.perf_counter() - self._started.get(
            node.name, time.perf_counter()
        )
        # A forked ParallelRunner worker holds a copy of this hook: only the
        # process that opened the run may keep timings in memory.
        if self._sink is not None and os.getpid() == self._owner_pid:
            self._timings[node.name] = seconds
            return
        timings = os.environ.get(TIMINGS_ENV_VAR)
        if timings:  # a worker's later line for the same node replaces the earlier
            path = Path(timings)
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(f"{path}.lock"), path.open("a") as stream:
                stream.write(json.dumps({"node": node.name, "seconds": seconds}) + "\n")

    @hook_impl
    def after_pipeline_run(self, pipeline: Pipeline) -> None:
        """Record timings and outputs, and close the run as FINISHED."""
        self._close("FINISHED", pipeline, error=None)

    @hook_impl
    def on_pipeline_error(self, error: Exception, pipeline: Pipeline) -> None:
        """Close the run as FAILED with the error, keeping everything recorded so far."""
        self._close("FAILED", pipeline, error=error)

    def _close(self, status: str, pipeline: Pipeline, error: Exception | None) -> None:
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        os.environ.pop(KEDRO_RUN_ENV_VAR, None)
        timings = {
            **self._timings,
            **_worker_timings(os.environ.pop(TIMINGS_ENV_VAR, "")),
        }
        metrics = {f"node_seconds.{name}": value for name, value in timings.items()}
        metrics["run_seconds"] = time.perf_counter() - self._run_started
        tags = {"kedro.outputs": ",".join(sorted(pipeline.all_outputs()))[:8000]}
        if error is None and self._cache is not None:
            made_then_read = pipeline.all_inputs() - pipeline.inputs()
            tags.update(
                read_dataset_tags(
                    made_then_read, self._catalog, self._cache, self._root
                )
            )
        if error is not None:
            lines = str(error).strip().splitlines()
            tags["error.type"] = type(error).__name__
            tags["error.message"] = (lines[0] if lines else "")[:8000]
        sink.finish(status, metrics, tags)
        if self._cache is not None:
            self._cache.save()


def _worker_timings(path: str) -> dict[str, float]:
    if not path or not Path(path).is_file():
        return {}
    lines = Path(path).read_text().splitlines()
    Path(path).unlink()
    Path(f"{path}.lock").unlink(missing_ok=True)
    return {entry["node"]: float(entry["seconds"]) for entry in map(json.loads, lines)}
