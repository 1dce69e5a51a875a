"""The monitoring pipeline on a governed workspace whose version 1 is the champion:
the real registry, the champion's reference as the evaluation kept it, the key
service, papermill, Evidently and MLflow.

Windows are planted in the decision log's own format (a resample of the
validated window, with or without planted drift) on days of their own, so each
verdict is known in advance; one window comes from the real scoring service
under the traffic simulator's drift knob. Covers: no drift -> none; feature
drift -> one human review (the notebook's verdict checked against the JSON
report), never twice for one window, closed by a validator only; drift in most
features -> retraining, whose version waits for approval; outcomes showing a
drop -> rollback through the lifecycle; every verdict and action audited.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.governance.evidence import cdn_references, file_sha256
from tests.conftest import run_command
from tests.helpers import (
    MODEL,
    acting_as,
    approve_and_promote,
    audit_records,
    champion_workspace,
    start_service,
)
from tests.pipelines import run_in_memory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
NOT_INPUTS = {
    "application_id",
    "customer_token",
    "event_timestamp",
    "defaulted",
    "gender",
    "age_band",
    "score",
}


@pytest.fixture(scope="module")
def workspace(
    governed_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The governed workspace with version 1 approved and promoted to champion."""
    return champion_workspace(governed_workspace, tmp_path_factory.mktemp("monitor"))


def _reference(root: Path, version: int) -> pd.DataFrame:
    """A version's reference, as the evaluation kept it (read as a data scientist)."""
    from bankplatform.datasets import EncryptedPartitionsDataset
    from bankplatform.security.runtime import activate

    with acting_as(root, "dana.scientist") as security:
        activate(security)
        partitions = EncryptedPartitionsDataset(
            path=str(root / "data/07_model_output/monitoring_references"),
            dataset="monitoring_references",
        ).load()
        return partitions[f"{MODEL}-v{version}"]()


@pytest.fixture(scope="module")
def reference(workspace: Path) -> pd.DataFrame:
    return _reference(workspace, 1)


def _resample(frame: pd.DataFrame, seed: int, rows: int = 600) -> pd.DataFrame:
    picked = np.random.default_rng(seed).choice(len(frame), size=rows, replace=True)
    return frame.iloc[picked].reset_index(drop=True)


