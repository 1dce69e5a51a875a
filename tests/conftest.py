"""Shared fixtures: generated extracts and throw-away copies of the workspace."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bankplatform.security.envelope import EncryptingWriter, decrypt
from bankplatform.security.kms import (
    LocalKeyring,
    create_master_key_file,
    load_master_key,
)
from bankplatform.synthetic import ExtractSummary, GeneratorConfig, generate_raw_extract

REPO = Path(__file__).resolve().parents[1]
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


def read_raw(folder: Path, table: str) -> pd.DataFrame:
    """A table of an encrypted raw extract."""
    return read_encrypted(folder / f"{table}.parquet.enc", f"{table}_raw")


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
    for layer in ("01_raw", "02_intermediate", "03_primary", "08_reporting"):
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
    return folder, generate_raw_extract(config, folder, key_service=shared_keyring())


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
