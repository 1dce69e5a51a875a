"""Feast on the embedded default: point-in-time training set and online lookups.

Training set: 50k applications x 32 features (29 customer snapshot features from
25k customers x 24 monthly snapshots, 3 application terms) through Feast's DuckDB
offline store (`training_set`, our wrapper: row id, order, count check) against a
hand-written DuckDB ASOF JOIN with the same TTL, which must give identical values.
Target: <= 2x. Online: 1 customer x 29 features, 1000 calls, p50 and p99, through
our helper and through a bare `get_online_features`, against raw sqlite3 selects of
the same rows (the floor). Target: p99 <= 2 ms.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.feature_repo.definitions import (
    CUSTOMER_FEATURE_VIEWS,
    FEATURE_REPOSITORY,
    SNAPSHOT_TTL,
    credit_default_v1,
)
from bankplatform.feature_repo.services import feature_names, service_features
from bankplatform.features.store import (
    online_customer_features,
    register_definitions,
    training_set,
    write_online,
)

REPEATS = 3
CALLS = 1_000
_TEXT_FEATURES = {"employment_status": ["employed", "self_employed", "retired"]}


def _customer_table(customers: int, rng: np.random.Generator) -> pd.DataFrame:
    months = pd.date_range("2024-02-01", periods=24, freq="MS", tz="UTC")
    frame = pd.DataFrame(
        {
            "customer_token": np.repeat(
                [f"cus_{i:032x}" for i in range(customers)], len(months)
            ),
            "event_timestamp": np.tile(months, customers),
        }
    )
    for view in CUSTOMER_FEATURE_VIEWS:
        for field in view.features:
            if field.name in _TEXT_FEATURES:
                frame[field.name] = rng.choice(_TEXT_FEATURES[field.name], len(frame))
            elif field.name == "tenure_months":
                frame[field.name] = rng.integers(0, 400, len(frame))
            else:
                values = rng.normal(100, 50, len(frame))
                values[rng.random(len(frame)) < 0.05] = (
                    np.nan
                )  # some missing, as in real data
                frame[field.name] = values
    return frame


def _applications(rows: int, customers: int, rng: np.random.Generator) -> pd.DataFrame:
    applied = pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 700 * 86_400, rows), unit="s"
    )
    return pd.DataFrame(
        {
            "application_id": [f"L{i:09d}" for i in range(rows)],
            # Some unknown customers: their rows must come back with null features.
            "customer_token": [
                f"cus_{i:032x}" for i in rng.integers(0, int(customers * 1.02), rows)
            ],
            "event_timestamp": applied,
            "loan_amount": rng.integers(1_000, 30_000, rows).astype("float64"),
            "term_months": rng.choice([12, 24, 36, 48], rows),
            "purpose": rng.choice(["car", "holiday", "home_improvement"], rows),
        }
    )


def _asof_join(repo: Path, entities: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The floor: one DuckDB ASOF JOIN per source, TTL applied like Feast's."""
    customer = [n for n in names if n not in {"loan_amount", "term_months", "purpose"}]
    ttl = int(SNAPSHOT_TTL.total_seconds())
    fresh = f"epoch(e.event_timestamp) - epoch(c.event_timestamp) <= {ttl}"
    selected = ", ".join(
        [f"CASE WHEN {fresh} THEN c.{n} END AS {n}" for n in customer]
        + ["a.loan_amount", "a.term_months", "a.purpose"]
    )
    query = f"""
        SELECT e.*, {selected}
        FROM entities e
        ASOF LEFT JOIN read_parquet('{repo / "customer_features.parquet"}') c
          ON e.customer_token = c.customer_token AND e.event_timestamp >= c.event_timestamp
        ASOF LEFT JOIN read_parquet('{repo / "application_features.parquet"}') a
          ON e.application_id = a.application_id AND e.event_timestamp >= a.event_timestamp
        ORDER BY e._row
    """
    connection = duckdb.connect()
    connection.register("entities", entities.assign(_row=range(len(entities))))
    result = connection.execute(query).df().drop(columns="_row")
    connection.close()
    return result


def _differing_cells(ours: pd.DataFrame, floor: pd.DataFrame, names: list[str]) -> int:
    differing = 0
    for name in names:
        left, right = ours[name], floor[name]
        both_missing = left.isna() & right.isna()
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            same = np.isclose(left.astype(float), right.astype(float), equal_nan=True)
        else:
            same = left.astype(str).to_numpy() == right.astype(str).to_numpy()
        differing += int((~(same | both_missing.to_numpy())).sum())
    return differing


