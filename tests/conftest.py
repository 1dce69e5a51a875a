"""Shared fixtures: generated extracts and throw-away copies of the workspace."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bankplatform.features.customer_features import BOOKING_COLUMNS
from bankplatform.keyservice.local_kms import (
    LocalKeyring,
    create_master_key_file,
    load_master_key,
)
from bankplatform.security.envelope import EncryptingWriter, decrypt, sealing_with
from bankplatform.security.runtime import WorkspaceSecurity
from bankplatform.synthetic import ExtractSummary, GeneratorConfig, generate_raw_extract
from bankplatform.third_party import LIBRARY_SETTINGS

REPO = Path(__file__).resolve().parents[1]
# Every throw-away workspace starts its own key service on demand; they stop
# once idle (or once the workspace's keyring is deleted), not after 15 minutes.
os.environ.setdefault("BANKPLATFORM_KEYSERVICE_IDLE_SECONDS", "20")
BIN = Path(sys.executable).parent
KEYS_FOLDER = ".bankplatform"


@functools.cache
def shared_keys() -> Path:
    """One master key and keyring per test process, copied into every workspace.

    Sharing them lets an extract encrypted once (``small_extract``) open in any
    throw-away workspace, as a bank's extract opens wherever its KMS is reachable.
    """
    folder = Path(tempfile.mkdtemp(prefix="bankplatform-keys-"))
    create_master_key_file(folder / "master.key")
    LocalKeyring(
        folder / "keyring.json", load_master_key(folder / "master.key")
    ).initialise()
    return folder


def shared_keyring() -> LocalKeyring:
    """The shared test keyring."""
    folder = shared_keys()
    return LocalKeyring(folder / "keyring.json", load_master_key(folder / "master.key"))


def workspace_keyring(root: Path) -> LocalKeyring:
    """The keyring of a throw-away workspace."""
    folder = root / KEYS_FOLDER
    return LocalKeyring(folder / "keyring.json", load_master_key(folder / "master.key"))


def read_encrypted(
    path: Path, dataset: str, keyring: LocalKeyring | None = None
) -> pd.DataFrame:
    """Decrypt an encrypted parquet file of ``dataset`` (test keys by default)."""
    plain = decrypt(path.read_bytes(), dataset, keyring or shared_keyring())
    return pq.read_table(pa.BufferReader(plain)).to_pandas()


def write_encrypted(frame: pd.DataFrame | pa.Table, path: Path, dataset: str) -> None:
    """Encrypt a table into ``path`` for ``dataset`` with the test keys."""
    table = (
        frame
        if isinstance(frame, pa.Table)
        else pa.Table.from_pandas(frame, preserve_index=False)
    )
    with EncryptingWriter(path, dataset, shared_keyring()) as sink:
        pq.write_table(table, sink)


def labelled_applications(root: Path) -> pd.DataFrame:
    """A workspace's pseudonymised loan applications joined with their outcomes."""
    primary = root / "data" / "03_primary"
    applications = read_encrypted(
        primary / "loan_applications.parquet.enc", "loan_applications_primary"
    )
    outcomes = read_encrypted(
        primary / "loan_outcomes.parquet.enc", "loan_outcomes_primary"
    )
    return applications.merge(outcomes, on="application_id")


def read_raw(folder: Path, table: str) -> pd.DataFrame:
    """A table of an encrypted raw extract."""
    return read_encrypted(folder / f"{table}.parquet.enc", f"{table}_raw")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    """A fresh local keyring with its own random master key."""
    ring = LocalKeyring(tmp_path / "keyring.json", os.urandom(32))
    ring.initialise()
    return ring


