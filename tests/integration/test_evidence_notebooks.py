"""Executing an evidence notebook: a failing cell is reported in one line with the
cell's error, and the partial notebook and its offline HTML are still stored."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from bankplatform.governance.evidence import (
    NOTEBOOK_FOLDER,
    cdn_references,
    execute_notebook,
    file_sha256,
)

pytestmark = pytest.mark.integration


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
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "language": "python",
        "display_name": "Python 3",
    }
    nbformat.write(notebook, folder / "broken.ipynb")
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
