"""The reviewer's MLflow UI as `make ui` starts it, in headless Chromium: opened
on the model's experiment in the model-training view, telemetry off, nothing
requested beyond loopback."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import offline_page
from tests.conftest import REPO, command_env
from tests.helpers import free_port, make_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def tracking_ui(governed_workspace: Path) -> Iterator[tuple[str, str]]:
    """`make ui` over the governed workspace's store: its URL and printed address."""
    port = free_port()
    log = governed_workspace / "mlflow-ui.log"
    store = f"sqlite:///{governed_workspace / 'mlflow.db'}"
    # `make ui` finds the model name from the workspace it runs in.
    env = {**command_env(), "BANKPLATFORM_PROJECT": str(governed_workspace)}
    env.pop("MLFLOW_DISABLE_TELEMETRY", None)
    env.pop("DO_NOT_TRACK", None)
    url = f"http://127.0.0.1:{port}"
    with make_server(
        "ui", {"UI_STORE": store, "UI_PORT": str(port)}, env, f"{url}/health", log
    ):
        printed = next(
            line.removeprefix("open ").strip()
            for line in log.read_text().splitlines()
            if line.startswith("open http")
        )
        yield url, printed


def test_the_tracking_ui_opens_on_the_model_s_runs_with_telemetry_off(
    tracking_ui: tuple[str, str], tmp_path: Path
) -> None:
    url, printed = tracking_ui
    assert printed.startswith(f"{url}/#/experiments/")
    assert printed.endswith("/runs?workflowType=machine_learning")
    telemetry = httpx.get(f"{url}/ajax-api/3.0/mlflow/ui-telemetry", timeout=10).json()
    assert telemetry["disable_ui_telemetry"] is True
    server = httpx.get(f"{url}/ajax-api/3.0/mlflow/server-info", timeout=10).json()
    assert server["features_enabled"] == {"gateway": False}
    with offline_page() as browser:
        page = browser.page
        posted: list[str] = []
        page.on(
            "request", lambda r: posted.append(r.url) if r.method == "POST" else None
        )
        page.goto(printed)
        # The default pipeline's run and the candidate's run, in the runs table.
        page.get_by_text("__default__").first.wait_for(timeout=120_000)
        page.get_by_text("candidate:credit_default_pd").first.wait_for(timeout=60_000)
        assert page.get_by_text("Information about UI telemetry").count() == 0
        browser.screenshot("mlflow_model_training_runs", tmp_path)
        assert browser.third_party() == []
        page.wait_for_timeout(3_000)  # UI events are sent in batches
        # Nothing was posted to MLflow's UI telemetry endpoint.
        assert [u for u in posted if "ui-telemetry" in u] == []


def test_the_pipeline_site_shows_layers_and_no_tour_offline(
    governed_workspace: Path, tmp_path: Path
) -> None:
    """`make viz`'s two commands in the workspace, then the site in Chromium."""
    from tests.conftest import run_command

    for command in (
        ["kedro", "viz", "build", "--include-hooks", "--include-previews"],
        ["python", "-m", "bankplatform.review.offline_site", "build"],
    ):
        done = run_command(command, governed_workspace, extra_env={"KEDRO_ENV": "test"})
        assert done.returncode == 0, done.stderr[-2000:]
    # Previews hold classifications and internal reports, never a customer token.
    site = "".join(
        f.read_text(errors="replace")
        for f in (governed_workspace / "build" / "api").rglob("*")
        if f.is_file()
    )
    assert "cus_" not in site
    previews = [
        json.loads(node["preview"])
        for f in (governed_workspace / "build" / "api" / "nodes").iterdir()
        if (node := json.loads(f.read_text())).get("preview_type") == "JSONPreview"
        and "classification" in str(node.get("preview"))
    ]
    assert {p["classification"] for p in previews} == {"pii", "confidential"}
    assert all(p["rows"].startswith("not previewed") for p in previews)
    # Reviewers filter by what a node touches: pii, governance evidence, and the
    # one step that may burst to a cloud GPU.
    main = json.loads((governed_workspace / "build" / "api" / "main").read_text())
    assert {"pii", "governance", "cloud"} <= {tag["id"] for tag in main["tags"]}
    port = free_port()
    server = subprocess.Popen(
        [
            str(REPO / ".venv/bin/python"),
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
        ],
        cwd=governed_workspace / "build",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        with offline_page() as browser:
            page = browser.page
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator(".pipeline-node").first.wait_for(timeout=60_000)
            names = page.locator(".pipeline-node").all_inner_texts()
            assert len(names) >= 40
            for key_node in ("decide_gates_node", "keep_monitoring_reference_node"):
                assert page.get_by_text(key_node).count() >= 1
            # Catalog layers are drawn as bands, in the order of the data layers.
            layers = page.locator(".pipeline-layer-name").all_inner_texts()
            assert [layer.lower() for layer in layers][:3] == [
                "raw",
                "intermediate",
                "primary",
            ]
            assert page.get_by_text("Workflow run status").count() == 0
            # A dataset's metadata panel: its zone and classification, never its rows.
            # The dataset's own node (not build_training_set_node, which also holds
            # the text): its label is exactly the name.
            page.locator(".pipeline-node").filter(
                has=page.get_by_text("training_set", exact=True)
            ).first.click()
            panel = page.locator(".pipeline-metadata").first
            panel.wait_for(timeout=30_000)
            details = panel.inner_text()
            assert '"classification":"confidential"' in details.replace(" ", "")
            assert '"zone":"on_prem"' in details.replace(" ", "")
            assert page.get_by_text("Governance").count() >= 1  # the tag filter
            browser.screenshot("kedro_viz_pipelines", tmp_path)
            assert browser.third_party() == []
    finally:
        server.terminate()
        server.wait(timeout=10)
