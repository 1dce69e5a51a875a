"""The production profile's stores against the embedded default's, on this machine.

Online lookups: 1 customer x 29 features, 1000 calls (p50, p99), through our helper
from Feast's Redis online store over TLS (password, CA-verified, a Redis of the
benchmark's own) against the SQLite online store, the same customers
materialised into both. MLflow logging per run (30 params, 10 metrics, one small
artefact, the run opened and closed: what a pipeline run's lineage costs) through
the tracking server on PostgreSQL (HTTPS, basic auth, one worker) against the
SQLite store. Ratios from medians; the targets are the issue's: Redis p99 within
2x of SQLite's, and a run's logging well under a second.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers

from tests.helpers import free_port
from tests.servers import (
    PostgresTLS,
    RedisTLS,
    start_postgres,
    start_redis,
)

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.feature_repo.definitions import (
    CUSTOMER_FEATURE_VIEWS,
    FEATURE_REPOSITORY,
    credit_default_v1,
)
from bankplatform.feature_repo.services import service_features
from bankplatform.features.store import (
    online_customer_features,
    register_definitions,
    write_online,
)
from bankplatform.lineage.tracking_server import (
    TrackingServerSettings,
    server_launch,
)
from bankplatform.security.tls import issue_certificate, local_ca
from feature_store import _customer_table, _percentiles, latest_rows

RUNS = 30


def _online(
    repo: Path, table: pd.DataFrame, store_options: dict[str, object]
) -> tuple[float, float]:
    repo.mkdir(parents=True)
    table.to_parquet(repo / "customer_features.parquet")
    table.head(0).to_parquet(repo / "application_features.parquet")
    store = FeatureStoreDataset(
        filepath=str(repo), project="bench", **store_options
    ).load()  # type: ignore[arg-type]
    register_definitions(store, FEATURE_REPOSITORY)
    write_online(store, [v.name for v in CUSTOMER_FEATURE_VIEWS], [latest_rows(table)])
    refs = [
        r
        for r in service_features(credit_default_v1)
        if not r.startswith("loan_application")
    ]
    token = f"cus_{7:032x}"
    return _percentiles(lambda: online_customer_features(store, [token], refs))


def _log_runs(client: MlflowClient, experiment: str) -> float:
    """Median seconds to open, fill and close one run."""
    experiment_id = client.create_experiment(experiment)
    times = []
    for number in range(RUNS):
        started = time.perf_counter()
        run = client.create_run(experiment_id, run_name=f"run-{number}")
        client.log_batch(
            run.info.run_id,
            params=[Param(f"param_{i}", str(i)) for i in range(30)],
            metrics=[Metric(f"metric_{i}", float(i), 0, 0) for i in range(10)],
        )
        client.log_text(run.info.run_id, "lineage graph " * 100, "lineage/graph.txt")
        client.set_terminated(run.info.run_id)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _online_comparison(
    root: Path, ca_cert: Path, redis_server: RedisTLS, customers: int
) -> None:
    table = _customer_table(customers, np.random.default_rng(4))
    sqlite = _online(root / "sqlite", table, {})
    redis_options = {
        "online_store": {
            "type": "redis",
            "connection_string": f"127.0.0.1:{redis_server.port},ssl=true,"
            f"ssl_cert_reqs=required,ssl_ca_certs={ca_cert}",
        },
        "credentials": {"online_store_password": redis_server.password},
    }
    found = _online(root / "redis-repo", table, redis_options)
    print(
        f"  online lookup, 1 customer x 29 features, 1000 calls, {customers:,} customers (p50 / p99 ms):"
    )
    print(f"    SQLite (embedded default):   {sqlite[0]:.2f} / {sqlite[1]:.2f}")
    print(f"    Redis over TLS (production): {found[0]:.2f} / {found[1]:.2f}")
    print(f"    ratio p99 Redis / SQLite: {found[1] / sqlite[1]:.2f}x (target <= 2x)")


def _start_tracking_server(
    root: Path, postgres: PostgresTLS, ca_cert: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    database_secret, admin_secret = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    postgres.execute(
        f"CREATE ROLE mlflow LOGIN PASSWORD '{database_secret}'",
        "CREATE DATABASE mlflow OWNER mlflow",
        "CREATE DATABASE mlflow_auth OWNER mlflow",
    )
    port = free_port()
    settings = TrackingServerSettings(port=port, workers=1, database_port=postgres.port)
    command, environment = server_launch(
        settings,
        {
            "database_password": database_secret,
            "admin_password": admin_secret,
            "flask_secret_key": secrets.token_hex(24),
        },
        root,
    )
    server = subprocess.Popen(
        command,
        env=environment,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if (
                httpx.get(f"{url}/health", verify=str(ca_cert), timeout=5).status_code
                == 200
            ):
                return server, url, admin_secret
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def _logging_comparison(root: Path, postgres: PostgresTLS, ca_cert: Path) -> None:
    server, url, admin_secret = _start_tracking_server(root, postgres, ca_cert)
    try:
        os.environ.update(
            MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
            MLFLOW_TRACKING_USERNAME="admin",
            MLFLOW_TRACKING_PASSWORD=admin_secret,
            MLFLOW_TRACKING_SERVER_CERT_PATH=str(ca_cert),
        )
        on_server = _log_runs(MlflowClient(url), "bench-server")
        on_sqlite = _log_runs(
            MlflowClient(f"sqlite:///{root / 'mlflow.db'}"), "bench-sqlite"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(
        f"  MLflow logging per run (30 params, 10 metrics, 1 artefact), median of {RUNS}:"
    )
    print(
        f"    SQLite store (embedded default):                  {on_sqlite * 1000:.0f} ms"
    )
    print(
        f"    tracking server on PostgreSQL, HTTPS, basic auth: {on_server * 1000:.0f} ms"
    )
    print(f"    ratio server / SQLite: {on_server / on_sqlite:.2f}x")


def main(quick: bool = False) -> None:
    """Start PostgreSQL, Redis and the tracking server of our own; time both stores."""
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tls = root / ".bankplatform-tls"
        ca = local_ca(tls)
        for name in ("postgres", "redis", "mlflow"):
            issue_certificate(
                ca, tls / f"{name}.crt", tls / f"{name}.key", ["127.0.0.1", "localhost"]
            )
        postgres = start_postgres(
            tls / "postgres.crt", tls / "postgres.key", ca.cert_file
        )
        redis_server = start_redis(
            tls / "redis.crt", tls / "redis.key", ca.cert_file, root / "redis"
        )
        try:
            _online_comparison(
                root, ca.cert_file, redis_server, 1_000 if quick else 5_000
            )
            _logging_comparison(root, postgres, ca.cert_file)
        finally:
            redis_server.stop()
            postgres.stop()
