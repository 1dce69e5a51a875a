"""Security on real runs and commands: pseudonymisation, access, residency,
tokens and key rotation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from kedro.io.core import DatasetError

from bankplatform.datasets import EncryptedParquetDataset
from bankplatform.keyservice.rotation import files_per_key_version
from bankplatform.security.policy import AccessDenied
from bankplatform.security.pseudonyms import IdentifierKind
from bankplatform.synthetic import ExtractSummary
from bankplatform.workspace import open_workspace
from tests.conftest import (
    BIN,
    command_env,
    copy_workspace,
    raw_pii_values,
    read_encrypted,
    run_command,
    workspace_keyring,
)
from tests.pipelines import run_in_memory

pytestmark = pytest.mark.integration
TABLES = ("customers", "accounts", "transactions", "loan_applications", "loan_outcomes")


def _audit(root: Path) -> list[dict[str, object]]:
    log = root / ".bankplatform" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_no_raw_pii_value_reaches_later_layers_logs_or_mlflow(
    ingested_workspace: Path,
) -> None:
    pii = raw_pii_values(ingested_workspace)
    assert len(pii) > 5_000
    primary = {
        table: read_encrypted(
            ingested_workspace / "data" / "03_primary" / f"{table}.parquet.enc",
            f"{table}_primary",
        )
        for table in TABLES
    }
    customers = primary["customers"]
    assert "date_of_birth" not in customers and "name" not in customers
    assert set(customers["age_band"].dropna()) <= {
        "<18",
        "18-24",
        "25-34",
        "35-44",
        "45-54",
        "55-64",
        "65+",
    }
    assert customers["postcode_area"].str.fullmatch(r"[A-Z]{1,2}").all()
    cells = {
        str(value)
        for frame in primary.values()
        for column in frame.columns
        if frame[column].dtype.kind in "OU"
        or str(frame[column].dtype).startswith("string")
        for value in frame[column].dropna().unique()
    }
    assert not cells & pii
    # A scan proves nothing about a folder it never saw: the artifact store and
    # the audit log must exist and hold files.
    # (It used to read `mlartifacts/`, which MLflow never wrote: the artifact
    # root of the SQLite tracking store is `mlruns/`.)
    artifacts = [p for p in (ingested_workspace / "mlruns").rglob("*") if p.is_file()]
    assert artifacts, "the MLflow artifact folder is missing or empty"
    assert (
        (ingested_workspace / ".bankplatform" / "audit" / "audit.jsonl").stat().st_size
    )
    leftovers = [
        ingested_workspace / "kedro_run.log",
        ingested_workspace / "mlflow.db",
        *artifacts,
        *(ingested_workspace / "data" / "08_reporting").rglob("*"),
        *(ingested_workspace / ".bankplatform" / "audit").rglob("*"),
    ]
    texts = [p.read_bytes().decode("latin-1") for p in leftovers if p.is_file()]
    assert len(texts) >= 5
    found = [value for value in pii if any(value in text for text in texts)]
    assert found == []


def test_joins_still_work_on_tokens(ingested_workspace: Path) -> None:
    primary = ingested_workspace / "data" / "03_primary"
    customers = read_encrypted(primary / "customers.parquet.enc", "customers_primary")
    accounts = read_encrypted(primary / "accounts.parquet.enc", "accounts_primary")
    transactions = read_encrypted(
        primary / "transactions.parquet.enc", "transactions_primary"
    )
    raw_accounts = read_encrypted(
        ingested_workspace / "data" / "02_intermediate" / "accounts.parquet.enc",
        "accounts_accepted",
    )
    assert accounts["customer_token"].isin(customers["customer_token"]).all()
    assert transactions["account_token"].isin(accounts["account_token"]).all()
    # Token joins give the same row counts as the raw-id joins did.
    per_customer = accounts.groupby("customer_token").size().sort_values().to_numpy()
    raw_per_customer = (
        raw_accounts.groupby("customer_id").size().sort_values().to_numpy()
    )
    assert (per_customer == raw_per_customer).all()
    assert customers["customer_token"].str.fullmatch(r"cus_[0-9a-f]{32}").all()


def test_a_data_scientist_cannot_read_raw_pii_and_the_denial_is_audited(
    ingested_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    ws = open_workspace(env="test", start=ingested_workspace)
    pseudonymised = ws.catalog.load("customers_primary")
    assert "customer_token" in pseudonymised
    for name in ("customers_raw", "customers_accepted"):
        with pytest.raises(DatasetError) as caught:
            ws.catalog.load(name)
        assert (
            f"access denied: dana.scientist (roles: data_scientist) may not read_pii on dataset:{name}"
            in str(caught.value)
        )
    # The pseudonymisation key never leaves the key service; asking it for tokens
    # (which would let one test guesses of identifiers) is refused too.
    pseudonymiser = ws.catalog.load("pseudonymiser")
    with pytest.raises(
        AccessDenied, match="may not pseudonymise on identifiers:customer"
    ):
        pseudonymiser.tokens(pd.Series(["C00000001"]), IdentifierKind.CUSTOMER)
    tail = _audit(ingested_workspace)[-4:]
    assert [(r["actor"], r["action"], r["resource"], r["outcome"]) for r in tail] == [
        ("dana.scientist", "read_confidential", "dataset:customers_primary", "allowed"),
        ("dana.scientist", "read_pii", "dataset:customers_raw", "denied"),
        ("dana.scientist", "read_pii", "dataset:customers_accepted", "denied"),
        ("dana.scientist", "pseudonymise", "identifiers:customer", "denied"),
    ]


def test_pii_into_the_cloud_zone_is_refused_before_anything_is_written(
    workspace_dir: Path, small_extract: tuple[Path, ExtractSummary]
) -> None:
    for file in small_extract[0].iterdir():
        shutil.copy(file, workspace_dir / "data" / "01_raw" / file.name)
    (workspace_dir / "conf" / "test" / "catalog.yml").write_text(
        """\
