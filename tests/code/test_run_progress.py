"""A Kedro run reports one line per completed stage, in the order stages finish."""

from __future__ import annotations

import pytest
from kedro.pipeline import Node, Pipeline

from bankplatform.runs.progress import RunProgress

pytestmark = pytest.mark.unit


def _step(value: int) -> int:
    return value


def _pipeline() -> Pipeline:
    ingestion = Pipeline(
        [
            Node(_step, "raw_a", "primary_a", name="check_a"),
            Node(_step, "raw_b", "primary_b", name="check_b"),
        ],
        tags="ingestion",
    )
    features = Pipeline(
        [Node(_step, "primary_a", "features", name="build_features")], tags="features"
    )
    untagged = Pipeline([Node(_step, "features", "report", name="report")])
    return ingestion + features + untagged


def test_a_stage_is_reported_when_its_last_node_completes() -> None:
    pipeline = _pipeline()
    progress = RunProgress.of(pipeline, ["ingestion", "features", "monitoring"])
    assert {n: s.nodes for n, s in progress.stages.items()} == {
        "ingestion": 2,
        "features": 1,
    }
    nodes = {n.name: n for n in pipeline.nodes}
    lines: list[str] = []
    for name in ("check_a", "build_features", "check_b", "report"):
        progress.node_started(nodes[name])
        lines.extend(progress.node_completed(nodes[name]))
    assert [line.split(" node(s) in ")[0] for line in lines] == [
        "features done: 1",
        "ingestion done: 2",
    ]
    assert lines[0].endswith("(2 of 4)")
    assert lines[1].endswith("(3 of 4)")
    assert progress.summary("__default__", ok=True).startswith(
        "kedro run __default__: 4 node(s) in "
    )


def test_a_node_completes_with_its_last_saved_output() -> None:
    pipeline = Pipeline(
        [Node(lambda a: (a, a), "raw", ["accepted", "quarantine"], name="check")],
        tags="ingestion",
    )
    progress = RunProgress.of(pipeline, ["ingestion"])
    (node,) = pipeline.nodes
    progress.node_started(node)
    assert progress.output_saved(node, "accepted") == []
    assert progress.done == 0
    (line,) = progress.output_saved(node, "quarantine")
    assert line.startswith("ingestion done: 1 node(s) in ") and progress.done == 1


def test_a_stopped_run_says_how_far_it_got() -> None:
    pipeline = _pipeline()
    progress = RunProgress.of(pipeline, ["ingestion"])
    first = next(n for n in pipeline.nodes if n.name == "check_a")
    assert progress.node_completed(first) == []
    assert progress.summary("ingestion", ok=False).startswith(
        "kedro run ingestion stopped after 1 of 4 node(s) ("
    )