def _percentiles(call: Callable[[], object]) -> tuple[float, float]:
    for _ in range(20):
        call()  # warm caches (registry, connections)
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def _raw_select(repo: Path, project: str) -> Callable[[], object]:
    """The floor: the same customer's rows straight from the SQLite online store."""
    connection = sqlite3.connect(repo / "online.db")
    tables = [f"{project}_{view.name}" for view in CUSTOMER_FEATURE_VIEWS]
    (key,) = connection.execute(
        f"SELECT entity_key FROM {tables[0]} LIMIT 1"
    ).fetchone()

    def select() -> object:
        return [
            connection.execute(
                f"SELECT feature_name, value FROM {table} WHERE entity_key = ?", (key,)
            ).fetchall()
            for table in tables
        ]

    return select


def latest_rows(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Each customer's latest row, in token order (what the features node loads)."""
    ordered = snapshots.sort_values(["customer_token", "event_timestamp"])
    return ordered.groupby("customer_token").tail(1)


def main(quick: bool = False) -> None:
    """Build the tables, register, then time retrievals and lookups."""
    warnings.filterwarnings("ignore")  # Feast's and ibis's deprecation notices
    rng = np.random.default_rng(4)
    customers, applications = (2_500, 5_000) if quick else (25_000, 50_000)
    names = feature_names(credit_default_v1)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "04_feature"
        repo.mkdir()
        snapshots = _customer_table(customers, rng)
        snapshots.to_parquet(repo / "customer_features.parquet")
        terms = _applications(applications, customers, rng)
        terms.to_parquet(repo / "application_features.parquet")
        store = FeatureStoreDataset(filepath=str(repo), project="bench").load()
        register_definitions(store, FEATURE_REPOSITORY)
        entities = terms[["application_id", "customer_token", "event_timestamp"]]
        feast_times, floor_times = [], []
        for _ in range(REPEATS):
            started = time.perf_counter()
            ours = training_set(store, entities, credit_default_v1)
            feast_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            floor = _asof_join(repo, entities, names)
            floor_times.append(time.perf_counter() - started)
        differing = _differing_cells(ours, floor, names)
        feast_s, floor_s = (
            statistics.median(feast_times),
            statistics.median(floor_times),
        )
        print(
            f"  training set: {len(entities):,} applications x {len(names)} features, median of {REPEATS}"
        )
        print(
            f"    rows back: Feast {len(ours):,}, ASOF JOIN {len(floor):,}; differing cells: {differing}"
        )
        print(
            f"    Feast (DuckDB offline store) {feast_s:.2f} s, hand-written ASOF JOIN {floor_s:.2f} s"
        )
        print(f"    ratio Feast / ASOF JOIN: {feast_s / floor_s:.2f}x (target <= 2x)")

        started = time.perf_counter()
        write_online(
            store, [v.name for v in CUSTOMER_FEATURE_VIEWS], [latest_rows(snapshots)]
        )
        print(
            f"  online store loaded with {customers:,} customers in {time.perf_counter() - started:.1f} s"
        )
        refs = [
            r
            for r in service_features(credit_default_v1)
            if not r.startswith("loan_application")
        ]
        token = f"cus_{7:032x}"
        helper = _percentiles(lambda: online_customer_features(store, [token], refs))
        bare = _percentiles(
            lambda: store.get_online_features(
                features=refs, entity_rows=[{"customer_token": token}]
            ).to_dict()
        )
        raw = _percentiles(_raw_select(repo, store.project))
        print(
            f"  online lookup, 1 customer x {len(refs)} features, {CALLS} calls (p50 / p99 ms):"
        )
        print(f"    our helper (checks + DataFrame): {helper[0]:.2f} / {helper[1]:.2f}")
        print(f"    bare get_online_features:        {bare[0]:.2f} / {bare[1]:.2f}")
        print(f"    raw sqlite3 selects (floor):     {raw[0]:.3f} / {raw[1]:.3f}")
        print(
            f"    p99 target <= 2 ms: helper {'met' if helper[1] <= 2 else 'MISSED'}, bare {'met' if bare[1] <= 2 else 'MISSED'}"
        )