"{table}_quarantine":
  type: bankplatform.datasets.EncryptedParquetDataset
  filepath: s3-mounted/quarantine/{table}.parquet.enc
  dataset: "{table}_quarantine"
  metadata: {zone: cloud, classification: pii}
"""
    )
    result = run_command(
        ["kedro", "run", "--pipeline", "ingestion", "--env", "test"], workspace_dir
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: run failed: data residency: dataset accounts_quarantine is classified "
        "pii but placed in the cloud zone (and 9 more)"
    )
    written = [
        p for p in workspace_dir.rglob("*.parquet.enc") if "01_raw" not in str(p)
    ]
    assert written == []
    refusal = _audit(workspace_dir)[-1]
    assert (refusal["action"], refusal["outcome"]) == ("data_residency", "denied")
    assert len(refusal["details"]["violations"]) == 10  # type: ignore[index]
    assert any(
        v.startswith(
            "node check_customers_contract_node would save pii data from customers_raw"
        )
        for v in refusal["details"]["violations"]  # type: ignore[index]
    )


def test_a_config_override_cannot_turn_ingestion_into_a_plaintext_export(
    workspace_dir: Path, small_extract: tuple[Path, ExtractSummary]
) -> None:
    """Finding 3: a git-ignored conf/local (or --conf-source) made a pii dataset a CSV."""
    for file in small_extract[0].iterdir():
        shutil.copy(file, workspace_dir / "data" / "01_raw" / file.name)
    (workspace_dir / "conf" / "local" / "catalog.yml").write_text(
        """\
customers_accepted:
  type: pandas.CSVDataset
  filepath: data/02_intermediate/customers_export.csv