def _plant(
    root: Path, day: str, frame: pd.DataFrame, version: int, *, audited: bool = True
) -> list[str]:
    """Write ``frame`` as the scoring service logs decisions, on ``day`` (and, unless
    ``audited`` is false, its request records with each line's hash)."""
    folder = root / "data" / "08_reporting" / "decisions"
    folder.mkdir(parents=True, exist_ok=True)
    inputs = [c for c in frame.columns if c not in NOT_INPUTS]
    ids = [f"req_{i:032x}" for i in range(len(frame))]
    lines = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        lines.append(
            orjson.dumps(
                {
                    "type": "decision",
                    "request_id": ids[i],
                    "score": row["score"],
                    "decision": "approve" if row["score"] <= 0.15 else "decline",
                    "model_version": version,
                    "time": f"{day}T10:{i // 60_000_000:02d}:00.{i:06d}+00:00",
                    "features": {c: row[c] for c in inputs},
                },
                default=str,
            )
        )
    (folder / f"decisions-{day}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    if audited:
        _audit_as_the_scoring_service(root, ids, lines)
    return ids


def _audit_as_the_scoring_service(
    root: Path, ids: list[str], lines: list[bytes]
) -> None:
    """Each line's request record with its hash, as ``bankplatform serve`` writes
    them (the scoring service's identity, started by an admin)."""
    from bankplatform.security.audit import decision_line_sha256
    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import granted_run

    with (
        acting_as(root, "local-developer") as security,
        granted_run(security, ["scoring"]),
        acting_for("scoring"),
    ):
        security.audit_log().append_many(
            [
                (
                    "scoring.request",
                    f"request:{request_id}",
                    "allowed",
                    {
                        "request_id": request_id,
                        "decision_sha256": decision_line_sha256(line),
                    },
                )
                for request_id, line in zip(ids, lines, strict=True)
            ]
        )


def _monitor(root: Path, window: str, *params: str) -> Any:
    """The monitoring pipeline on ``window``, run in this process as dana.scientist."""
    run_in_memory(
        root,
        "monitoring",
        params=[f"monitoring.window={window}", *params],
        user="dana.scientist",
    )
    return _last_action(root)


def _last_action(root: Path) -> Any:
    return json.loads(
        (root / "data/08_reporting/monitoring/last_action.json").read_text()
    )


def _report(root: Path, action: dict[str, Any]) -> dict[str, Any]:
    return json.loads((root / action["reports"] / "drift_report.json").read_text())


def _window_records(root: Path, window: str, action: str) -> list[dict[str, Any]]:
    resource = f"monitoring:{MODEL}/{window}"
    return [
        r
        for r in audit_records(root)
        if r["resource"] == resource and r["action"] == action
    ]


def _aliases(root: Path) -> dict[str, int]:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    found = client.get_registered_model(MODEL).aliases
    return {alias: int(version) for alias, version in found.items()}


# Each window's story is a module fixture: a test asks for the windows it needs, so
# no test depends on another having run before it (pytest makes each fixture once,
# in the order the asking tests name them).


@pytest.fixture(scope="module")
def quiet_window(workspace: Path, reference: pd.DataFrame) -> dict[str, Any]:
    """2026-01-05: a resample of the validated window, monitored by the command a
    scheduler runs (what ships; the other windows run in process)."""
    _plant(workspace, "2026-01-05", _resample(reference, seed=1), version=1)
    result = run_command(
        [
            *("kedro", "run", "--pipeline", "monitoring", "--env", "test"),
            *("--params", "monitoring.window=2026-01-05"),
        ],
        workspace,
        extra_env={"BANKPLATFORM_USER": "dana.scientist"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    action: dict[str, Any] = _last_action(workspace)
    return action


def test_a_window_like_the_validated_one_needs_no_action(
    workspace: Path, reference: pd.DataFrame, quiet_window: dict[str, Any]
) -> None:
    action = quiet_window
    assert (action["action"], action["status"], action["findings"]) == (
        "none",
        "nothing to do",
        {},
    )
    report = _report(workspace, action)
    assert report["decisions"] == 600
    assert report["reference_rows"] == len(reference)
    assert report["model_version"] == 1
    assert {f["column"] for f in report["features"]} == set(
        reference.columns
    ) - NOT_INPUTS
    # Below 1,000 reference rows Evidently's choice is KS / chi-squared (z for two
    # values), each feature at the family-wise 0.05 / features.
    features = len(report["features"])
    assert {f["method"] for f in report["features"]} <= {"ks", "chisquare", "z"}
    assert all(
        f["threshold"] == pytest.approx(0.05 / features) for f in report["features"]
    )
    assert not any(f["drifted"] for f in report["features"])
    assert report["prediction"]["drifted"] is False
    assert report["quality"] is None
    # The verdict is audited with the reports' hashes, as the monitoring service
    # on behalf of whoever started the run.
    (verdict,) = _window_records(workspace, "2026-01-05", "monitoring.verdict")
    assert (verdict["actor"], verdict["on_behalf_of"]) == (
        "svc-monitoring",
        "dana.scientist",
    )
    hashes = verdict["details"]["reports_sha256"]
    assert {Path(p).name for p in hashes} == {
        "drift_report.json",
        "evidently_drift.json",
        "evidently_drift.html",
    }
    for path, digest in hashes.items():
        assert file_sha256(workspace / path) == digest
    page = (workspace / action["reports"] / "evidently_drift.html").read_text()
    assert "Monitoring window 2026-01-05" in page
    assert cdn_references(page) == []
    # Logged to MLflow with the reports as artifacts.
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    run = client.get_run(verdict["details"]["mlflow_run_id"])
    assert run.data.tags["monitoring.window"] == "2026-01-05"
    assert run.data.tags["monitoring.action_status"] == "nothing to do"
    assert run.data.metrics["decisions"] == 600
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "monitoring")}
    assert "monitoring/evidently_drift.html" in logged
    assert _window_records(workspace, "2026-01-05", "monitoring.action") == []


def _review(root: Path, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command(
        ["bankplatform", "review", *args, "--env", "test"],
        root,
        extra_env={"BANKPLATFORM_USER": user},
    )


@pytest.fixture(scope="module")
def reviewed_window(
    workspace: Path, reference: pd.DataFrame, quiet_window: dict[str, Any]
) -> dict[str, Any]:
    """2026-01-06, after the quiet day (so the decision log exists): monitored
    before anything was logged that day, then with planted drift in two features (a
    review opens), then again; the review listed, refused to a data scientist,
    closed by a validator, refused a second closing, listed again."""
    drifted = _resample(reference, seed=2)
    drifted["income"] = drifted["income"] * 0.6
    drifted["card_utilisation"] = (drifted["card_utilisation"] + 0.3).clip(upper=1.5)
    seen: dict[str, Any] = {"before": _monitor(workspace, "2026-01-06")}
    _plant(workspace, "2026-01-06", drifted, version=1)
    seen["action"] = action = _monitor(workspace, "2026-01-06")
    seen["again"] = _monitor(workspace, "2026-01-06")
    review_id = action.get("review_id", "")
    seen["opened"] = [
        r["action"]
        for r in audit_records(workspace)
        if r["resource"] == f"review:{review_id}"
    ]
    seen["listed"] = _review(workspace, "dana.scientist", "list")
    seen["refused"] = _review(
        workspace, "dana.scientist", "close", review_id, "--resolution", "fine"
    )
    seen["closed"] = _review(
        workspace,
        "victor.validator",
        "close",
        review_id,
        "--resolution",
        "income and utilisation moved with the new branch campaign; model holds",
    )
    seen["closed_twice"] = _review(
        workspace, "victor.validator", "close", review_id, "--resolution", "x"
    )
    seen["listed_after"] = _review(workspace, "dana.scientist", "list")
    return seen


def test_decision_lines_the_audit_log_does_not_vouch_for_are_counted_never_used(
    workspace: Path, reference: pd.DataFrame, tmp_path: Path
) -> None:
    """The fourth finding: a day's drifted decisions (audited as the scoring
    service writes them) replaced with normal ones under the same request ids.
    Monitoring measures only lines whose hash the audit log holds: the forged ones
    are counted, none is used, and no verdict comes from them. (On a copy: the
    shared workspace's window counts stay those the notebook test expects.)"""
    from tests.conftest import copy_workspace

    root = tmp_path / "workspace"
    copy_workspace(workspace, root)
    day = "2026-01-10"
    drifted = _resample(reference, seed=5)
    drifted["income"] = drifted["income"] * 0.5
    ids = _plant(root, day, drifted, version=1)
    _plant(root, day, _resample(reference, seed=6), version=1, audited=False)
    action = _monitor(root, day)
    report = _report(root, action)
    assert (report["decisions"], report["tampered_decision_lines"]) == (0, len(ids))
    assert (action["action"], action["findings"]) == ("none", {})
    assert report["features"] == []


def test_planted_feature_drift_opens_one_review_that_only_a_validator_closes(
    workspace: Path,
    quiet_window: dict[str, Any],
    reviewed_window: dict[str, Any],
) -> None:
    seen = reviewed_window
    assert seen["before"]["action"] == "none"  # nothing logged that day yet
    action = seen["action"]
    assert set(action["findings"]) == {"feature_drift"}
    assert (action["action"], action["status"], action["notebook_error"]) == (
        "human_review",
        "taken",
        "",
    )
    report = _report(workspace, action)
    recorded = sorted(f["column"] for f in report["features"] if f["drifted"])
    assert recorded == ["card_utilisation", "income"]
    # The drift-review notebook ran on that report; its verdict is the report's.
    executed = nbformat.read(workspace / action["notebook"], as_version=4)
    cell = next(c for c in executed.cells if "summary" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert json.loads(text) == {
        "window": "2026-01-06",
        "model_version": 1,
        "action": "human_review",
        "drifted_features": recorded,
        "prediction_drifted": False,
    }
    html = (workspace / action["notebook"]).with_suffix(".html").read_text()
    assert cdn_references(html) == []

    # The same window again: a new verdict, no second action.
    again = seen["again"]
    assert (again["action"], again["status"]) == ("human_review", "already taken")
    assert len(_window_records(workspace, "2026-01-06", "monitoring.verdict")) == 3
    (taken,) = _window_records(workspace, "2026-01-06", "monitoring.action")
    assert taken["details"]["review_id"] == action["review_id"]
    assert seen["opened"] == ["review.open"]  # before anyone closed it

    listed = seen["listed"]
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(action["review_id"]) == 1
    assert "window 2026-01-06" in listed.stdout
    refused = seen["refused"]
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("Error: access denied")
    assert seen["closed"].returncode == 0, seen["closed"].stderr
    assert seen["closed_twice"].returncode == 1
    assert "no open review items" in seen["listed_after"].stdout
    close_record = [
        r
        for r in audit_records(workspace)
        if r["action"] == "review.close" and r["outcome"] == "allowed"
    ]
    assert [r["actor"] for r in close_record] == ["victor.validator"]
    # The version's Annex IV pack lists the windows monitored, as its Art 72 plan.
    docs = run_command(
        ["bankplatform", "model", "docs", MODEL, "1", "--env", "test"],
        workspace,
        extra_env={"BANKPLATFORM_USER": "audrey.auditor"},
    )
    assert docs.returncode == 0, docs.stderr[-2000:]
    annex = (Path(docs.stdout.strip().rsplit(": ", 1)[1]) / "annex_iv.md").read_text()
    assert "| 2026-01-05 | 600 | none | none |" in annex
    assert "| 2026-01-06 | 600 | feature_drift | human_review |" in annex


@pytest.fixture(scope="module")
def retrained_then_rolled_back(
    workspace: Path, reference: pd.DataFrame
) -> dict[str, Any]:
    """2026-01-07: every numeric feature shifted by one standard deviation
    (retraining); version 2 approved and promoted; 2026-01-08: its decisions'
    outcomes show its ranking no longer holds (rollback)."""
    shifted = _resample(reference, seed=3)
    numeric = [
        c
        for c in shifted.columns
        if c not in NOT_INPUTS and pd.api.types.is_float_dtype(shifted[c])
    ]
    for column in numeric:
        shifted[column] = shifted[column] + shifted[column].std()
    _plant(workspace, "2026-01-07", shifted, version=1)
    seen: dict[str, Any] = {"retrain": _monitor(workspace, "2026-01-07")}
    seen["aliases_after_retrain"] = _aliases(workspace)
    # A validator approves and a risk officer promotes it, as for any version.
    approve_and_promote(workspace, 2)
    seen["aliases_after_promotion"] = _aliases(workspace)

    # Its decisions' outcomes arrive from loan servicing, and they show that its
    # ranking no longer holds (the higher the score, the fewer defaults).
    window = _resample(_reference(workspace, 2), seed=4)
    ids = _plant(workspace, "2026-01-08", window, version=2)
    outcomes = pd.DataFrame(
        {
            "request_id": ids,
            "defaulted": (window["score"] < window["score"].median()).astype("int8"),
        }
    )
    _deliver_outcomes(workspace, "2026-01-08", outcomes)
    seen["rollback"] = _monitor(workspace, "2026-01-08")
    seen["aliases_after_rollback"] = _aliases(workspace)
    return seen


def test_drift_in_most_features_retrains_then_outcomes_roll_the_new_champion_back(
    workspace: Path, retrained_then_rolled_back: dict[str, Any]
) -> None:
    seen = retrained_then_rolled_back
    action = seen["retrain"]
    assert {"feature_drift", "dataset_drift"} <= set(action["findings"])
    assert (action["action"], action["status"]) == ("retrain", "taken")
    assert (action["new_version"], action["gate_status"]) == (2, "passed")
    # The retrained version waits for a validator: nothing was promoted.
    assert seen["aliases_after_retrain"] == {"champion": 1}
    register = [
        r
        for r in audit_records(workspace)
        if r["action"] == "model.register" and r["resource"] == f"model:{MODEL}/2"
    ]
    assert [r["details"]["trainer"] for r in register] == ["dana.scientist"]
    assert seen["aliases_after_promotion"] == {"champion": 2, "previous": 1}

    action = seen["rollback"]
    assert "performance_drop" in action["findings"]
    assert (action["action"], action["status"]) == ("rollback", "taken")
    assert seen["aliases_after_rollback"] == {"champion": 1}
    quality = _report(workspace, action)["quality"]
    assert quality["labelled"] == 600
    assert quality["window_auc"] < 0.2
    assert quality["reference_auc"] > 0.7
    (rolled,) = [
        r
        for r in audit_records(workspace)
        if r["action"] == "model.rollback" and r["outcome"] == "allowed"
    ]
    assert (rolled["actor"], rolled["on_behalf_of"]) == (
        "svc-monitoring",
        "dana.scientist",
    )
    assert rolled["details"]["rolled_back_from"] == 2
    assert (workspace / action["reports"] / "evidently_quality.html").is_file()
    # Each action is in the audit log with what it did.
    (retrained,) = _window_records(workspace, "2026-01-07", "monitoring.action")
    assert (retrained["outcome"], retrained["details"]["action"]) == (
        "allowed",
        "retrain",
    )
    assert retrained["details"]["new_version"] == 2
    (rollback,) = _window_records(workspace, "2026-01-08", "monitoring.action")
    assert rollback["details"]["findings"].keys() >= {"performance_drop"}
    assert rollback["details"]["lifecycle"].startswith(
        "rolled back credit_default_pd: version 1"
    )


def _deliver_outcomes(root: Path, delivery: str, outcomes: pd.DataFrame) -> None:
    """Loan servicing delivers outcomes (as its service identity, started by a
    data engineer)."""
    from bankplatform.datasets import EncryptedPartitionsDataset
    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import activate, granted_run

    with (
        acting_as(root, "erin.engineer") as security,
        granted_run(security, ["loan_outcomes"]),
        acting_for("loan_outcomes"),
    ):
        activate(security)
        EncryptedPartitionsDataset(
            path=str(root / "data/01_raw/decision_outcomes"),
            dataset="decision_outcomes",
        ).save({delivery: outcomes})


@pytest.fixture(scope="module")
def service_window(workspace: Path, reviewed_window: dict[str, Any]) -> dict[str, Any]:
    """200 applications from the traffic simulator (drift knob 1.0) through the real
    scoring service, monitored over the interval they were sent in; after the
    planted window's review was closed, so the one it opens is the only open one."""
    service = start_service(workspace)
    try:
        began = datetime.now(UTC).replace(microsecond=0)
        sent = run_command(
            [
                "bankplatform",
                "simulate",
                "traffic",
                "--requests",
                "200",
                "--drift",
                "1.0",
                "--env",
                "test",
            ],
            workspace,
            extra_env={"BANKPLATFORM_SCORING_URL": service.url},
        )
        assert sent.returncode == 0, sent.stderr[-2000:]
        time.sleep(0.5)  # the decision log is flushed every 0.2 s
    finally:
        service.stop()
    ended = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    window = f"{began:%Y-%m-%dT%H:%M:%S}/{ended:%Y-%m-%dT%H:%M:%S}"
    action: dict[str, Any] = _monitor(
        workspace, window, "monitoring.policy.dataset_drift=human_review"
    )
    return action


def test_drifted_traffic_from_the_scoring_service_is_caught(
    workspace: Path, service_window: dict[str, Any]
) -> None:
    action = service_window
    assert action["decisions"] == 200
    assert {"feature_drift", "dataset_drift", "prediction_drift"} <= set(
        action["findings"]
    )
    assert (action["action"], action["status"]) == ("human_review", "taken")
    report = _report(workspace, action)
    # The knob selects more stressed applicants: more late fees, higher scores.
    late_fees = next(
        f for f in report["features"] if f["column"] == "late_fee_count_365d"
    )
    assert late_fees["drifted"] is True


def test_the_monitoring_and_kpi_notebooks_show_what_happened(
    workspace: Path,
    tmp_path: Path,
    quiet_window: dict[str, Any],
    reviewed_window: dict[str, Any],
    retrained_then_rolled_back: dict[str, Any],
    service_window: dict[str, Any],
) -> None:
    """After every window above, whichever tests ran before."""
    from tests.conftest import notebook_summary

    monitoring = notebook_summary("05_monitoring.ipynb", workspace, tmp_path)
    # 2026-01-05, -06 (three runs), -07, -08 and the service's interval.
    assert (monitoring["windows"], monitoring["runs"]) == (5, 7)
    assert monitoring["with_findings"] == 4
    assert monitoring["actions_taken"] == ["human_review", "retrain", "rollback"]
    assert monitoring["open_reviews"] == 1  # the service window's; -06 was closed

    lineage = notebook_summary("04_lineage_and_registry.ipynb", workspace, tmp_path)
    assert lineage["versions"] == [1, 2]
    assert lineage["champion"] == 1  # rolled back to
    assert lineage["newest_gate_status"] == "passed"
    assert lineage["last_run_pipelines"] == "monitoring"
    assert lineage["inputs_with_digests"] >= 1

    kpis = notebook_summary("06_platform_kpis.ipynb", workspace, tmp_path)
    cli = run_command(
        ["bankplatform", "kpis", "--json", "--env", "test"],
        workspace,
        extra_env={"BANKPLATFORM_USER": "audrey.auditor"},
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    figures = json.loads(cli.stdout)
    assert kpis == {
        "model_name": MODEL,
        "time_to_market_days": figures["time_to_market_days"],
        "approved_versions": 2,
        "evaluations": 2,
        "rollbacks": 1,
        "drift_incidents": 4,
        "in_production": {"retail-credit-risk-analytics": 1},
    }
    assert 0 < figures["time_to_market_days"] < 1
    assert figures["gate_failure_rate"] == {}
    refused = run_command(
        ["bankplatform", "kpis", "--env", "test"],
        workspace,
        extra_env={"BANKPLATFORM_USER": "dana.scientist"},
    )
    assert refused.returncode == 1
    assert "may not read_audit_log" in refused.stderr


def test_reports_and_evidence_render_offline_in_a_browser(
    workspace: Path, tmp_path: Path, reviewed_window: dict[str, Any]
) -> None:
    """Evidently's report, the drift review and an evidence notebook, opened in
    headless Chromium: rendered, and not one request beyond local files."""
    from tests.browser import offline_page

    folders = sorted((workspace / "data/08_reporting/monitoring/2026-01-06").iterdir())
    reviewed = next(f for f in folders if (f / "drift_review.html").is_file())
    evidence = workspace / "data/08_reporting/governance" / MODEL / "1"
    with offline_page() as browser:
        page = browser.page
        page.goto((reviewed / "evidently_drift.html").as_uri())
        page.wait_for_selector("text=Monitoring window 2026-01-06", timeout=60_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        # The score and the 10 most drifted features, each with its plot.
        assert page.locator(".js-plotly-plot").count() >= 11
        assert page.locator("td", has_text="card_utilisation").count() == 1
        browser.screenshot("evidently_drift_report", tmp_path)
        page.goto((reviewed / "drift_review.html").as_uri())
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        verdict = '"drifted_features": ["card_utilisation", "income"]'
        assert page.get_by_text(verdict).count() >= 1
        page.goto((evidence / "model_validation.html").as_uri())
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        # Every figure is drawn (decoded, not broken) and says what it shows.
        figures = page.locator('img[alt^="Figure: "]')
        assert figures.count() >= 3
        widths = figures.evaluate_all("images => images.map(i => i.naturalWidth)")
        assert min(widths) > 100
        browser.screenshot("evidence_model_validation", tmp_path)
        assert browser.third_party() == []
        assert len(browser.requests) >= 3
