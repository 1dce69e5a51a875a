"""The data scientist's and reviewer's pages in headless Chromium, offline:
JupyterLab as `make lab` starts it runs a cell that loads a catalog dataset
through Kedro's IPython extension, and asks nothing of the internet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.browser import offline_page
from tests.conftest import command_env
from tests.helpers import free_port, make_server

pytestmark = [pytest.mark.integration]
TOKEN = "labtoken0123456789abcdef"  # noqa: S105 - a throw-away lab of the test
CELL = (
    "%load_ext kedro.ipython\n"
    "customers = catalog.load('customers_primary')\n"
    "print(f'customers_primary rows={len(customers)} columns={customers.shape[1]}')"
)


@pytest.fixture(scope="module")
def lab(ingested_workspace: Path) -> Iterator[str]:
    """JupyterLab started by `make lab` over the ingested workspace's notebooks."""
    notebooks = ingested_workspace / "notebooks"
    notebook = new_notebook(cells=[new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {
        "name": "bankplatform",
        "display_name": "bankplatform (.venv)",
        "language": "python",
    }
    nbformat.write(notebook, notebooks / "lab_check.ipynb")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**command_env(), "JUPYTER_TOKEN": TOKEN, "KEDRO_ENV": "test"}
    with make_server(
        "lab",
        {"LAB_DIR": str(notebooks), "LAB_PORT": str(port)},
        env,
        f"{url}/api/status?token={TOKEN}",
        ingested_workspace / "lab.log",
    ):
        yield url


def test_the_lab_wants_a_token(lab: str) -> None:
    assert httpx.get(f"{lab}/api/contents", timeout=10).status_code == 403
    assert httpx.get(f"{lab}/api/contents?token={TOKEN}", timeout=10).status_code == 200
    kernels = httpx.get(f"{lab}/api/kernelspecs?token={TOKEN}", timeout=10).json()
    assert "bankplatform" in kernels["kernelspecs"]
    # The shipped overrides: no news, no update checks.
    settings = httpx.get(
        f"{lab}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={TOKEN}",
        timeout=10,
    ).json()
    # Overrides become the schema's defaults (a user's own settings stay empty).
    defaults = {
        k: v.get("default") for k, v in settings["schema"]["properties"].items()
    }
    assert (defaults["fetchNews"], defaults["checkForUpdates"]) == ("false", False)
    assert "fetchNews" not in settings["settings"]


def test_a_cell_loads_a_catalog_dataset_in_the_lab(
    lab: str, ingested_workspace: Path, tmp_path: Path
) -> None:
    from bankplatform.datasets import EncryptedParquetDataset
    from bankplatform.security.runtime import activate
    from tests.helpers import acting_as

    with acting_as(ingested_workspace, "dana.scientist") as security:
        activate(security)
        expected = EncryptedParquetDataset(
            filepath=str(ingested_workspace / "data/03_primary/customers.parquet.enc"),
            dataset="customers_primary",
        ).load()
    with offline_page() as browser:
        page = browser.page
        page.goto(f"{lab}/lab/tree/lab_check.ipynb?token={TOKEN}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        _wait_for_idle_kernel(lab)
        page.locator(".jp-Cell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        # Kedro's IPython extension starts a session and the key service
        # decides the load: slow on a busy 2-core machine.
        outputs = page.locator(".jp-Cell .jp-OutputArea-output")
        outputs.first.wait_for(timeout=300_000)
        deadline = time.monotonic() + 300
        text = ""
        while time.monotonic() < deadline:
            text = "\n".join(outputs.all_inner_texts())
            if "customers_primary rows=" in text or "Error" in text:
                break
            page.wait_for_timeout(1_000)
        browser.screenshot("jupyterlab_catalog_cell", tmp_path)
        assert f"rows={len(expected)} columns={expected.shape[1]}" in text, text[-2000:]
        assert browser.third_party() == []
        assert not [
            u
            for u in browser.requests
            if "/lab/api/news" in u or "/lab/api/update" in u
        ]


def _wait_for_idle_kernel(lab: str, seconds: float = 180) -> None:
    """Until the notebook's kernel has started and is idle (the page shows a
    cell before its kernel is ready)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sessions = httpx.get(f"{lab}/api/sessions?token={TOKEN}", timeout=10).json()
        states = [s["kernel"]["execution_state"] for s in sessions if s.get("kernel")]
        if states and all(state == "idle" for state in states):
            return
        time.sleep(1)
    msg = f"the notebook's kernel was not idle within {seconds:.0f} s"
    raise AssertionError(msg)
