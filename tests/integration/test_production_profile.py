"""`kedro run --env prod`, the whole default pipeline, on real servers at once:
MLflow tracking server on PostgreSQL with basic auth over HTTPS, Feast on a
TLS-only Redis with its registry on PostgreSQL, a two-node Ray cluster with TLS
and token auth, run locks on PostgreSQL, the production trust domain (its own
keys, a scheduler's token). conf/prod as shipped, with this machine's ports."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests.conftest import BIN, command_env, make_workspace, run_command
from tests.helpers import free_port
from tests.servers import (
    PostgresTLS,
    RayClusterTLS,
    RedisTLS,
    node_ip_address,
    start_postgres,
    start_ray_cluster,
    start_redis,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
CUSTOMERS = 2_000
SECRETS = {
    name: secrets.token_urlsafe(18)
    for name in ("mlflow", "feast", "locks", "audit", "admin", "client", "flask")
}
CLIENT = "svc-bankplatform"


@dataclass
class Profile:
    root: Path
    postgres: PostgresTLS
    redis: RedisTLS
    ray: RayClusterTLS
    tracking_url: str
    environment: dict[str, str]
    run: subprocess.CompletedProcess[str]


def _yaml(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def _with_ports(
    root: Path, postgres: PostgresTLS, store: RedisTLS, tracking_port: int
) -> None:
    """conf/prod as shipped, its addresses moved to this machine's free ports."""
    prod = root / "conf" / "prod"
    ca = ".bankplatform-tls/ca.crt"
    server = yaml.safe_load((prod / "tracking_server.yml").read_text())
    server["tracking_server"].update(
        port=tracking_port, database_port=postgres.port, workers=1
    )
    _yaml(prod / "tracking_server.yml", server)
    mlflow = yaml.safe_load((prod / "mlflow.yml").read_text())
    mlflow["server"]["mlflow_tracking_uri"] = f"https://127.0.0.1:{tracking_port}"
    _yaml(prod / "mlflow.yml", mlflow)
    catalog = yaml.safe_load((prod / "catalog.yml").read_text())
    store_entry = catalog["feature_store"]
    store_entry["online_store"]["connection_string"] = store_entry["online_store"][
        "connection_string"
    ].replace("127.0.0.1:6380", f"127.0.0.1:{store.port}")
    store_entry["registry"]["path"] = store_entry["registry"]["path"].replace(
        "127.0.0.1:5432", f"127.0.0.1:{postgres.port}"
    )
    _yaml(prod / "catalog.yml", catalog)
    _yaml(
        prod / "runs.yml",
        {
            "runs": {
                "lock_store": f"postgresql://locks@127.0.0.1:{postgres.port}/locks"
                f"?sslmode=verify-full&sslrootcert={ca}",
                "lock_store_credentials": "run_lock_store",
            }
        },
    )
    # The shipped socket folder, /run/bankplatform/<workspace id>/, is the host
    # administrators' to make (root): here a folder only this user may write.
    run = root.parent / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    security = yaml.safe_load((prod / "security.yml").read_text())
    assert security["security"]["keyservice_socket"] == (
        "/run/bankplatform/{workspace}/keyservice-prod.sock"
    )
    security["security"]["keyservice_socket"] = str(run / "{workspace}" / "keys.sock")
    _yaml(prod / "security.yml", security)
    # The bank's extract stands in: this workspace may generate one (prod refuses).
    _yaml(prod / "parameters_data.yml", {"synthetic_extract": {"enabled": True}})


def _audit_in_postgres(root: Path, postgres: PostgresTLS) -> None:
    """conf/prod/security.yml with its `audit_store` example switched on (this
    machine's port); the store's password in the key service's private folder."""
    path = root / "conf" / "prod" / "security.yml"
    text = path.read_text()
    example = "  # audit_store: postgresql://audit@127.0.0.1:5432/audit"
    assert example in text
    path.write_text(
        text.replace(
            example,
            f"  audit_store: postgresql://audit@127.0.0.1:{postgres.port}/audit",
        )
    )
    secret = root / ".bankplatform-prod" / "audit-store.password"
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    secret.write_text(SECRETS["audit"])
    secret.chmod(0o600)


def _credentials(root: Path, store: RedisTLS) -> None:
    _yaml(
        root / "conf/local/credentials.yml",
        {
            "mlflow_server": {
                "database_password": SECRETS["mlflow"],
                "admin_password": SECRETS["admin"],
                "flask_secret_key": SECRETS["flask"],
            },
            "mlflow_tracking": {
                "MLFLOW_TRACKING_USERNAME": CLIENT,
                "MLFLOW_TRACKING_PASSWORD": SECRETS["client"],
                "MLFLOW_TRACKING_SERVER_CERT_PATH": ".bankplatform-tls/ca.crt",
            },
            "feast_stores": {
                "online_store_password": store.password,
                "registry_password": SECRETS["feast"],
            },
            "run_lock_store": {"password": SECRETS["locks"]},
        },
    )


