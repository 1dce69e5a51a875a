"""`kedro run --pipeline ingestion --env test` end to end, and a corrupt raw file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bankplatform.review.offline_site import third_party_loaders
from bankplatform.synthetic import ExtractSummary
from tests.conftest import read_raw, run_command, write_encrypted

pytestmark = pytest.mark.integration


def test_ingestion_run_writes_accepted_quarantine_and_report(
    ingested_workspace: Path,
) -> None:
    report = json.loads(
        (ingested_workspace / "data/08_reporting/ingestion_report.json").read_text()
    )
    tables = report["tables"]
    assert set(tables) == {
        "customers",
        "accounts",
        "transactions",
        "loan_applications",
        "loan_outcomes",
    }
    assert report["input_rows"] == sum(t["input"] for t in tables.values())
    assert report["quarantined_rows"] == sum(t["quarantined"] for t in tables.values())
    assert all(t["accepted"] + t["quarantined"] == t["input"] for t in tables.values())
    assert 0 < report["quarantined_rows"] < 0.2 * report["input_rows"]


def test_workspace_status_summarises_the_run(ingested_workspace: Path) -> None:
    result = run_command(
        ["bankplatform", "workspace", "status", "--env", "test"], ingested_workspace
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(
        (ingested_workspace / "data/08_reporting/ingestion_report.json").read_text()
    )
    customers = report["tables"]["customers"]
    assert (
        f"  {'customers':<16}{customers['input']:>12,}{customers['accepted']:>12,}{customers['quarantined']:>13,}"
        in result.stdout
    )
    assert "raw extract: 1,000 customers, seed 7" in result.stdout
    assert "lineage: last kedro run ingestion FINISHED (run id " in result.stdout


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        ("text", "not a bankplatform encrypted file"),
        ("swapped", "file belongs to dataset 'accounts_raw', not 'transactions_raw'"),
        ("columns", "raw table transactions lacks column(s)"),
    ],
)
def test_a_corrupt_file_fails_the_run_naming_the_file(
    workspace_dir: Path,
    small_extract: tuple[Path, ExtractSummary],
    corruption: str,
    expected: str,
) -> None:
    raw = workspace_dir / "data" / "01_raw"
    extract, _ = small_extract
    for file in extract.iterdir():
        shutil.copy(file, raw / file.name)
    target = raw / "transactions.parquet.enc"
    if corruption == "text":
        target.write_text("transaction_id,amount\nT1,12.50\n")
    elif corruption == "swapped":
        shutil.copy(raw / "accounts.parquet.enc", target)
    else:
        write_encrypted(read_raw(raw, "accounts"), target, "transactions_raw")
    result = run_command(
        ["kedro", "run", "--pipeline", "ingestion", "--env", "test"], workspace_dir
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if expected in line]
    assert lines, output[-2000:]
    assert (
        str(target) in output.replace("\n", "").replace(" ", "")
        or "transactions.parquet.enc" in lines[0]
    )
    # Earlier tables were accepted; nothing downstream of the broken table exists.
    assert (workspace_dir / "data/02_intermediate/customers.parquet.enc").exists()
    assert not (workspace_dir / "data/08_reporting/ingestion_report.json").exists()


def test_the_reviewers_site_builds_offline_safe(workspace_dir: Path) -> None:
    built = run_command(["kedro", "viz", "build"], workspace_dir)
    assert built.returncode == 0, built.stderr[-2000:]
    cleaned = run_command(
        ["python", "-m", "bankplatform.review.offline_site", "build"], workspace_dir
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert "build: offline-safe (" in cleaned.stdout
    site = workspace_dir / "build"
    assert third_party_loaders(site) == []
    pipelines = json.loads((site / "api" / "main").read_text())
    node_names = {node["name"] for node in pipelines["nodes"]}
    assert {
        "check_transactions_contract_node",
        "transactions_quarantine",
        "ingestion_report",
    } <= node_names


def test_the_run_is_in_the_audit_log_and_verify_sees_tampering(
    ingested_workspace: Path, tmp_path: Path
) -> None:
    shown = run_command(["bankplatform", "audit", "show"], ingested_workspace)
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    # The key service's first start installed its policy; the fixture's run comes
    # next; later tests of the group may append.
    assert (records[0]["action"], records[0]["actor"]) == (
        "policy.install",
        "keyservice",
    )
    end = next(i for i, r in enumerate(records) if r["action"] == "pipeline.run.end")
    run = records[1 : end + 1]
    assert (run[0]["action"], run[0]["actor"], run[0]["outcome"]) == (
        "run_pipeline",
        "local-developer",
        "allowed",
    )
    assert run[1]["action"] == "pipeline.run.start"
    assert (run[-1]["resource"], run[-1]["outcome"]) == (
        "pipeline:ingestion",
        "allowed",
    )
    data_access = {(r["action"], r["resource"]) for r in run[2:-1]}
    tables = (
        "customers",
        "accounts",
        "transactions",
        "loan_applications",
        "loan_outcomes",
    )
    assert data_access == {
        # The pseudonymisation key never leaves the key service: it makes the tokens.
        *{
            ("pseudonymise", f"identifiers:{kind}")
            for kind in ("customer", "account", "national_id", "email", "phone")
        },
        *{("read_pii", f"dataset:{t}_raw") for t in tables},
        *{("write_pii", f"dataset:{t}_accepted") for t in tables},
        *{("write_pii", f"dataset:{t}_quarantine") for t in tables},
        *{("read_pii", f"dataset:{t}_accepted") for t in tables},
        *{("write_confidential", f"dataset:{t}_primary") for t in tables},
    }
    # Every load and save ran as the ingestion service, on the starter's behalf.
    assert {(r["actor"], r["on_behalf_of"], r["outcome"]) for r in run[2:-1]} == {
        ("svc-ingestion", "local-developer", "allowed")
    }
    intact = run_command(["bankplatform", "audit", "verify"], ingested_workspace)
    assert intact.returncode == 0, intact.stderr
    # `show` is audited (read_audit_log) before it reads the log; `verify` only
    # once it found the chain intact, so never on top of a broken one.
    assert records[-1]["action"] == "read_audit_log"
    assert intact.stdout.startswith(f"audit log intact: {len(records)} records")
    after = run_command(
        ["bankplatform", "audit", "show", "--tail", "1"], ingested_workspace
    )
    (last,) = [json.loads(line) for line in after.stdout.splitlines()]
    assert (last["seq"], last["action"]) == (len(records) + 2, "read_audit_log")
    copy = tmp_path / "tampered"
    shutil.copytree(
        ingested_workspace,
        copy,
        ignore=shutil.ignore_patterns("data", "mlruns", "build", "*.sock"),
    )
    log = copy / ".bankplatform" / "audit" / "audit.jsonl"
    log.write_text(
        log.read_text().replace('"outcome":"allowed"', '"outcome":"denied"', 1)
    )
    tampered = run_command(["bankplatform", "audit", "verify"], copy)
    assert tampered.returncode == 1
    assert (
        tampered.stderr.strip()
        == "Error: audit log NOT intact: record seq 1: content does not match its hash (edited)"
    )


def test_a_run_without_keys_is_refused_in_one_line(workspace_dir: Path) -> None:
    shutil.rmtree(workspace_dir / ".bankplatform")
    result = run_command(["kedro", "run", "--pipeline", "ingestion"], workspace_dir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: run failed: no master key: set BANKPLATFORM_MASTER_KEY or run `bankplatform keys init` "
        f"to create {workspace_dir / '.bankplatform' / 'master.key'}"
    )
    keys = run_command(["bankplatform", "keys", "init"], workspace_dir)
    assert keys.returncode == 0
    assert "created master key file" in keys.stdout
    status = run_command(["bankplatform", "keys", "status"], workspace_dir)
    assert status.stdout.startswith("key version 1 (primary): created ")
