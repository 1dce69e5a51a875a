"""Two `kedro run --pipeline features` in one workspace, 3 s apart, as a notebook
user and a scheduler would start them: the second is refused up front (or waits,
when the env says so); nothing is half-written and lineage and audit say why."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.conftest import copy_workspace
from tests.helpers import audit_records, start_runs_together

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FEATURES = ["kedro", "run", "--pipeline", "features", "--env", "test"]


def _copy(featured_workspace: Path, target: Path) -> Path:
    copy_workspace(featured_workspace, target)
    return target


def _features_runs(root: Path) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`kedro.pipelines` = 'features'",
        order_by=["attributes.end_time ASC"],
    )
    assert isinstance(runs, pd.DataFrame)
    return runs.tail(2)


def test_a_second_run_is_refused_with_who_holds_the_workspace(
    featured_workspace: Path, tmp_path: Path
) -> None:
    root = _copy(featured_workspace, tmp_path / "workspace")
    sizes = {f.name: f.stat().st_size for f in (root / "data/05_model_input").iterdir()}
    runs = start_runs_together(root, FEATURES)
    printed = [run.communicate(timeout=600)[0] for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(codes) == [0, 1], printed
    holder, refused = (runs[codes.index(0)], printed[codes.index(1)])
    refusal = refused.strip().splitlines()[-1]
    assert re.fullmatch(
        "Error: run failed: workspace busy: this run would write application_features, "
        rf"held by local-developer \(kedro run features, pid {holder.pid} on [^)]+\) "
        r"since 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ; nothing of this run has run "
        r"\(wait for it, or set runs.lock_wait_seconds\)",
        refusal,
    ), refusal
    # The run that held the workspace left whole outputs (the same data gives the
    # same sizes) and no lock behind.
    after = {f.name: f.stat().st_size for f in (root / "data/05_model_input").iterdir()}
    assert after == sizes
    assert list((root / ".bankplatform-run/locks/runs").iterdir()) == []
    # Lineage: the refused run is a FAILED run that says why.
    lineage = _features_runs(root)
    assert sorted(lineage["status"]) == ["FAILED", "FINISHED"]
    failed = lineage[lineage["status"] == "FAILED"].iloc[0]
    assert failed["tags.error.type"] == "WorkspaceBusy"
    assert refusal.endswith(failed["tags.error.message"])
    ends = [r for r in audit_records(root) if r["action"] == "pipeline.run.end"][-2:]
    assert sorted(r["outcome"] for r in ends) == ["allowed", "failed"]
    assert [
        r["details"].get("error_type") for r in ends if r["outcome"] == "failed"
    ] == ["WorkspaceBusy"]


def test_with_a_wait_the_second_run_starts_when_the_first_ends(
    featured_workspace: Path, tmp_path: Path
) -> None:
    root = _copy(featured_workspace, tmp_path / "workspace")
    (root / "conf/test/runs.yml").write_text("runs:\n  lock_wait_seconds: 600\n")
    runs = start_runs_together(root, FEATURES)
    printed = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], printed
    lineage = _features_runs(root)
    assert list(lineage["status"]) == ["FINISHED", "FINISHED"]
    # The later run opened while the earlier one ran, and all its nodes ran after
    # the earlier one ended (the sequential runner runs one node at a time).
    earlier, later = lineage.iloc[0], lineage.iloc[1]
    node_seconds = sum(
        float(later[c])
        for c in lineage.columns
        if c.startswith("metrics.node_seconds.")
    )
    assert later["start_time"] < earlier["end_time"]
    after_earlier = (later["end_time"] - earlier["end_time"]).total_seconds()
    assert after_earlier >= 0.9 * node_seconds > 1