def _start_tracking_server(root: Path, url: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(BIN / "bankplatform"), "tracking-server", "--env", "prod"],
        cwd=root,
        env=command_env(),
        stdout=(root / "tracking-server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    ca = str(root / ".bankplatform-tls/ca.crt")
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", verify=ca, timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert server.poll() is None, (root / "tracking-server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the tracking server did not come up"
        time.sleep(1)
    created = httpx.post(
        f"{url}/api/2.0/mlflow/users/create",
        json={"username": CLIENT, "password": SECRETS["client"]},
        auth=("admin", SECRETS["admin"]),
        verify=ca,
        timeout=30,
    )
    assert created.status_code == 200, created.text
    return server


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Profile]:
    root = make_workspace(tmp_path_factory.mktemp("prod") / "workspace")
    hosts = ["127.0.0.1", "localhost", node_ip_address()]
    _ok(
        run_command(
            ["bankplatform", "tls", "init", "--env", "prod"]
            + [x for host in hosts for x in ("--host", host)],
            root,
        )
    )
    tls = root / ".bankplatform-tls"
    postgres = start_postgres(
        tls / "postgres.crt", tls / "postgres.key", tls / "ca.crt"
    )
    store = start_redis(
        tls / "redis.crt", tls / "redis.key", tls / "ca.crt", root / "redis"
    )
    started: list[Any] = [postgres, store]
    server = None
    try:
        # The audit log lives in PostgreSQL from the first record (the key init's).
        postgres.execute(
            f"CREATE ROLE audit LOGIN PASSWORD '{SECRETS['audit']}'",
            "CREATE DATABASE audit OWNER audit",
        )
        _audit_in_postgres(root, postgres)
        _ok(run_command(["bankplatform", "keys", "init", "--env", "prod"], root))
        token = _prod_token(root, "scheduler", "data_scientist", "data_engineer")
        postgres.execute(
            f"CREATE ROLE mlflow LOGIN PASSWORD '{SECRETS['mlflow']}'",
            "CREATE DATABASE mlflow OWNER mlflow",
            "CREATE DATABASE mlflow_auth OWNER mlflow",
            f"CREATE ROLE feast LOGIN PASSWORD '{SECRETS['feast']}'",
            "CREATE DATABASE feast OWNER feast",
            f"CREATE ROLE locks LOGIN PASSWORD '{SECRETS['locks']}'",
            "CREATE DATABASE locks OWNER locks",
        )
        tracking_port = free_port()
        _with_ports(root, postgres, store, tracking_port)
        _credentials(root, store)
        url = f"https://127.0.0.1:{tracking_port}"
        server = _start_tracking_server(root, url)
        # Production trains one worker of 2 CPUs (base parameters): nodes of 2 CPUs.
        ray = start_ray_cluster(
            tls / "ray.crt",
            tls / "ray.key",
            tls / "ca.crt",
            command_env(),
            cpus_per_node=2,
        )
        started.append(ray)
        environment = {
            **ray.environment,
            "RAY_ADDRESS": ray.address,
            "BANKPLATFORM_TOKEN": token,
        }
        _ok(
            run_command(
                [
                    "bankplatform",
                    "data",
                    "generate",
                    "--env",
                    "prod",
                    "--customers",
                    str(CUSTOMERS),
                ],
                root,
                extra_env=environment,
            )
        )
        done = run_command(
            ["kedro", "run", "--env", "prod"],
            root,
            timeout=1_500,
            extra_env=environment,
        )
        (root / "kedro_run.log").write_text(done.stdout + done.stderr)
        yield Profile(root, postgres, store, ray, url, environment, done)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        for running in reversed(started):
            running.stop()


