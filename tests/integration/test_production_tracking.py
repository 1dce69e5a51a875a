"""The production tracking server for real: MLflow on PostgreSQL (TLS only,
verify-full against the workspace's CA), MLflow's basic auth, HTTPS; a
`kedro run` and a lifecycle command authenticate to it with the credentials of
conf/local/credentials.yml."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import yaml

from bankplatform.synthetic import ExtractSummary
from tests.conftest import BIN, command_env, make_workspace, run_command
from tests.helpers import free_port
from tests.servers import PostgresTLS, start_postgres

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
# Made afresh each run: no secret is written into the repository, even a test's.
ADMIN_SECRET = secrets.token_urlsafe(18)
CLIENT = ("svc-bankplatform", secrets.token_urlsafe(18))
DATABASE_SECRET = secrets.token_urlsafe(18)


@dataclass
class Production:
    root: Path
    postgres: PostgresTLS
    url: str
    ca: Path


def _write_yaml(path: Path, content: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, small_extract: tuple[Path, ExtractSummary]
) -> Iterator[Production]:
    root = make_workspace(tmp_path_factory.mktemp("production") / "workspace")
    extract, _ = small_extract
    for file in extract.iterdir():
        shutil.copy(file, root / "data" / "01_raw" / file.name)
    made = run_command(["bankplatform", "tls", "init", "--env", "test"], root)
    assert made.returncode == 0, made.stderr
    tls = root / ".bankplatform-tls"
    postgres = start_postgres(
        tls / "postgres.crt", tls / "postgres.key", tls / "ca.crt"
    )
    server = None
    try:
        postgres.execute(
            f"CREATE ROLE mlflow LOGIN PASSWORD '{DATABASE_SECRET}'",
            "CREATE DATABASE mlflow OWNER mlflow",
            "CREATE DATABASE mlflow_auth OWNER mlflow",
        )
        port = free_port()
        _write_yaml(
            root / "conf/test/tracking_server.yml",
            {
                "tracking_server": {
                    "port": port,
                    "workers": 1,
                    "database_port": postgres.port,
                }
            },
        )
        _write_yaml(
            root / "conf/local/credentials.yml",
            {
                "mlflow_server": {
                    "database_password": DATABASE_SECRET,
                    "admin_password": ADMIN_SECRET,
                    "flask_secret_key": secrets.token_hex(24),
                },
                "mlflow_tracking": {
                    "MLFLOW_TRACKING_USERNAME": CLIENT[0],
                    "MLFLOW_TRACKING_PASSWORD": CLIENT[1],
                    "MLFLOW_TRACKING_SERVER_CERT_PATH": ".bankplatform-tls/ca.crt",
                },
            },
        )
        url = f"https://127.0.0.1:{port}"
        log = (root / "tracking-server.log").open("w")
        server = subprocess.Popen(
            [str(BIN / "bankplatform"), "tracking-server", "--env", "test"],
            cwd=root,
            env=command_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if (
                    httpx.get(
                        f"{url}/health", verify=str(tls / "ca.crt"), timeout=5
                    ).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (root / "tracking-server.log").read_text()[
                -3000:
            ]
            assert time.monotonic() < deadline, "the tracking server did not come up"
            time.sleep(1)
        # The platform's service account, made by MLflow's admin (an operator's step).
        created = httpx.post(
            f"{url}/api/2.0/mlflow/users/create",
            json={"username": CLIENT[0], "password": CLIENT[1]},
            auth=("admin", ADMIN_SECRET),
            verify=str(tls / "ca.crt"),
            timeout=30,
        )
        assert created.status_code == 200, created.text
        # From here on the workspace's runs track into the server.
        _write_yaml(
            root / "conf/test/mlflow.yml",
            {"server": {"mlflow_tracking_uri": url, "credentials": "mlflow_tracking"}},
        )
        yield Production(root, postgres, url, tls / "ca.crt")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        postgres.stop()


def test_postgres_takes_verified_tls_connections_only(production: Production) -> None:
    postgres = production.postgres
    connection = postgres.connect()
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        ssl_on, version = cursor.fetchone()
    connection.close()  # type: ignore[attr-defined]
    assert ssl_on is True
    assert version in {"TLSv1.2", "TLSv1.3"}
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        postgres.connect(sslmode="disable")
    # A client that trusts only the public CAs does not accept the server.
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        postgres.connect(sslrootcert="/etc/ssl/certs/ca-certificates.crt")


def test_the_tracking_server_refuses_unauthenticated_and_plain_requests(
    production: Production,
) -> None:
    search = f"{production.url}/api/2.0/mlflow/experiments/search?max_results=5"
    ca = str(production.ca)
    assert httpx.get(search, verify=ca, timeout=30).status_code == 401
    assert (
        httpx.get(search, verify=ca, auth=(CLIENT[0], "wrong"), timeout=30).status_code
        == 401
    )
    assert httpx.get(search, verify=ca, auth=CLIENT, timeout=30).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(search.replace("https://", "http://"), timeout=10)
    # No password on the server's command line, where `ps` shows it to everyone.
    listing = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            listing.append(
                cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue  # a process that ended meanwhile
    servers = [line for line in listing if "mlflow" in line and "server" in line]
    assert servers
    assert not any(DATABASE_SECRET in line or ADMIN_SECRET in line for line in servers)


def test_a_kedro_run_and_a_lifecycle_command_authenticate_to_it(
    production: Production,
) -> None:
    root = production.root
    done = run_command(
        ["kedro", "run", "--pipeline", "ingestion", "--env", "test"], root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = httpx.post(
        f"{production.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": _experiment_ids(production), "max_results": 10},
        auth=CLIENT,
        verify=str(production.ca),
        timeout=30,
    ).json()["runs"]
    tags = {t["key"]: t["value"] for t in found[0]["data"]["tags"]}
    assert found[0]["info"]["status"] == "FINISHED"
    assert tags["kedro.pipelines"] == "ingestion"
    assert tags["lineage.sink"] == "mlflow"  # not spooled: the server took it
    # The runs are rows of the PostgreSQL backend store.
    connection = production.postgres.connect("mlflow")
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT status FROM runs WHERE run_uuid = %s", (found[0]["info"]["run_id"],)
        )
        assert cursor.fetchone() == ("FINISHED",)
    connection.close()  # type: ignore[attr-defined]
    status = run_command(["bankplatform", "workspace", "status", "--env", "test"], root)
    assert status.returncode == 0, status.stderr
    assert (
        f"lineage: last kedro run ingestion FINISHED (run id {found[0]['info']['run_id']}) in {production.url}"
        in status.stdout
    )


def test_without_the_credentials_a_run_says_so_in_one_line(
    production: Production,
) -> None:
    """As production does, the env refuses to run without lineage."""
    root = production.root
    _write_yaml(
        root / "conf/test/lineage.yml", {"lineage": {"when_unreachable": "refuse"}}
    )
    credentials = root / "conf/local/credentials.yml"
    kept = credentials.read_text()
    entries = yaml.safe_load(kept)
    entries.pop("mlflow_tracking")
    credentials.write_text(yaml.safe_dump(entries))
    try:
        done = run_command(
            ["kedro", "run", "--pipeline", "ingestion", "--env", "test"], root
        )
    finally:
        credentials.write_text(kept)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: run failed: lineage: tracking store {production.url} is unreachable "
        "(credentials 'mlflow_tracking' are in neither conf/local/credentials.yml nor "
        "the env's credentials.yml); env test refuses to run without lineage"
    )


def test_two_runs_with_tuning_trials_log_at_once_without_lock_errors(
    production: Production, tmp_path: Path
) -> None:
    """Two workspaces train at the same moment into the one server, each run with
    4 Ray Tune trials logged as nested runs and a model version registered under
    the same name: the known failure modes of a shared store (SQLite's "database
    is locked", lock waits and deadlocks on a server database, two versions given
    one number) must not appear."""
    second = make_workspace(tmp_path / "second")
    for file in (production.root / "data" / "01_raw").iterdir():
        shutil.copy(file, second / "data" / "01_raw" / file.name)
    shutil.copy(
        production.root / "conf/test/mlflow.yml", second / "conf/test/mlflow.yml"
    )
    credentials = yaml.safe_load(
        (production.root / "conf/local/credentials.yml").read_text()
    )
    tracking = credentials["mlflow_tracking"]
    tracking["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(production.ca)
    _write_yaml(second / "conf/local/credentials.yml", {"mlflow_tracking": tracking})
    command = [
        str(BIN / "kedro"),
        "run",
        "--pipelines",
        "ingestion,features,training",
        "--env",
        "test",
        "--params",
        "training.tune_trials=4",
    ]
    runs = [
        subprocess.Popen(
            command,
            cwd=root,
            env=command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for root in (production.root, second)
    ]
    printed = [run.communicate(timeout=1200)[0] for run in runs]
    for run, output in zip(runs, printed, strict=True):
        assert run.returncode == 0, output[-3000:]
        for failure in ("database is locked", "deadlock", "could not obtain lock"):
            assert failure not in output.lower(), output[-3000:]
    candidates = _search(production, "tags.mlflow.runName LIKE 'candidate:%'")
    newest = sorted(candidates, key=lambda r: -int(r["info"]["start_time"]))[:2]
    assert {r["info"]["status"] for r in newest} == {"FINISHED"}
    for candidate in newest:
        trials = _search(
            production,
            f"tags.mlflow.parentRunId = '{candidate['info']['run_id']}'",
        )
        assert len(trials) == 4
        assert all("valid_auc" in _metrics(t) for t in trials)
    versions = httpx.get(
        f"{production.url}/api/2.0/mlflow/model-versions/search",
        params={"filter": "name='credit_default_pd'", "max_results": 100},
        auth=CLIENT,
        verify=str(production.ca),
        timeout=30,
    ).json()["model_versions"]
    by_run = {v["run_id"]: int(v["version"]) for v in versions}
    numbers = [by_run[c["info"]["run_id"]] for c in newest]
    assert len(set(numbers)) == 2  # one number each, none lost
    connection = production.postgres.connect("mlflow")
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = 'mlflow'"
        )
        assert cursor.fetchone() == (0,)
    connection.close()  # type: ignore[attr-defined]


def _search(production: Production, query: str) -> list[dict[str, Any]]:
    found = httpx.post(
        f"{production.url}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": _experiment_ids(production),
            "filter": query,
            "max_results": 200,
        },
        auth=CLIENT,
        verify=str(production.ca),
        timeout=30,
    ).json()
    return list(found.get("runs", []))


def _metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: float(m["value"]) for m in run["data"].get("metrics", [])}


def _experiment_ids(production: Production) -> list[str]:
    experiments = httpx.get(
        f"{production.url}/api/2.0/mlflow/experiments/search?max_results=50",
        auth=CLIENT,
        verify=str(production.ca),
        timeout=30,
    ).json()["experiments"]
    return [e["experiment_id"] for e in experiments]


def test_the_server_killed_mid_run_ends_the_run_with_the_error(
    production: Production,
) -> None:
    """Last of the module: it stops the server. Production refuses to lose lineage."""
    root = production.root
    _write_yaml(
        root / "conf/test/lineage.yml", {"lineage": {"when_unreachable": "refuse"}}
    )
    environment = {
        **command_env(),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    }
    run = subprocess.Popen(
        [str(BIN / "kedro"), "run", "--pipeline", "ingestion", "--env", "test"],
        cwd=root,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not _running_runs(production):
        assert run.poll() is None, run.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never opened its lineage"
        time.sleep(0.2)
    server = [
        p
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if b"mlflow" in _read(p)
        and f"{production.url.rsplit(':', 1)[1]}".encode() in _read(p)
    ]
    assert server
    for process in server:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(process.parent.name), signal.SIGKILL)
    _, printed = run.communicate(timeout=600)
    assert run.returncode == 1, printed[-3000:]
    last = printed.strip().splitlines()[-1]
    assert last.startswith(
        "Error: run failed: lineage: the tracking store failed during the run ("
    ), last


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _running_runs(production: Production) -> list[dict[str, Any]]:
    try:
        return _search(production, "attributes.status = 'RUNNING'")
    except httpx.TransportError:
        return []
