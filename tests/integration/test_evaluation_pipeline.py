"""`kedro run --env test` on 5k customers, evaluation included: the gate report
on the registered artefact, the outcome recorded in the registry, the MLflow run
and the audit log, the evidence notebooks and their offline HTML, the pyfunc."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.governance.evaluation import model_input
from bankplatform.governance.evidence import cdn_references, file_sha256
from bankplatform.governance.settings import GateRules
from bankplatform.lineage.records import lineage_run_of
from bankplatform.training.boosting import BoostingConfig, predict
from tests.conftest import read_encrypted

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
MODEL = "credit_default_pd"


def _audit(root: Path, action: str) -> list[dict[str, object]]:
    log = root / ".bankplatform" / "audit" / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [r for r in records if r["action"] == action]


def _executed_summary(notebook: Path) -> dict[str, object]:
    cells = json.loads(notebook.read_text())["cells"]
    cell = next(c for c in cells if "summary" in c["metadata"].get("tags", []))
    text = "".join(
        "".join(o["text"]) for o in cell["outputs"] if o["output_type"] == "stream"
    )
    summary: dict[str, object] = json.loads(text)
    return summary


def test_the_default_run_evaluates_the_registered_candidate(
    governed_workspace: Path,
) -> None:
    root = governed_workspace
    outcome = json.loads((root / "data/08_reporting/gate_outcome.json").read_text())
    gates = {g["name"]: g for g in outcome["gates"]}
    assert set(gates) == set(GateRules.model_fields)
    assert outcome["gate_status"] == "passed"
    assert all(g["passed"] for g in outcome["gates"] if g["blocking"])
    assert gates["champion_regression"]["detail"] == (
        "no champion yet: nothing to regress against"
    )
    perf = outcome["measurements"]["performance"]["out_of_time"]
    assert gates["discrimination"]["value"] == perf["auc"]
    assert 0.70 <= perf["auc"] <= 0.93
    assert perf["gini"] == pytest.approx(2 * perf["auc"] - 1)
    assert perf["rows"] > 600
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version(MODEL, "1")
    assert version.tags["gate_status"] == "passed"
    assert version.tags["gate.failed"] == "-"  # blocking gates; advisory ones apart
    advisory = [
        g["name"] for g in outcome["gates"] if not g["blocking"] and not g["passed"]
    ]
    assert version.tags["gate.advisory_failed"] == (",".join(advisory) or "-")
    manifest = root / version.tags["evidence.manifest"]
    assert version.tags["evidence.manifest_sha256"] == file_sha256(manifest)
    run = client.get_run(version.tags["run_id"])
    assert run.data.tags["gate_status"] == "passed"
    assert run.data.metrics["gate.discrimination"] == pytest.approx(perf["auc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "governance")}
    assert {
        "governance/gate_report.json",
        "governance/model_validation.html",
        "governance/data_quality.html",
        "governance/evidence_manifest.json",
    } <= artifacts


def test_the_audit_log_holds_the_maker_and_the_evidence_hashes(
    governed_workspace: Path,
) -> None:
    root = governed_workspace
    (register,) = _audit(root, "model.register")
    assert (register["actor"], register["on_behalf_of"], register["resource"]) == (
        "svc-training",
        "local-developer",
        f"model:{MODEL}/1",
    )
    assert register["details"]["trainer"] == "local-developer"
    # The training's Kedro run, recorded once at registration: its lineage run
    # (the one the card and the trace read) is the run of the training pipeline.
    kedro_run = register["details"]["kedro_run_id"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_model_version(MODEL, "1").tags["kedro_run_id"] == kedro_run
    experiment = client.get_experiment_by_name(MODEL).experiment_id
    lineage = lineage_run_of(client, experiment, kedro_run)
    assert lineage is not None
    assert lineage.data.tags["kedro.run_id"] == kedro_run
    assert "model_registration" in lineage.data.tags["kedro.outputs"].split(",")
    assert lineage.info.run_id != register["details"]["run_id"]
    (evaluate,) = _audit(root, "model.evaluate")
    assert (evaluate["actor"], evaluate["on_behalf_of"]) == (
        "svc-evaluation",
        "local-developer",
    )
    hashes = evaluate["details"]["evidence_sha256"]
    folder = f"data/08_reporting/governance/{MODEL}/1"
    assert set(hashes) == {
        f"{folder}/{name}"
        for name in (
            "gate_report.json",
            "model_validation.ipynb",
            "model_validation.html",
            "data_quality.ipynb",
            "data_quality.html",
        )
    }
    for relative, digest in hashes.items():
        assert file_sha256(root / relative) == digest
    assert evaluate["details"]["evidence_manifest_sha256"] == file_sha256(
        root / folder / "evidence_manifest.json"
    )


def test_evidence_notebooks_show_the_gate_report_and_make_no_network_request(
    governed_workspace: Path,
) -> None:
    root = governed_workspace
    folder = root / f"data/08_reporting/governance/{MODEL}/1"
    report = json.loads((folder / "gate_report.json").read_text())
    validation = _executed_summary(folder / "model_validation.ipynb")
    assert validation["gate_status"] == "passed"
    assert validation["failed_gates"] == []
    assert validation["auc_out_of_time"] == round(
        report["measurements"]["performance"]["out_of_time"]["auc"], 4
    )
    assert 0.6 <= float(validation["challenger_auc"]) <= 0.93  # type: ignore[arg-type]
    assert int(validation["grades"]) >= 3  # type: ignore[call-overload]
    ingestion = json.loads(
        (root / "data/08_reporting/ingestion_report.json").read_text()
    )
    quality = _executed_summary(folder / "data_quality.ipynb")
    assert quality["input_rows"] == ingestion["input_rows"]
    assert quality["quarantined_rows"] == ingestion["quarantined_rows"]
    for page in ("model_validation.html", "data_quality.html"):
        html = (folder / page).read_text()
        assert cdn_references(html) == []
        assert '<script src="http' not in html
        assert "data:image/png;base64" in html  # plots embedded, not linked
        # Every figure says what it shows, in the words of its section.
        assert "No description has been provided" not in html
    validation_page = (folder / "model_validation.html").read_text()
    assert re.findall(r'<img alt="Figure: ([^"]+)"', validation_page) == [
        "Discrimination and calibration (out-of-time window)",
        "Stability and contributions",
        "Outcomes analysis by application vintage",
    ]


def test_the_pyfunc_model_scores_the_signature_columns_like_the_booster(
    governed_workspace: Path,
) -> None:
    root = governed_workspace
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    schema = model.metadata.get_input_schema()
    features = schema.input_names()
    assert len(features) == 32
    rows = read_encrypted(
        root / "data/05_model_input/training_set.parquet.enc", "training_set"
    )
    scores = np.asarray(model.predict(model_input(rows, features)))
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL}/1", dst_path=str(root / "dl")
        )
    )
    design = json.loads((local / "artifacts" / "design.json").read_text())
    booster = (local / "artifacts" / "booster.ubj").read_bytes()
    config = BoostingConfig(features, design["categories"], {}, 1, 1, 1, "")
    assert np.max(np.abs(scores - predict(booster, rows, config))) <= 1e-12
    assert scores.shape == (len(rows),)
    example = json.loads((local / "serving_input_example.json").read_text())
    applicant = dict(
        zip(
            example["dataframe_split"]["columns"],
            example["dataframe_split"]["data"][0],
            strict=True,
        )
    )
    assert applicant["income"] == 25_000.0  # the synthetic applicant, not a real row
    assert not (rows["income"] == applicant["income"]).any()
    assert (
        "Failed to validate serving input example"
        not in (root / "kedro_run.log").read_text()
    )


def test_without_group_bias_the_fairness_gates_pass(governed_workspace: Path) -> None:
    outcome = json.loads(
        (governed_workspace / "data/08_reporting/gate_outcome.json").read_text()
    )
    gates = {g["name"]: g for g in outcome["gates"]}
    fairness = outcome["measurements"]["fairness"]
    assert gates["disparate_impact"]["passed"] is True
    assert gates["equal_opportunity"]["passed"] is True
    assert gates["disparate_impact"]["value"] == min(
        f["disparate_impact_ratio"] for f in fairness.values()
    )


def test_workspace_status_says_where_the_candidate_stands(
    governed_workspace: Path,
) -> None:
    from tests.conftest import run_command

    result = run_command(
        ["bankplatform", "workspace", "status", "--env", "test"], governed_workspace
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [s for s in result.stdout.splitlines() if s.startswith("evaluation:")]
    assert line == (
        f"evaluation: {MODEL} version 1 gates passed; evidence in "
        f"data/08_reporting/governance/{MODEL}/1; a validator approves with "
        f"`bankplatform model approve {MODEL} 1`"
    )


def test_the_default_run_prints_a_line_per_stage_and_no_third_party_noise(
    governed_workspace: Path,
) -> None:
    """What `kedro run` printed for the governed workspace (stdout and stderr)."""
    printed = (governed_workspace / "kedro_run.log").read_text().splitlines()
    # No library's warning, log record or progress output on the console.
    assert [line for line in printed if re.search(r"\w+Warning\b", line)] == []
    for noise in ("Completed node", "Successfully registered", "Materializing", "%|"):
        assert [line for line in printed if noise in line] == [], noise
    stages = [
        re.match(r"\d\d:\d\d:\d\d INFO +(\w+) done: (\d+) node\(s\) in", line)
        for line in printed
    ]
    done = {m.group(1): int(m.group(2)) for m in stages if m}
    assert done == {"ingestion": 11, "features": 6, "training": 3, "evaluation": 5}
    assert re.search(r"kedro run __default__: 25 node\(s\) in \d+\.\d s$", printed[-1])
    # Each line stands alone (no record wrapped over several lines).
    assert len(printed) <= 8, printed
