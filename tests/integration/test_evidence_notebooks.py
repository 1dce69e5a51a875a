"""Executing an evidence notebook: a failing cell is reported in one line with the
cell's error, and the partial notebook and its offline HTML are still stored."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bankplatform.governance.evidence import (
    NOTEBOOK_FOLDER,
    cdn_references,
    execute_notebook,
    file_sha256,
)

pytestmark = pytest.mark.integration


def _write(notebook: nbformat.NotebookNode, path: Path) -> None:
    """Save a notebook that runs on the project's own Python 3 kernel."""
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "language": "python",
        "display_name": "Python 3",
    }
    nbformat.write(notebook, path)


def test_a_failing_cell_is_reported_and_the_partial_notebook_kept(
    tmp_path: Path,
) -> None:
    folder = tmp_path / NOTEBOOK_FOLDER
    folder.mkdir(parents=True)
    notebook = new_notebook(
        cells=[
            new_code_cell("threshold = 0", metadata={"tags": ["parameters"]}),
            new_code_cell("print('before the failure', threshold)"),
            new_code_cell("raise ValueError('calibration table is empty')"),
            new_code_cell("print('never reached')"),
        ]
    )
    _write(notebook, folder / "broken.ipynb")
    out = tmp_path / "evidence"
    record = execute_notebook(tmp_path, "broken", out, {"threshold": 7}, 60)
    assert record.error == "In [4]: ValueError: calibration table is empty"
    executed = nbformat.read(out / "broken.ipynb", as_version=4)
    printed = "".join(
        o.get("text", "") for c in executed.cells for o in c.get("outputs", [])
    )
    assert "before the failure 7" in printed
    assert "never reached" not in printed
    html = (out / "broken.html").read_text()
    assert "calibration table is empty" in html
    assert cdn_references(html) == []
    assert record.sha256 == {
        "evidence/broken.ipynb": file_sha256(out / "broken.ipynb"),
        "evidence/broken.html": file_sha256(out / "broken.html"),
    }


def test_the_reviewers_page_shows_the_verdict_first_and_no_code_or_paths(
    tmp_path: Path,
) -> None:
    """What a validator or an examiner opens: the verdict right under the title,
    then the findings; no code cell, no parameters cell (it holds the machine's
    paths). The executed notebook keeps the code; both files are hashed."""
    folder = tmp_path / NOTEBOOK_FOLDER
    folder.mkdir(parents=True)
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# Evidence under review"),
            new_code_cell('project_dir = "."', metadata={"tags": ["parameters"]}),
            new_code_cell("print('calibration error', 0.0123)"),
            new_markdown_cell("## Summary", metadata={"tags": ["summary-heading"]}),
            new_code_cell(
                "import json\nprint(json.dumps({'gate_status': 'passed', 'failed_gates': []}))",
                metadata={"tags": ["summary"]},
            ),
        ]
    )
    _write(notebook, folder / "review.ipynb")
    out = tmp_path / "evidence"
    record = execute_notebook(
        tmp_path, "review", out, {"project_dir": str(tmp_path)}, 60
    )
    assert record.error == ""
    page = (out / "review.html").read_text()
    assert str(tmp_path) not in page
    assert "print(" not in page and "import json" not in page
    assert "jp-InputArea-editor" not in page.split("<body")[1]  # no code cell
    title = page.index("Evidence under review")
    verdict = page.index("Verdict")
    finding = page.index("calibration error 0.0123")
    assert title < verdict < finding
    assert "<td>gate_status</td>" in page and "<td>passed</td>" in page
    assert "<td>none</td>" in page  # no failed gate
    executed = (out / "review.ipynb").read_text()
    assert "print(json.dumps(" in executed and str(tmp_path) in executed
    assert set(record.sha256) == {"evidence/review.ipynb", "evidence/review.html"}
