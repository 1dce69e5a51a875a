"""Governance notebooks executed with papermill, checked against the pipeline's files."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest

from tests.conftest import REPO, read_encrypted

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ingested")]


def _tagged_output(notebook: Path, tag: str) -> str:
    executed = nbformat.read(notebook, as_version=4)
    cell = next(c for c in executed.cells if tag in c.metadata.get("tags", []))
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_explore_notebook_reports_what_ingestion_produced(
    ingested_workspace: Path, tmp_path: Path
) -> None:
    output = tmp_path / "01_explore_core_banking.ipynb"
    papermill.execute_notebook(
        REPO / "notebooks" / "01_explore_core_banking.ipynb",
        output,
        parameters={"env": "test", "project_dir": str(ingested_workspace)},
        cwd=str(ingested_workspace),
        kernel_name="python3",
        progress_bar=False,
    )
    summary = json.loads(_tagged_output(output, "summary"))
    report = json.loads(
        (ingested_workspace / "data/08_reporting/ingestion_report.json").read_text()
    )
    assert summary["env"] == "test"
    assert summary["raw_rows"] == report["input_rows"]
    assert summary["quarantined_rows"] == report["quarantined_rows"]
    assert summary["accepted_rows"] == report["input_rows"] - report["quarantined_rows"]
    assert summary["top_rule"] == "orphan_foreign_key"
    primary = ingested_workspace / "data" / "03_primary"
    outcomes = read_encrypted(
        primary / "loan_outcomes.parquet.enc", "loan_outcomes_primary"
    )
    applications = read_encrypted(
        primary / "loan_applications.parquet.enc", "loan_applications_primary"
    )
    joined = applications.merge(outcomes, on="application_id")
    assert summary["applications"] == len(joined)
    assert summary["default_rate"] == round(float(joined["defaulted"].mean()), 4)
    executed = nbformat.read(output, as_version=4)
    images = [
        o
        for c in executed.cells
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 3
