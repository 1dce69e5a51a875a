"""Apache Airflow beside the project: the DAGs kedro-airflow generates from the
pipelines, run by Airflow's own `airflow dags test` (its own venv, `make
airflow-env`) against a governed workspace whose champion served yesterday. The
monitoring DAG's task runs the project's `kedro run` as the scheduler, and the
audit log shows it."""

from __future__ import annotations

import ast
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, command_env, run_command
from tests.helpers import (
    MODEL,
    audit_records,
    champion_workspace,
    monitoring_reference,
    plant_decisions,
    resample,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AIRFLOW = REPO / ".airflow" / "venv" / "bin" / "airflow"


def _airflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Airflow's own command, from its own venv, with its home in ``home``."""
    env = {
        k: v
        for k, v in command_env().items()
        if not k.startswith(("BANKPLATFORM_", "VIRTUAL_ENV", "KEDRO_ENV"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PATH=f"{AIRFLOW.parent}:{os.environ.get('PATH', '')}",
    )
    return subprocess.run(
        [str(AIRFLOW), *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_daily_monitoring_dag_runs_kedro_as_the_scheduler(
    governed_workspace: Path, tmp_path: Path
) -> None:
    assert AIRFLOW.is_file(), "no Airflow venv: run `make airflow-env`"
    root = champion_workspace(governed_workspace, tmp_path)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    ids = plant_decisions(
        root, yesterday, resample(monitoring_reference(root, 1), seed=11), 1
    )
    home = tmp_path / "airflow"
    dags = home / "dags"
    made = run_command(
        [
            *("kedro", "airflow", "create", "--pipelines", "monitoring", "--env"),
            *("test", "--jinja-file", str(REPO / "airflow" / "dag_template.j2")),
            *("--target-dir", str(dags), "--group-by", "memory", "--params"),
            f"project_path={root},kedro={BIN / 'kedro'}",
        ],
        root,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    (dag_file,) = sorted(dags.glob("*.py"))
    assert dag_file.name == "bankplatform_test_monitoring_dag.py"
    source = dag_file.read_text()
    ast.parse(source)  # the generated DAG is Python
    assert 'schedule="@daily"' in source and '"retries": 0' in source
    assert f'WORKSPACE = "{root}"' in source
    assert 'RUN_PARAMS = "monitoring.window=yesterday"' in source
    migrated = _airflow(home, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    started = datetime.now(UTC).isoformat()
    ran = _airflow(home, "dags", "test", "bankplatform_monitoring")
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
    # The task ran the project's kedro run as the scheduler, on yesterday's window.
    later = [r for r in audit_records(root) if str(r["time"]) >= started]
    (run,) = [
        r
        for r in later
        if r["action"] == "run_pipeline" and r["resource"] == "pipeline:monitoring"
    ]
    assert (run["actor"], run["outcome"]) == ("scheduler", "allowed")
    (verdict,) = [r for r in later if r["action"] == "monitoring.verdict"]
    assert verdict["resource"] == f"monitoring:{MODEL}/{yesterday}"
    assert (verdict["actor"], verdict["on_behalf_of"]) == (
        "svc-monitoring",
        "scheduler",
    )
    assert verdict["details"]["decisions"] == len(ids)
