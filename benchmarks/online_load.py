"""Loading the online store for a million customers (32 features each).

Three ways into the same SQLite schema (Feast's own tables, from ``feast apply``),
in the same run: ``write_online`` (what the features pipeline's materialisation
runs: ``sqlite_online``'s column-at-a-time rows, one ``executemany`` per batch),
Feast's own ``write_to_online_store`` (timed on a slice, its rate carried to the
whole: it was 483 s at a million), and the floor: the same rows, already made,
inserted with one ``executemany`` per batch into an empty copy of the schema.
Then the production profile's figure: Feast's write into a Redis of the
benchmark's own over TLS (timed on a slice as well). Target: within 3x of the
floor.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.feature_repo.definitions import (
    CUSTOMER_FEATURE_VIEWS,
    FEATURE_REPOSITORY,
)
from bankplatform.features.sqlite_online import _encoded, _event_times, entity_keys
from bankplatform.features.store import register_definitions, write_online
from feature_store import _customer_table

BATCH = 10_000
VIEWS = [view.name for view in CUSTOMER_FEATURE_VIEWS]


def _latest_table(customers: int) -> pd.DataFrame:
    """One row per customer (their latest snapshot), in token order."""
    rng = np.random.default_rng(8)
    frames = []
    for start in range(0, customers, 100_000):
        part = (
            _customer_table(min(100_000, customers - start), rng)
            .groupby("customer_token")
            .tail(1)
        )
        part["customer_token"] = [f"cus_{start + i:032x}" for i in range(len(part))]
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def _store(repo: Path, table: pd.DataFrame, **options: object) -> object:
    repo.mkdir(parents=True)
    table.head(10).to_parquet(repo / "customer_features.parquet")
    table.head(0).to_parquet(repo / "application_features.parquet")
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    # The catalog dataset's own Feast configuration, without its access check (the
    # benchmark has no key service to ask).
    settings = FeatureStoreDataset(
        filepath=str(repo), project="bench", **options
    ).repo_settings(True)  # type: ignore[arg-type]
    store = FeatureStore(config=RepoConfig(repo_path=repo, **settings))
    register_definitions(store, FEATURE_REPOSITORY)
    return store


def _batches(table: pd.DataFrame) -> list[pd.DataFrame]:
    return [table.iloc[s : s + BATCH] for s in range(0, len(table), BATCH)]


def _feast_rate(store: object, table: pd.DataFrame, rows: int) -> float:
    """Seconds per customer of Feast's own write, over ``rows`` customers."""
    started = time.perf_counter()
    for part in _batches(table.head(rows)):
        for view in VIEWS:
            store.write_to_online_store(view, part)  # type: ignore[attr-defined]
    return (time.perf_counter() - started) / rows


def _floor(store: object, table: pd.DataFrame, target: Path) -> float:
    """The same rows, made beforehand, inserted into an empty copy of the schema."""
    source = Path(store.config.repo_path) / "online.db"  # type: ignore[attr-defined]
    with sqlite3.connect(source) as db:
        schema = [
            sql
            for (sql,) in db.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"
            )
        ]
    connection = sqlite3.connect(target)
    for statement in schema:
        connection.execute(statement)
    views = {v.name: v for v in CUSTOMER_FEATURE_VIEWS}
    spent = 0.0
    for part in _batches(table):
        keys = entity_keys(part["customer_token"], 3)
        order = np.argsort(np.asarray(keys, dtype=object), kind="stable").tolist()
        stamps = _event_times(part["event_timestamp"])
        for name in VIEWS:
            columns = [
                (f.name, *_encoded(part[f.name], f.dtype))
                for f in sorted(views[name].features, key=lambda f: f.name)
            ]
            rows = [
                (keys[i], feature, values[i], texts[i], stamps[i], None)
                for i in order
                for feature, values, texts in columns
            ]
            started = time.perf_counter()
            with connection:
                connection.executemany(
                    f'INSERT INTO "bench_{name}" (entity_key, feature_name, value, '
                    "value_text, event_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            spent += time.perf_counter() - started
    connection.close()
    return spent


def _redis_rate(root: Path, table: pd.DataFrame, rows: int) -> float:
    sys_path = str(Path(__file__).resolve().parents[1])
    import sys

    sys.path.insert(0, sys_path)
    from tests.servers import start_redis

    from bankplatform.security.tls import issue_certificate, local_ca

    tls = root / "tls"
    ca = local_ca(tls)
    issue_certificate(ca, tls / "redis.crt", tls / "redis.key", ["127.0.0.1"])
    server = start_redis(
        tls / "redis.crt", tls / "redis.key", ca.cert_file, root / "redis"
    )
    try:
        store = _store(
            root / "redis-repo",
            table,
            online_store={
                "type": "redis",
                "connection_string": f"127.0.0.1:{server.port},ssl=true,"
                f"ssl_cert_reqs=required,ssl_ca_certs={ca.cert_file}",
            },
            credentials={"online_store_password": server.password},
        )
        started = time.perf_counter()
        write_online(store, VIEWS, [table.head(rows)], BATCH)  # Feast's write for Redis
        return (time.perf_counter() - started) / rows
    finally:
        server.stop()


def main(quick: bool = False) -> None:
    warnings.filterwarnings("ignore")
    customers, slice_rows = (50_000, 10_000) if quick else (1_000_000, 50_000)
    table = _latest_table(customers)
    features = sum(len(v.features) for v in CUSTOMER_FEATURE_VIEWS)
    with tempfile.TemporaryDirectory(
        prefix="bench-online-", ignore_cleanup_errors=True
    ) as folder:
        root = Path(folder)
        ours_store = _store(root / "ours", table)
        started = time.perf_counter()
        written = write_online(ours_store, VIEWS, [table], BATCH)
        ours = time.perf_counter() - started
        floor = _floor(ours_store, table, root / "floor.db")
        feast = (
            _feast_rate(_store(root / "feast", table), table, slice_rows) * customers
        )
        redis = _redis_rate(root, table, slice_rows) * customers
    print(
        f"  {written:,} customers x {features} features into the SQLite online store:"
    )
    print(f"    write_online (column at a time, executemany):  {ours:,.1f} s")
    print(f"    floor (the same rows made beforehand, plain insert): {floor:,.1f} s")
    print(f"    ratio: {ours / floor:.2f}x the floor (target <= 3x)")
    print(
        f"    Feast's own write, {slice_rows:,} customers timed, carried to {customers:,}: "
        f"{feast:,.0f} s ({feast / ours:.1f}x ours)"
    )
    print(
        f"  production profile, Redis over TLS (Feast's write), {slice_rows:,} timed, carried "
        f"to {customers:,}: {redis:,.0f} s"
    )
