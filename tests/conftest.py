"""Shared fixtures: generated extracts and throw-away copies of the workspace."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filelock import FileLock

from bankplatform.features.customer_features import BOOKING_COLUMNS
from bankplatform.keyservice.local_kms import (
    LocalKeyring,
    create_master_key_file,
    load_master_key,
)
from bankplatform.security.envelope import EncryptingWriter, decrypt, sealing_with
from bankplatform.security.runtime import WorkspaceSecurity
from bankplatform.synthetic import ExtractSummary, GeneratorConfig, generate_raw_extract
from bankplatform.synthetic.extract import SUMMARY_FILE
from bankplatform.third_party import LIBRARY_SETTINGS

REPO = Path(__file__).resolve().parents[1]
# Every throw-away workspace starts its own key service on demand; they stop
# once idle (or once the workspace's keyring is deleted), not after 15 minutes.
os.environ.setdefault("BANKPLATFORM_KEYSERVICE_IDLE_SECONDS", "20")
BIN = Path(sys.executable).parent
KEYS_FOLDER = ".bankplatform"


SHARED_ENV_VAR = "BANKPLATFORM_TEST_SHARED"


def pytest_configure(config: pytest.Config) -> None:
    """The controlling process makes one folder that every test process of this
    session shares (xdist's workers inherit its environment): the test keys and the
    workspaces built once (``built_once``)."""
    if hasattr(config, "workerinput"):
        return
    folder = Path(tempfile.mkdtemp(prefix="bankplatform-tests-"))
    os.environ[SHARED_ENV_VAR] = str(folder)
    create_master_key_file(folder / "keys" / "master.key")
    LocalKeyring(
        folder / "keys" / "keyring.json",
        load_master_key(folder / "keys" / "master.key"),
    ).initialise()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controlling process removes the shared folder once every worker ended."""
    if not hasattr(config, "workerinput") and SHARED_ENV_VAR in os.environ:
        shutil.rmtree(os.environ.pop(SHARED_ENV_VAR), ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first: the workers take whole files, so the long ones
    start early and the short ones fill the gaps at the end (every worker sorts
    its collection the same way, as xdist requires)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def shared_folder() -> Path:
    """The folder every test process of this session shares."""
    return Path(os.environ[SHARED_ENV_VAR])


def shared_keys() -> Path:
    """One master key and keyring per test session, copied into every workspace.

    Sharing them lets an extract encrypted once (``small_extract``) open in any
    throw-away workspace and in every test process, as a bank's extract opens
    wherever its KMS is reachable.
    """
    return shared_folder() / "keys"


def built_once(name: str, build: Callable[[Path], object]) -> Path:
    """``shared_folder()/name``, built by ``build`` once per session: the first test
    process that asks builds it under a file lock, the others wait and reuse it.
    Nothing may write into it afterwards: tests work on copies (``copy_workspace``).
    """
    target = shared_folder() / name
    done = shared_folder() / f"{name}.built"
    with FileLock(shared_folder() / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)  # what a failed build left
            build(target)
            done.touch()
    return target


# MLflow's SQLite store names artefacts and lineage sources by absolute path.
_MLFLOW_PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("datasets", "dataset_source"),
)


def copy_workspace(source: Path, target: Path) -> Path:
    """A workspace copied to ``target`` (sockets left behind), its MLflow store
    pointing at the copy's own artefacts: what a test does to the copy never
    reaches the original."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.sock"))
    store = target / "mlflow.db"
    if store.exists():
        with contextlib.closing(sqlite3.connect(store)) as db, db:
            for table, column in _MLFLOW_PATH_COLUMNS:
                db.execute(
                    f"UPDATE {table} SET {column} = replace({column}, ?, ?)",  # noqa: S608 - names from the constant above
                    (str(source), str(target)),
                )
    return target


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


def _generate_small_extract(folder: Path) -> None:
    config = GeneratorConfig(customers=1_000, seed=7, dirty_rate=0.02)
    folder.mkdir(parents=True)
    generate_raw_extract(config, folder, seal=sealing_with(shared_keyring()))


@pytest.fixture(scope="session")
def small_extract() -> tuple[Path, ExtractSummary]:
    """1k customers with 2 % defects, encrypted with the test keys: every defect
    kind appears in every table. Generated once per session; read it, never write."""
    folder = built_once("extract_1k", _generate_small_extract)
    written = json.loads((folder / SUMMARY_FILE).read_text())
    config = GeneratorConfig.model_validate(written["config"])
    return folder, ExtractSummary(config, written["rows"], written["defects"])


@pytest.fixture(scope="session")
def featured_workspace(
    tmp_path_factory: pytest.TempPathFactory, ingested_workspace: Path
) -> Path:
    """A copy of the ingested workspace where `kedro run --pipeline features --env test` ran."""

    def build(root: Path) -> None:
        copy_workspace(built_once("ingested", _ingest_small_extract), root)
        result = run_command(
            ["kedro", "run", "--pipeline", "features", "--env", "test"], root
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (root / "kedro_features_run.log").write_text(result.stdout + result.stderr)

    return copy_workspace(
        built_once("featured", build), tmp_path_factory.mktemp("featured") / "workspace"
    )


@pytest.fixture
def streaming_workspace(featured_workspace: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the featured 1k workspace for the booking-stream tests; its
    stream server stopped at the end."""
    from bankplatform.project import env_config_loader
    from bankplatform.streaming.broker import EmbeddedServer
    from bankplatform.streaming.settings import load_streaming_settings

    root = copy_workspace(featured_workspace, tmp_path / "ws")
    yield root
    settings = load_streaming_settings(env_config_loader(root, "test"), root)
    EmbeddedServer(settings, root).stop()


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


def _ingest_small_extract(root: Path) -> None:
    make_workspace(root)
    extract = built_once("extract_1k", _generate_small_extract)
    for file in extract.iterdir():
        shutil.copy(file, root / "data" / "01_raw" / file.name)
    result = run_command(
        ["kedro", "run", "--pipeline", "ingestion", "--env", "test"], root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Kept for the test that looks for raw PII in everything a run leaves behind.
    (root / "kedro_run.log").write_text(result.stdout + result.stderr)


@pytest.fixture(scope="session")
def ingested_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a workspace where `kedro run --pipeline ingestion --env test` ran
    on the 1k extract (the run happens once per session; each test process has its
    own copy)."""
    return copy_workspace(
        built_once("ingested", _ingest_small_extract),
        tmp_path_factory.mktemp("ingested") / "workspace",
    )


# The governance tests need out-of-time groups large enough for fairness figures
# to mean something: 5k customers give ~720 out-of-time applications (1k: ~130,
# where one age band's approval rate moves 10 points by chance).
GOVERNED_CUSTOMERS = 5_000


def governed_extract(root: Path, **generator: float) -> Path:
    """A fresh workspace at ``root`` holding a generated 5k-customer extract."""
    make_workspace(root)
    config = GeneratorConfig(customers=GOVERNED_CUSTOMERS, seed=11, **generator)
    generate_raw_extract(
        config, root / "data" / "01_raw", seal=sealing_with(shared_keyring())
    )
    return root


def governed_run(root: Path, **generator: float) -> Path:
    """Generate 5k customers into a fresh workspace and run `kedro run --env test`
    (ingestion, features, training, evaluation with its evidence notebooks)."""
    governed_extract(root, **generator)
    result = run_command(["kedro", "run", "--env", "test"], root, timeout=1_200)
    (root / "kedro_run.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def governed_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5k customers, no planted bias, the whole default pipeline run (env test):
    run once per session, a copy for each test process."""
    return copy_workspace(
        built_once("governed", governed_run),
        tmp_path_factory.mktemp("governed") / "workspace",
    )


@pytest.fixture(scope="session")
def worker_ray() -> Iterator[None]:
    """One local Ray for this test process, which in-memory training runs reuse as
    a notebook's runs reuse the notebook's Ray (started once: 10-15 s a start)."""
    from bankplatform.ray_cluster import ray_connection

    with ray_connection(2):
        yield


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


@pytest.fixture(autouse=True)
def mlflow_tracking_uri_restored() -> Iterator[None]:
    """A test that points MLflow at its own workspace leaves nothing behind:
    ``mlflow.set_tracking_uri`` also sets ``$MLFLOW_TRACKING_URI``, which every
    later in-process run and subprocess of the worker would otherwise use (a
    retraining registered its version in another test's registry)."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") == saved:
        return
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved
    if "mlflow" in sys.modules:
        from mlflow.tracking._tracking_service import utils

        utils._tracking_uri = saved  # MLflow keeps no public reset