"""
    )
    result = run_command(["kedro", "run", "--pipeline", "ingestion"], workspace_dir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: run failed: access denied: dataset customers_accepted is pii and a "
        "EncryptedParquetDataset in the workspace catalog, but this run would open it "
        "as CSVDataset: conf/local, --conf-source or a runtime override cannot change "
        "a classified dataset"
    )
    assert not (
        workspace_dir / "data" / "02_intermediate" / "customers_export.csv"
    ).exists()
    refusal = _audit(workspace_dir)[-1]
    assert (refusal["action"], refusal["outcome"]) == ("catalog.check", "denied")


def test_tokens_stay_in_their_trust_domain_and_revocation_and_denials_work(
    workspace_dir: Path,
) -> None:
    def issue(user: str, role: str) -> tuple[str, str]:
        done = run_command(
            ["bankplatform", "token", "issue", "--user", user, "--role", role],
            workspace_dir,
        )
        assert done.returncode == 0, done.stderr
        jti = done.stderr.split("token id (jti) ")[1].split(",")[0]
        return done.stdout.strip(), jti

    auditor, auditor_jti = issue("audrey.auditor", "auditor")
    client, _ = issue("origination-system", "scoring_client")
    denied = run_command(
        ["bankplatform", "audit", "show", "--env", "test"],
        workspace_dir,
        extra_env={"BANKPLATFORM_TOKEN": client},
    )
    assert denied.returncode == 1
    assert denied.stderr.strip() == (
        "Error: access denied: origination-system (roles: scoring_client) may not read_audit_log on audit_log"
    )
    shown = run_command(
        ["bankplatform", "audit", "show", "--tail", "2", "--env", "test"],
        workspace_dir,
        extra_env={"BANKPLATFORM_TOKEN": auditor},
    )
    assert shown.returncode == 0, shown.stderr
    denial, own = (json.loads(line) for line in shown.stdout.splitlines())
    assert (denial["actor"], denial["outcome"]) == ("origination-system", "denied")
    assert (own["actor"], own["action"], own["outcome"]) == (
        "audrey.auditor",
        "read_audit_log",
        "allowed",
    )
    # Finding 2: prod has its own keyring, issuer and audience; a developer
    # token is worthless there, and prod never takes an unproven user.
    assert (
        run_command(
            ["bankplatform", "keys", "init", "--env", "prod"], workspace_dir
        ).returncode
        == 0
    )
    in_prod = run_command(
        ["bankplatform", "audit", "show", "--env", "prod"],
        workspace_dir,
        extra_env={"BANKPLATFORM_TOKEN": auditor},
    )
    assert in_prod.stderr.strip() == "Error: token rejected: signature does not verify"
    no_token = run_command(
        ["bankplatform", "audit", "show", "--env", "prod"],
        workspace_dir,
        extra_env={"BANKPLATFORM_USER": "local-developer"},
    )
    assert no_token.stderr.strip().startswith(
        "Error: env prod needs a signed token in $BANKPLATFORM_TOKEN"
    )
    # Finding 2: no service role is ever issued to a person; lifetimes are capped.
    service_role = run_command(
        [
            "bankplatform",
            "token",
            "issue",
            "--user",
            "dana.scientist",
            "--role",
            "ingestion_service",
            "--ttl-minutes",
            "5256000",
        ],
        workspace_dir,
    )
    assert service_role.stderr.strip() == (
        "Error: user dana.scientist does not hold role(s) ingestion_service"
    )
    forever = run_command(
        [
            "bankplatform",
            "token",
            "issue",
            "--user",
            "audrey.auditor",
            "--role",
            "auditor",
            "--ttl-minutes",
            "5256000",
        ],
        workspace_dir,
    )
    assert forever.stderr.strip() == (
        "Error: token lifetime 5256000 minutes is longer than the maximum of 1440 "
        "(security.token_max_ttl_minutes)"
    )
    revoked = run_command(
        ["bankplatform", "token", "revoke", auditor_jti, "--reason", "left the bank"],
        workspace_dir,
    )
    assert revoked.returncode == 0, revoked.stderr
    again = run_command(
        ["bankplatform", "audit", "show", "--env", "test"],
        workspace_dir,
        extra_env={"BANKPLATFORM_TOKEN": auditor},
    )
    assert again.stderr.strip() == "Error: token rejected: revoked"
    nonsense = run_command(
        ["bankplatform", "token", "revoke", "../../etc/passwd", "--reason", "x"],
        workspace_dir,
    )
    assert nonsense.stderr.strip() == (
        "Error: '../../etc/passwd' is not a token id (32 hexadecimal digits, from `token issue`)"
    )
    unknown = run_command(
        ["bankplatform", "token", "issue", "--user", "x", "--role", "superuser"],
        workspace_dir,
    )
    assert unknown.stderr.strip() == "Error: unknown role(s) superuser"


def test_keys_rotate_rewraps_every_file_and_the_pipeline_still_runs(
    ingested_workspace: Path, tmp_path: Path
) -> None:
    root = tmp_path / "workspace"
    copy_workspace(ingested_workspace, root)
    before = run_command(["bankplatform", "keys", "status"], root)
    assert before.stdout.strip().splitlines()[-1].endswith("protects 20 file(s)")
    rotated = run_command(["bankplatform", "keys", "rotate"], root)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().splitlines()[-1] == (
        "rotated: primary key version 2, 20 file(s) re-wrapped, retired: 1"
    )
    status = run_command(["bankplatform", "keys", "status"], root).stdout.splitlines()
    assert status[0].startswith("key version 1 (retired ")
    assert status[0].endswith("protects 0 file(s)")
    assert status[1].startswith("key version 2 (primary)")
    assert status[1].endswith("protects 20 file(s)")
    run_in_memory(root, "ingestion")  # raises if a file cannot be opened
    customers = read_encrypted(
        root / "data" / "03_primary" / "customers.parquet.enc",
        "customers_primary",
        keyring=workspace_keyring(root),
    )
    assert len(customers) == len(
        read_encrypted(
            ingested_workspace / "data" / "03_primary" / "customers.parquet.enc",
            "customers_primary",
        )
    )


def test_keys_rotate_killed_midway_loses_nothing_and_a_rerun_finishes(
    workspace_dir: Path,
) -> None:
    keyring = workspace_keyring(workspace_dir)
    folder = workspace_dir / "data" / "03_primary"
    frame = pd.DataFrame({"n": range(50)})
    for number in range(300):
        EncryptedParquetDataset(
            filepath=str(folder / f"part{number:03d}.parquet.enc"),
            dataset=f"part{number:03d}",
            key_service=keyring,
        ).save(frame.assign(n=frame["n"] + number))
    process = subprocess.Popen(
        [str(BIN / "bankplatform"), "keys", "rotate"],
        cwd=workspace_dir,
        env={**command_env(), "PYTHONUNBUFFERED": "1"},  # each line as it happens
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # one file re-wrapped: kill it between files
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert first.startswith("re-wrapped data/03_primary/part")
    versions = files_per_key_version(workspace_dir / "data")
    assert versions[2] >= 1 and versions[1] >= 1 and sum(versions.values()) == 300
    rerun = run_command(["bankplatform", "keys", "rotate"], workspace_dir)
    assert rerun.returncode == 0, rerun.stderr
    assert (
        rerun.stdout.strip()
        .splitlines()[-1]
        .startswith("finished interrupted rotation: primary key version 2,")
    )
    assert files_per_key_version(workspace_dir / "data") == {2: 300}
    keyring = workspace_keyring(workspace_dir)
    assert [(v.version, v.retired_at is not None) for v in keyring.status()] == [
        (1, True),
        (2, False),
    ]
    for number in (0, 150, 299):
        loaded = EncryptedParquetDataset(
            filepath=str(folder / f"part{number:03d}.parquet.enc"),
            dataset=f"part{number:03d}",
            key_service=keyring,
        ).load()
        assert loaded["n"].tolist() == list(range(number, number + 50))
