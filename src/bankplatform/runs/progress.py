"""One console line per stage of a Kedro run, instead of two per node.

A stage is a registered pipeline (``ingestion``, ``features``, ``training``,
``evaluation``, ``monitoring``): each tags its nodes with its own name. When a
stage's last node completes, ``RunProgressHook`` logs the stage, its node count
and its time; when the run ends, the run. A node completes when its last output
is saved: a node that hands on a table in batches works while it is saved.
Kedro's per-node lines are at INFO in
``kedro.runner``, which ``conf/logging.yml`` keeps at WARNING
(``conf/logging-debug.yml`` shows them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from bankplatform.project import pipeline_names

_log = logging.getLogger(__name__)


@dataclass
class Stage:
    """A stage's nodes still to complete, and when its first node started."""

    name: str
    nodes: int
    left: set[str]
    started: float = 0.0


@dataclass
class RunProgress:
    """Which stage each node belongs to, and how far the run is."""

    stages: dict[str, Stage]
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    unsaved: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, pipeline: Pipeline, stage_names: Iterable[str]) -> RunProgress:
        """The stages among ``stage_names`` that tag a node of ``pipeline``."""
        stages = {}
        for name in stage_names:
            nodes = {n.name for n in pipeline.nodes if name in n.tags}
            if nodes:
                stages[name] = Stage(name, len(nodes), set(nodes))
        return cls(stages, len(pipeline.nodes))

    def node_started(self, node: Node) -> None:
        """Start the clock of the node's stages that have not started yet."""
        for stage in self._stages_of(node):
            stage.started = stage.started or time.monotonic()

    def output_saved(self, node: Node, dataset: str) -> list[str]:
        """Note a saved output; the node completes with its last one."""
        unsaved = self.unsaved.setdefault(node.name, set(node.outputs))
        unsaved.discard(dataset)
        return [] if unsaved else self.node_completed(node)

    def node_completed(self, node: Node) -> list[str]:
        """Count the node; one line per stage it completes."""
        self.done += 1
        lines = []
        for stage in self._stages_of(node):
            stage.left.discard(node.name)
            if not stage.left:
                seconds = time.monotonic() - (stage.started or self.started)
                lines.append(
                    f"{stage.name} done: {stage.nodes} node(s) in {seconds:.1f} s "
                    f"({self.done} of {self.total})"
                )
        return lines

    def summary(self, names: str, ok: bool) -> str:
        """The run's closing line."""
        seconds = time.monotonic() - self.started
        if ok:
            return f"kedro run {names}: {self.total} node(s) in {seconds:.1f} s"
        return f"kedro run {names} stopped after {self.done} of {self.total} node(s) ({seconds:.1f} s)"

    def _stages_of(self, node: Node) -> list[Stage]:
        return [s for s in self.stages.values() if node.name in s.left]


class RunProgressHook:
    """Logs a line per completed stage and one for the run."""

    def __init__(self) -> None:
        self._progress: RunProgress | None = None

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline
    ) -> None:
        """Map the run's nodes to the registered pipelines that tag them."""
        from kedro.framework.project import pipelines  # noqa: PLC0415

        registered = [name for name in pipelines if name != "__default__"]
        self._progress = RunProgress.of(pipeline, registered)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Start the node's stage clock."""
        if self._progress:
            self._progress.node_started(node)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        """A node without outputs completes when it returns."""
        if self._progress and not node.outputs:
            self._log(self._progress.node_completed(node))

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        """A line for each stage the node completes with its last output."""
        if self._progress:
            self._log(self._progress.output_saved(node, dataset_name))

    @staticmethod
    def _log(lines: list[str]) -> None:
        for line in lines:
            _log.info(line)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """The run's line."""
        self._end(run_params, ok=True)

    @hook_impl
    def on_pipeline_error(self, run_params: dict[str, Any]) -> None:
        """How far the run got (Kedro's error line says why it stopped)."""
        self._end(run_params, ok=False)

    def _end(self, run_params: dict[str, Any], ok: bool) -> None:
        if self._progress:
            line = self._progress.summary("+".join(pipeline_names(run_params)), ok)
            (_log.info if ok else _log.warning)(line)
        self._progress = None
