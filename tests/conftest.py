"""Shared fixtures: generated extracts and throw-away copies of the workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bankplatform.project import env_config_loader
from bankplatform.security.kms import create_master_key_file
from bankplatform.security.settings import load_security_settings
from bankplatform.synthetic import ExtractSummary, GeneratorConfig, generate_raw_extract

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def command_env() -> dict[str, str]:
    """Environment for the real commands a test starts: no telemetry, fast Feast imports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BANKPLATFORM_PROJECT", "KEDRO_ENV"}
    }
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", PYTHONOPTIMIZE="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_command(
    args: list[str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command of the venv (``bankplatform``, ``kedro``) in ``cwd``."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=command_env(),
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
    for layer in ("01_raw", "02_intermediate", "08_reporting"):
        (target / "data" / layer).mkdir(parents=True)
    # What `bankplatform keys init` creates: runs are audited, so they need keys.
    settings = load_security_settings(env_config_loader(target, "local"), target)
    create_master_key_file(settings.master_key_file)
    settings.keyring_service().initialise()
    return target


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """An empty throw-away workspace."""
    return make_workspace(tmp_path / "workspace")


@pytest.fixture(scope="session")
def small_extract(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, ExtractSummary]:
    """1k customers with 2 % defects: every defect kind appears in every table."""
    folder = tmp_path_factory.mktemp("extract_1k")
    config = GeneratorConfig(customers=1_000, seed=7, dirty_rate=0.02)
    return folder, generate_raw_extract(config, folder)


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
    yield root