def tiny_book() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Two customers, three accounts, seven bookings over three months: features by hand."""
    customers = pd.DataFrame(
        {
            "customer_token": ["cus_a", "cus_b"],
            "income": [30_000.0, 50_000.0],
            "employment_status": ["employed", "retired"],
            "tenure_months": [12, 240],
            "gender": ["F", "M"],
        }
    )
    accounts = pd.DataFrame(
        {
            "account_token": ["acc_a1", "acc_a2", "acc_b1"],
            "customer_token": ["cus_a", "cus_a", "cus_b"],
            "product": ["current_account", "credit_card", "current_account"],
            "credit_limit": [None, 1_000.0, None],
        }
    )
    rows = [
        ("acc_a1", "2024-01-05 10:00", 2_000.0, "salary", None, 2_000.0),
        ("acc_a1", "2024-01-20 12:00", -100.0, "pos", "5411", 1_900.0),
        ("acc_a1", "2024-01-28 09:00", -50.0, "atm", "6011", 1_850.0),
        ("acc_a2", "2024-01-30 18:00", -300.0, "ecommerce", "7995", -300.0),
        ("acc_a2", "2024-02-10 08:00", -12.0, "late_fee", None, -312.0),
        ("acc_a1", "2024-02-15 07:00", 40.0, "returned_direct_debit", None, 1_890.0),
        ("acc_b1", "2024-03-03 10:00", 3_000.0, "salary", None, 3_000.0),
    ]
    transactions = pd.DataFrame(
        rows,
        columns=BOOKING_COLUMNS,
    )
    transactions["booked_at"] = pd.to_datetime(transactions["booked_at"])
    return customers, accounts, transactions


def notebook_summary(name: str, root: Path, output_dir: Path) -> dict[str, object]:
    """Execute ``notebooks/<name>`` with papermill on workspace ``root`` (env test) and
    return the JSON its cell tagged ``summary`` prints."""
    output = output_dir / name
    papermill.execute_notebook(
        REPO / "notebooks" / name,
        output,
        parameters={"env": "test", "project_dir": str(root)},
        cwd=str(root),
        kernel_name="python3",
        progress_bar=False,
    )
    executed = nbformat.read(output, as_version=4)
    cell = next(c for c in executed.cells if "summary" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    summary: dict[str, object] = json.loads(text)
    return summary


def command_env() -> dict[str, str]:
    """Environment for the real commands a test starts: no telemetry, fast Feast imports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "BANKPLATFORM_PROJECT",
            "KEDRO_ENV",
            "BANKPLATFORM_USER",
            "BANKPLATFORM_TOKEN",
            # Feast sets these to a folder of its own when imported in the tests.
            "PROMETHEUS_MULTIPROCESS_DIR",
            "PROMETHEUS_MULTIPROC_DIR",
            # The commands set these themselves (bankplatform.third_party).
            *LIBRARY_SETTINGS,
        }
    }
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", PYTHONOPTIMIZE="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_command(
    args: list[str],
    cwd: Path,
    timeout: float = 300,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command of the venv (``bankplatform``, ``kedro``) in ``cwd``."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env={**command_env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_workspace(target: Path) -> Path:
    """A throw-away copy of this workspace: manifest, conf, notebooks, data layers."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".kedro.yml", ".telemetry", "requirements.lock"):
        shutil.copy(REPO / name, target / name)
    shutil.copytree(
        REPO / "conf", target / "conf", ignore=shutil.ignore_patterns("local")
    )
    (target / "conf" / "local").mkdir()
    shutil.copytree(REPO / "notebooks", target / "notebooks")
    # Kedro wants a source folder; the package itself is installed in the venv.
    (target / "src").mkdir()
    for layer in (
        "01_raw",
        "02_intermediate",
        "03_primary",
        "04_feature",
        "05_model_input",
        "06_models",
        "07_model_output",
        "08_reporting",
    ):
        (target / "data" / layer).mkdir(parents=True)
    # What `bankplatform keys init` creates (here the shared test keys): runs are
    # audited and data encrypted, so they need keys.
    shutil.copytree(shared_keys(), target / KEYS_FOLDER)
    return target


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """An empty throw-away workspace."""
    return make_workspace(tmp_path / "workspace")


@pytest.fixture(scope="session")
def small_extract(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, ExtractSummary]:
    """1k customers with 2 % defects, encrypted with the test keys: every defect
    kind appears in every table."""
    folder = tmp_path_factory.mktemp("extract_1k")
    config = GeneratorConfig(customers=1_000, seed=7, dirty_rate=0.02)
    return folder, generate_raw_extract(
        config, folder, seal=sealing_with(shared_keyring())
    )


@pytest.fixture(scope="session")
def featured_workspace(
    tmp_path_factory: pytest.TempPathFactory, ingested_workspace: Path
) -> Path:
    """A copy of the ingested workspace where `kedro run --pipeline features --env test` ran."""
    root = tmp_path_factory.mktemp("featured") / "workspace"
    shutil.copytree(ingested_workspace, root, ignore=shutil.ignore_patterns("*.sock"))
    result = run_command(
        ["kedro", "run", "--pipeline", "features", "--env", "test"], root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "kedro_features_run.log").write_text(result.stdout + result.stderr)
    return root


PII_COLUMNS = {
    "customers": ["customer_id", "name", "national_id", "email", "phone", "postcode"],
    "accounts": ["account_id"],
}


def raw_pii_values(root: Path) -> set[str]:
    """Every direct identifier value of a workspace's raw extract (4+ characters)."""
    values: set[str] = set()
    for table, columns in PII_COLUMNS.items():
        frame = read_raw(root / "data" / "01_raw", table)
        for column in columns:
            values.update(str(v) for v in frame[column].dropna() if len(str(v)) >= 4)
    return values


@pytest.fixture(scope="session")
def ingested_workspace(
    tmp_path_factory: pytest.TempPathFactory, small_extract: tuple[Path, ExtractSummary]
) -> Iterator[Path]:
    """A workspace where `kedro run --pipeline ingestion --env test` ran on the 1k extract."""
    root = make_workspace(tmp_path_factory.mktemp("ingested") / "workspace")
    extract, _ = small_extract
    for file in extract.iterdir():
        shutil.copy(file, root / "data" / "01_raw" / file.name)
    result = run_command(
        ["kedro", "run", "--pipeline", "ingestion", "--env", "test"], root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Kept for the test that looks for raw PII in everything a run leaves behind.
    (root / "kedro_run.log").write_text(result.stdout + result.stderr)
    yield root


# The governance tests need out-of-time groups large enough for fairness figures
# to mean something: 5k customers give ~720 out-of-time applications (1k: ~130,
# where one age band's approval rate moves 10 points by chance).
GOVERNED_CUSTOMERS = 5_000


def governed_run(root: Path, **generator: float) -> Path:
    """Generate 5k customers into a fresh workspace and run `kedro run --env test`
    (ingestion, features, training, evaluation with its evidence notebooks)."""
    make_workspace(root)
    config = GeneratorConfig(customers=GOVERNED_CUSTOMERS, seed=11, **generator)
    generate_raw_extract(
        config, root / "data" / "01_raw", seal=sealing_with(shared_keyring())
    )
    result = run_command(["kedro", "run", "--env", "test"], root, timeout=1_200)
    (root / "kedro_run.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def governed_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5k customers, no planted bias, the whole default pipeline run (env test)."""
    return governed_run(tmp_path_factory.mktemp("governed") / "workspace")


@pytest.fixture(scope="session")
def service_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One throw-away workspace per test process whose key service in-process tests use."""
    return make_workspace(tmp_path_factory.mktemp("service") / "workspace")


@pytest.fixture(scope="session")
def active_test_security(service_workspace: Path) -> WorkspaceSecurity:
    """The test env's security of ``service_workspace``, activated in this process:
    what in-process tests of datasets use (its key service starts on first use)."""
    from bankplatform.project import env_config_loader
    from bankplatform.security import runtime

    security = runtime.open_security(
        env_config_loader(service_workspace, "test"), service_workspace, "test"
    )
    runtime.activate(security)
    return security


@pytest.fixture
def workspace_security(
    active_test_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkspaceSecurity]:
    """``active_test_security``, acting as the default developer for this test."""
    from bankplatform.security import runtime

    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.delenv("BANKPLATFORM_USER", raising=False)
    previous = runtime._active
    runtime.activate(active_test_security)
    yield active_test_security
    runtime._active = previous
