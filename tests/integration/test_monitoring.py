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
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.governance.evidence import cdn_references, file_sha256
from tests.conftest import run_command
from tests.helpers import (
    MODEL,
    NOT_INPUTS,
    acting_as,
    approve_and_promote,
    audit_records,
    champion_workspace,
    monitoring_reference,
    plant_decisions,
    resample,
    start_service,
)
from tests.pipelines import run_in_memory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def workspace(
    governed_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The governed workspace with version 1 approved and promoted to champion."""
    return champion_workspace(governed_workspace, tmp_path_factory.mktemp("monitor"))


@pytest.fixture(scope="module")
def reference(workspace: Path) -> pd.DataFrame:
    return monitoring_reference(workspace, 1)


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
    plant_decisions(workspace, "2026-01-05", resample(reference, seed=1), version=1)
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
    drifted = resample(reference, seed=2)
    drifted["income"] = drifted["income"] * 0.6
    drifted["card_utilisation"] = (drifted["card_utilisation"] + 0.3).clip(upper=1.5)
    seen: dict[str, Any] = {"before": _monitor(workspace, "2026-01-06")}
    plant_decisions(workspace, "2026-01-06", drifted, version=1)
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
    drifted = resample(reference, seed=5)
    drifted["income"] = drifted["income"] * 0.5
    ids = plant_decisions(root, day, drifted, version=1)
    plant_decisions(root, day, resample(reference, seed=6), version=1, audited=False)
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


def _customer_numbers(root: Path) -> dict[str, str]:
    """Customer token -> the bank's customer number, as the loan-servicing system
    knows its customers (tokens from the key service, as ingestion makes them)."""
    from bankplatform.security.client import acting_for
    from bankplatform.security.pseudonyms import IdentifierKind
    from bankplatform.security.runtime import activate, granted_run
    from tests.conftest import read_raw

    numbers = read_raw(root / "data" / "01_raw", "customers")["customer_id"]
    with (
        acting_as(root, "erin.engineer") as security,
        granted_run(security, ["ingestion"]),
        acting_for("ingestion"),
    ):
        activate(security)
        tokens = security.pseudonymiser().tokens(numbers, IdentifierKind.CUSTOMER)
    return dict(zip(tokens, numbers, strict=True))


def _import_outcomes(
    root: Path, export: Path, user: str = "erin.engineer"
) -> subprocess.CompletedProcess[str]:
    """``bankplatform data outcomes`` as ``user`` (a data engineer starts it)."""
    return run_command(
        ["bankplatform", "data", "outcomes", str(export), "--env", "test"],
        root,
        extra_env={"BANKPLATFORM_USER": user},
    )


@pytest.fixture(scope="module")
def retrained_then_rolled_back(
    workspace: Path, reference: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """2026-01-07: every numeric feature shifted by one standard deviation
    (retraining), first before any outcome arrived (a person instead: the same
    window would fit the same model), then after loan servicing's export of the
    window's outcomes was imported (retrained on the newer window); version 2
    approved and promoted; 2026-01-08: its decisions' outcomes show its ranking
    no longer holds (rollback)."""
    shifted = resample(reference, seed=3)
    numeric = [
        c
        for c in shifted.columns
        if c not in NOT_INPUTS and pd.api.types.is_float_dtype(shifted[c])
    ]
    for column in numeric:
        shifted[column] = shifted[column] + shifted[column].std()
    ids = plant_decisions(workspace, "2026-01-07", shifted, version=1)
    seen: dict[str, Any] = {"no_outcomes": _monitor(workspace, "2026-01-07")}
    closed = _review(
        workspace,
        "victor.validator",
        "close",
        seen["no_outcomes"]["review_id"],
        "--resolution",
        "outcomes requested from loan servicing; retraining follows them",
    )
    assert closed.returncode == 0, closed.stderr
    numbers = _customer_numbers(workspace)
    export = tmp_path_factory.mktemp("servicing") / "outcomes-2026-01-07.csv"
    pd.DataFrame(
        {
            "request_id": ids,
            "customer_id": [numbers[t] for t in shifted["customer_token"]],
            "defaulted": shifted["defaulted"].astype(int),
            "observed_at": "2026-02-01",
        }
    ).to_csv(export, index=False)
    seen["import"] = _import_outcomes(workspace, export)
    seen["ids"] = ids
    seen["retrain"] = _monitor(workspace, "2026-01-07")
    seen["aliases_after_retrain"] = _aliases(workspace)
    # A validator approves and a risk officer promotes it, as for any version.
    approve_and_promote(workspace, 2)
    seen["aliases_after_promotion"] = _aliases(workspace)

    # Its decisions' outcomes arrive from loan servicing, and they show that its
    # ranking no longer holds (the higher the score, the fewer defaults).
    window = resample(monitoring_reference(workspace, 2), seed=4)
    ids = plant_decisions(workspace, "2026-01-08", window, version=2)
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
    # Before any outcome arrived: retraining would refit the champion's own
    # window, so a person gets the window instead (and says so).
    first = seen["no_outcomes"]
    assert {"feature_drift", "dataset_drift"} <= set(first["findings"])
    assert (first["action"], first["status"], first["instead_of"]) == (
        "human_review",
        "taken",
        "retrain",
    )
    (opened,) = [
        r
        for r in audit_records(workspace)
        if r["action"] == "review.open"
        and r["resource"] == f"review:{first['review_id']}"
    ]
    assert opened["details"]["escalated_from"].startswith(
        "retraining not started: no loan outcome of a served decision is newer than "
        "version 1's training window (labelled up to 2025-12-"
    )
    assert seen["import"].returncode == 0, seen["import"].stderr
    assert seen["import"].stdout.startswith(
        "imported 600 of 600 outcomes from outcomes-2026-01-07.csv as decision_outcomes/outcomes-"
    )
    action = seen["retrain"]
    assert {"feature_drift", "dataset_drift"} <= set(action["findings"])
    assert (action["action"], action["status"]) == ("retrain", "taken")
    assert (action["new_version"], action["gate_status"]) == (2, "passed")
    # Version 2 learnt from the newer window: the split rolled forward to the
    # served decisions (the newest labelled, 2026-01-07), which are in its
    # out-of-time window, and it scores differently from the champion.
    report = json.loads(
        (workspace / "data/08_reporting/training_report.json").read_text()
    )
    assert report["training_window"] == {
        "newest_labelled": "2026-01-07",
        "train_until": "2025-07-31",
        "validate_from": "2025-08-01",
    }
    assert report["served_decisions"] == 600
    second = monitoring_reference(workspace, 2)
    assert set(seen["ids"]) <= set(second["application_id"])
    assert pd.to_datetime(second["event_timestamp"], utc=True).min() >= pd.Timestamp(
        "2025-08-01", tz="UTC"
    )
    first_reference = monitoring_reference(workspace, 1)
    assert "req_" not in "".join(first_reference["application_id"].astype(str))
    gates = json.loads(
        (
            workspace / f"data/08_reporting/governance/{MODEL}/2/gate_report.json"
        ).read_text()
    )
    regression = next(g for g in gates["gates"] if g["name"] == "champion_regression")
    assert regression["detail"] == "AUC drop against champion version 1"
    assert regression["value"] != 0.0  # not the same model on the same window
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
    (first_action, retrained) = _window_records(
        workspace, "2026-01-07", "monitoring.action"
    )
    assert (
        first_action["details"]["action"],
        first_action["details"]["instead_of"],
    ) == (
        "human_review",
        "retrain",
    )
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
    # 2026-01-05, -06 (three runs), -07 (before and after the outcomes), -08 and
    # the service's interval.
    assert (monitoring["windows"], monitoring["runs"]) == (5, 8)
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
        # The verdict first, as a table; no code, no parameters, no machine path.
        verdict = page.locator("table").first
        assert verdict.locator("tr", has_text="drifted_features").inner_text().split(
            "\t"
        ) == ["drifted_features", "card_utilisation, income"]
        assert page.locator(".jp-InputArea-editor").count() == 0
        assert str(workspace) not in page.content()
        page.goto((evidence / "model_validation.html").as_uri())
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        headings = page.locator("h2").all_inner_texts()
        assert headings[0].startswith("Verdict")
        assert page.locator("tr", has_text="gate_status").inner_text().split("\t") == [
            "gate_status",
            "passed",
        ]
        assert page.locator(".jp-InputArea-editor").count() == 0
        assert "import matplotlib" not in page.content()
        # Every figure is drawn (decoded, not broken) and says what it shows.
        figures = page.locator('img[alt^="Figure: "]')
        assert figures.count() >= 3
        widths = figures.evaluate_all("images => images.map(i => i.naturalWidth)")
        assert min(widths) > 100
        browser.screenshot("evidence_model_validation", tmp_path)
        assert browser.third_party() == []
        assert len(browser.requests) >= 3


def test_loan_servicing_outcomes_go_through_a_contract_and_quarantine(
    workspace: Path,
    service_window: dict[str, Any],
    reference: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """`bankplatform data outcomes` on an export of the served decisions'
    outcomes with one defect of each kind: what passes is pseudonymised into
    decision_outcomes, each other row is quarantined with its reason, the import
    is audited as loan servicing, a second delivery of the same rows adds
    nothing, and a wrong starter or file changes nothing. (On a copy: the shared
    workspace's outcomes stay those the notebook test expects.)"""
    from tests.conftest import copy_workspace, read_encrypted

    root = tmp_path / "workspace"
    copy_workspace(workspace, root)
    day = datetime.now(UTC).date().isoformat()
    served = [
        json.loads(line)
        for line in (root / f"data/08_reporting/decisions/decisions-{day}.jsonl")
        .read_text()
        .splitlines()
    ]
    served = [d for d in served if d.get("type") == "decision"][:40]
    (planted,) = plant_decisions(
        root, "2026-01-09", resample(reference, seed=7, rows=1), 1, audited=False
    )
    numbers = _customer_numbers(root)
    ids = [d["request_id"] for d in served]
    number = [numbers[d["customer_token"]] for d in served]
    other = next(n for t, n in numbers.items() if t != served[32]["customer_token"])
    rows = [
        *[(ids[i], number[i], str(i % 2), "2026-11-30") for i in range(30)],
        ("req_" + "f" * 32, number[0], "1", "2026-11-30"),  # no such decision
        (planted, number[0], "1", "2026-11-30"),  # a line nobody vouches for
        ("req_123", number[0], "0", "2026-11-30"),
        (ids[30], number[30], "2", "2026-11-30"),
        (ids[31], number[31], "0", "2099-01-01"),
        (ids[32], other, "0", "2026-11-30"),  # another customer's number
        (ids[34], number[34], "0", "2026-11-30"),
        (ids[34], number[34], "1", "2026-11-30"),
    ]
    export = tmp_path / "servicing-2026-12.csv"
    pd.DataFrame(
        rows, columns=["request_id", "customer_id", "defaulted", "observed_at"]
    ).to_csv(export, index=False)
    before = len(audit_records(root))
    done = _import_outcomes(root, export)
    assert done.returncode == 0, done.stderr
    delivery = done.stdout.split("decision_outcomes/")[1].split()[0]
    assert done.stdout.splitlines() == [
        f"imported 30 of 38 outcomes from servicing-2026-12.csv as decision_outcomes/{delivery} "
        f"(sha256 {file_sha256(export)[:12]}...)",
        # A row breaking two rules counts for each (req_123 is no decision either).
        "  8 rows quarantined (bad_format 1, customer_mismatch 1, duplicate_key 2, "
        "impossible_date 1, orphan_foreign_key 3, unknown_category 1) in "
        f"decision_outcomes_quarantine/{delivery}",
    ]
    stored = read_encrypted(
        root / f"data/01_raw/decision_outcomes/{delivery}.parquet.enc",
        "decision_outcomes",
    )
    assert list(stored.columns) == [
        "request_id",
        "customer_token",
        "defaulted",
        "observed_at",
    ]
    assert stored["request_id"].tolist() == ids[:30]
    assert stored["customer_token"].tolist() == [
        d["customer_token"] for d in served[:30]
    ]
    assert stored["defaulted"].tolist() == [i % 2 for i in range(30)]
    assert not set(number) & set(stored.astype(str).to_numpy().ravel())
    rejected = read_encrypted(
        root
        / f"data/02_intermediate/quarantine/decision_outcomes/{delivery}.parquet.enc",
        "decision_outcomes_quarantine",
    )
    reasons = dict(zip(rejected["_source_row"], rejected["_reason"], strict=True))
    assert reasons == {
        30: "orphan_foreign_key(request_id)",
        31: "orphan_foreign_key(request_id)",
        32: "bad_format(request_id); orphan_foreign_key(request_id)",
        33: "unknown_category(defaulted)",
        34: "impossible_date(observed_at)",
        35: "customer_mismatch(customer_id)",
        36: "duplicate_key(request_id)",
        37: "duplicate_key(request_id)",
    }
    (record,) = [
        r for r in audit_records(root)[before:] if r["action"] == "data.outcomes"
    ]
    assert (record["actor"], record["on_behalf_of"], record["outcome"]) == (
        "svc-loan-servicing",
        "erin.engineer",
        "allowed",
    )
    assert record["details"]["source_sha256"] == file_sha256(export)
    assert (record["details"]["accepted"], record["details"]["quarantined"]) == (30, 8)
    # The same export again: every accepted row was delivered already.
    again = _import_outcomes(root, export)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("imported 0 of 38 outcomes")
    assert "already_delivered 30" in again.stdout
    # A data scientist may not start loan servicing's import; a file without a
    # column is refused whole. One line each, nothing written.
    partitions = sorted((root / "data/01_raw/decision_outcomes").iterdir())
    refused = _import_outcomes(root, export, user="dana.scientist")
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("Error: access denied: dana.scientist")
    broken = tmp_path / "broken.csv"
    pd.DataFrame({"request_id": ids[:2], "defaulted": [0, 1]}).to_csv(
        broken, index=False
    )
    missing = _import_outcomes(root, broken)
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "Error: broken.csv lacks the column 'customer_id' (an export has request_id, "
        "customer_id, defaulted, observed_at)",
    )
    assert sorted((root / "data/01_raw/decision_outcomes").iterdir()) == partitions