def test_the_whole_default_pipeline_runs_on_the_production_servers(
    profile: Profile,
) -> None:
    assert profile.run.returncode == 0, profile.run.stderr[-3000:]
    printed = profile.run.stderr.strip().splitlines()
    assert printed[-1].split(": 25 node(s) in ")[0].endswith("kedro run __default__")
    # One line per stage and the run's, as on the embedded default: no library's
    # notices (Feast's driver advice, Ray's connection lines, MLflow's run links).
    assert profile.run.stdout.strip() == ""
    assert len(printed) == 5, printed
    root = profile.root
    ca = str(root / ".bankplatform-tls/ca.crt")
    auth = (CLIENT, SECRETS["client"])
    # Lineage and the candidate on the tracking server (PostgreSQL behind it).
    runs = httpx.post(
        f"{profile.tracking_url}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": _experiments(profile),
            "filter": "tags.`kedro.pipelines` = '__default__'",
        },
        auth=auth,
        verify=ca,
        timeout=30,
    ).json()["runs"]
    tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    assert (runs[0]["info"]["status"], tags["lineage.sink"], tags["kedro.env"]) == (
        "FINISHED",
        "mlflow",
        "prod",
    )
    versions = httpx.get(
        f"{profile.tracking_url}/api/2.0/mlflow/registered-models/get?name=credit_default_pd",
        auth=auth,
        verify=ca,
        timeout=30,
    ).json()["registered_model"]["latest_versions"]
    assert [v["version"] for v in versions] == ["1"]
    # Trained across both Ray nodes; features in Redis; the registry in PostgreSQL.
    report = json.loads((root / "data/08_reporting/training_report.json").read_text())
    assert report["metrics"]["ray_nodes"] == 2.0
    online = redis.Redis(
        host="127.0.0.1",
        port=profile.redis.port,
        password=profile.redis.password,
        ssl=True,
        ssl_ca_certs=ca,
    )
    assert online.dbsize() >= 0.9 * CUSTOMERS
    connection = profile.postgres.connect("feast")
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT count(*) FROM feature_views")
        assert cursor.fetchone() == (5,)
    connection.close()  # type: ignore[attr-defined]
    # The evaluation judged the candidate; the production audit log is intact.
    outcome = json.loads((root / "data/08_reporting/gate_outcome.json").read_text())
    assert outcome["version"] == 1
    assert outcome["gate_status"] in {"passed", "failed"}
    verified = run_command(
        ["bankplatform", "audit", "verify", "--env", "prod"],
        root,
        extra_env={
            "BANKPLATFORM_TOKEN": _prod_token(root, "audrey.auditor", "auditor")
        },
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit log intact: ")
    # ... and it is the log in PostgreSQL: every record there, none in a file.
    audit: Any = profile.postgres.connect("audit")
    with audit.cursor() as cursor:
        cursor.execute(
            "SELECT log, count(*), max(seq) FROM bankplatform_audit_records GROUP BY log"
        )
        ((log, count, last),) = cursor.fetchall()
        cursor.execute(
            "SELECT line FROM bankplatform_audit_records WHERE seq IN (1, %s) ORDER BY seq",
            (last,),
        )
        first, read = (json.loads(bytes(row[0])) for row in cursor.fetchall())
        cursor.execute("SELECT line FROM bankplatform_audit_records ORDER BY seq")
        records = [json.loads(bytes(row[0])) for row in cursor.fetchall()]
    audit.close()
    # The snapshots ran as Ray Data tasks (features.engine: ray in conf/prod): the
    # transactions file opened once on the driver for its footer and once by the
    # read task of its one row group, each a decision of the key service for the
    # node's service identity on behalf of the run's token holder.
    opened = [
        (r["actor"], r["on_behalf_of"], r["outcome"])
        for r in records
        if (r["action"], r["resource"])
        == ("read_confidential", "dataset:transactions_primary")
    ]
    assert opened == [("svc-features", "scheduler", "allowed")] * 2
    assert (log, count) == (f"prod@{root.resolve()}", last)
    # Verified: all but the record of the verification itself, written after it.
    assert count >= 50 and f"{count - 1} records" in verified.stdout
    # The key service's first start (for keys init) installed its policy first.
    assert (first["action"], first["actor"]) == ("policy.install", "keyservice")
    assert records[1]["action"] == "keys.init"
    assert read["actor"] == "audrey.auditor"
    assert not (root / ".bankplatform-prod/audit/audit.jsonl").exists()
    # No secret in anything the run printed.
    everything = profile.run.stdout + profile.run.stderr
    assert not any(secret in everything for secret in SECRETS.values())


def _experiments(profile: Profile) -> list[str]:
    found = httpx.get(
        f"{profile.tracking_url}/api/2.0/mlflow/experiments/search?max_results=50",
        auth=(CLIENT, SECRETS["client"]),
        verify=str(profile.root / ".bankplatform-tls/ca.crt"),
        timeout=30,
    ).json()["experiments"]
    return [e["experiment_id"] for e in found]


def _prod_token(root: Path, user: str, *roles: str) -> str:
    """A token of the production trust domain, signed by its keyholder."""
    roles_args = [x for role in roles for x in ("--role", role)]
    command = ["bankplatform", "token", "issue", "--env", "prod", "--as-keyholder"]
    return _ok(
        run_command(
            [*command, "--user", user, *roles_args, "--ttl-minutes", "240"], root
        )
    ).strip()
