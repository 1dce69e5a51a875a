"""Governance notebooks executed with papermill, checked against the pipeline's files."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tests.conftest import labelled_applications, notebook_summary

pytestmark = [pytest.mark.integration]


def test_explore_notebook_reports_what_ingestion_produced(
    ingested_workspace: Path, tmp_path: Path
) -> None:
    summary = notebook_summary(
        "01_explore_core_banking.ipynb", ingested_workspace, tmp_path
    )
    output = tmp_path / "01_explore_core_banking.ipynb"
    report = json.loads(
        (ingested_workspace / "data/08_reporting/ingestion_report.json").read_text()
    )
    assert summary["env"] == "test"
    assert summary["raw_rows"] == report["input_rows"]
    assert summary["quarantined_rows"] == report["quarantined_rows"]
    assert summary["accepted_rows"] == report["input_rows"] - report["quarantined_rows"]
    assert summary["top_rule"] == "orphan_foreign_key"
    joined = labelled_applications(ingested_workspace)
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
