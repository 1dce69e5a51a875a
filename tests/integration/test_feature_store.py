"""The real Feast store (SQLite online, DuckDB offline) on a tiny book: point in
time, TTL, row order and count, online/offline consistency, clear errors and
versioned feature services."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureService, FeatureStore

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.feature_repo.definitions import (
    CUSTOMER_FEATURE_VIEWS,
    FEATURE_REPOSITORY,
    credit_default_v1,
)
from bankplatform.feature_repo.services import feature_names, service_features
from bankplatform.features.customer_features import build_customer_snapshots
from bankplatform.features.store import (
    FeatureStoreError,
    online_customer_features,
    register_definitions,
    training_set,
    write_online,
)
from bankplatform.pipelines.features.nodes import (
    build_application_features,
    materialize_online_store,
)
from tests.conftest import tiny_book

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("workspace_security")]
T = pd.Timestamp
LATE = {
    "account_token": "acc_a1",
    "booked_at": T("2024-03-20 10:00"),
    "amount": -5_000.0,
    "channel": "transfer_out",
    "mcc": None,
    "balance_after": -3_110.0,
}


@pytest.fixture
def store_and_snapshots(tmp_path: Path) -> tuple[FeatureStore, pd.DataFrame]:
    customers, accounts, transactions = tiny_book()
    transactions = pd.concat([transactions, pd.DataFrame([LATE])], ignore_index=True)
    snapshots = build_customer_snapshots(customers, accounts, transactions, 10)
    repo = tmp_path / "04_feature"
    repo.mkdir()
    snapshots.to_parquet(repo / "customer_features.parquet")
    applications = pd.DataFrame(
        {
            "application_id": ["L1", "L2", "L3", "L4"],
            "customer_token": ["cus_a", "cus_b", "cus_a", "cus_zzz"],
            "applied_at": [
                T(
                    "2024-03-10 12:00"
                ),  # after the 1 March snapshot, before the late booking
                T("2024-03-05 09:00"),
                T(
                    "2024-06-15 09:00"
                ),  # 75 days after the last snapshot: beyond the TTL
                T("2024-03-10 12:00"),  # a customer the store has never seen
            ],
            "amount": [5_000.0, 8_000.0, 2_000.0, 1_000.0],
            "term_months": [24, 36, 12, 12],
            "purpose": ["car", "holiday", "car", "car"],
        }
    )
    build_application_features(applications).to_parquet(
        repo / "application_features.parquet"
    )
    store = FeatureStoreDataset(filepath=str(repo), project="testbank").load()
    register_definitions(store, FEATURE_REPOSITORY)
    return store, snapshots


def _entities() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "application_id": ["L1", "L2", "L3", "L4"],
            "customer_token": ["cus_a", "cus_b", "cus_a", "cus_zzz"],
            "event_timestamp": pd.to_datetime(
                [
                    "2024-03-10 12:00",
                    "2024-03-05 09:00",
                    "2024-06-15 09:00",
                    "2024-03-10 12:00",
                ],
                utc=True,
            ),
        }
    )


def _snapshot(snapshots: pd.DataFrame, token: str, month: str) -> pd.Series:
    chosen = snapshots[
        (snapshots["customer_token"] == token)
        & (snapshots["event_timestamp"] == T(month, tz="UTC"))
    ]
    return chosen.iloc[0]


def test_training_rows_hold_the_as_of_values_in_the_frames_order(
    store_and_snapshots: tuple[FeatureStore, pd.DataFrame],
) -> None:
    store, snapshots = store_and_snapshots
    rows = training_set(store, _entities(), credit_default_v1)
    assert list(rows["application_id"]) == [
        "L1",
        "L2",
        "L3",
        "L4",
    ]  # order and count kept
    features = feature_names(credit_default_v1)
    march = _snapshot(snapshots, "cus_a", "2024-03-01")
    april = _snapshot(snapshots, "cus_a", "2024-04-01")
    # The 20 March transfer changes April's balance, not what L1 (10 March) sees.
    assert april["current_balance"] != march["current_balance"]
    first = rows.iloc[0]
    for name in (
        "current_balance",
        "card_balance",
        "late_fee_count_90d",
        "txn_count_30d",
        "income",
    ):
        assert first[name] == march[name], name
    assert (first["loan_amount"], first["term_months"], first["purpose"]) == (
        5_000.0,
        24,
        "car",
    )
    assert rows.iloc[1]["income"] == 50_000.0
    # Beyond the 35-day TTL and unknown customers: the row stays, its features are null.
    for position in (2, 3):
        customer_values = rows.iloc[position][
            [f for f in features if f not in {"loan_amount", "term_months", "purpose"}]
        ]
        assert customer_values.isna().all(), position
    assert rows.iloc[2]["loan_amount"] == 2_000.0


def test_online_values_equal_the_latest_offline_ones(
    store_and_snapshots: tuple[FeatureStore, pd.DataFrame],
) -> None:
    store, snapshots = store_and_snapshots
    latest = snapshots.sort_values("event_timestamp").groupby("customer_token").tail(1)
    written = write_online(
        store, [v.name for v in CUSTOMER_FEATURE_VIEWS], [latest], batch_rows=1
    )
    assert written == 2
    refs = [
        ref
        for ref in service_features(credit_default_v1)
        if not ref.startswith("loan_application")
    ]
    online = online_customer_features(store, ["cus_a", "cus_b"], refs).set_index(
        "customer_token"
    )
    for _, row in latest.iterrows():
        for ref in refs:
            name = ref.partition(":")[2]
            expected, found = row[name], online.loc[row["customer_token"], name]
            if isinstance(expected, float) and math.isnan(expected):
                assert found is None or math.isnan(found), name
            else:
                assert found == expected, name
    assert online.loc["cus_a", "current_balance"] == -3_110.0


def test_unknown_features_customers_and_missing_keys_are_clear_errors(
    store_and_snapshots: tuple[FeatureStore, pd.DataFrame],
) -> None:
    store, snapshots = store_and_snapshots
    latest = snapshots.sort_values("event_timestamp").groupby("customer_token").tail(1)
    write_online(store, [v.name for v in CUSTOMER_FEATURE_VIEWS], [latest])
    with pytest.raises(FeatureStoreError) as caught:
        online_customer_features(store, ["cus_a"], ["customer_balances:salary"])
    assert str(caught.value).startswith(
        "unknown feature 'customer_balances:salary'; customer_balances has: current_balance, card_balance"
    )
    with pytest.raises(
        FeatureStoreError, match="unknown feature view 'customer_wealth'"
    ):
        online_customer_features(store, ["cus_a"], ["customer_wealth:net_worth"])
    with pytest.raises(FeatureStoreError) as caught:
        online_customer_features(
            store, ["cus_a", "cus_nobody"], ["customer_balances:current_balance"]
        )
    assert (
        str(caught.value) == "unknown customer token(s) in the online store: cus_nobody"
    )
    with pytest.raises(FeatureStoreError) as caught:
        training_set(
            store, _entities().drop(columns="application_id"), credit_default_v1
        )
    assert (
        str(caught.value)
        == "entity frame lacks column(s) application_id needed by credit_default_v1"
    )


def test_a_feature_service_cannot_change_silently(
    store_and_snapshots: tuple[FeatureStore, pd.DataFrame],
) -> None:
    store, _ = store_and_snapshots
    again = register_definitions(store, FEATURE_REPOSITORY)  # idempotent
    assert again["feature_services"]["credit_default_v1"]["version"] == "1"
    assert len(again["feature_services"]["credit_default_v1"]["features"]) == 32
    edited = FeatureService(
        name="credit_default_v1",
        features=list(CUSTOMER_FEATURE_VIEWS[:3]),
        tags={"version": "1"},
    )
    with pytest.raises(FeatureStoreError) as caught:
        register_definitions(store, [*FEATURE_REPOSITORY[:-1], edited])
    assert str(caught.value).startswith(
        "feature service credit_default_v1 is registered with other features (added: none; removed: customer_profile:employment_status"
    )
    assert str(caught.value).endswith("register it under a new version name")
    successor = FeatureService(
        name="credit_default_v2",
        features=list(CUSTOMER_FEATURE_VIEWS[:3]),
        tags={"version": "2"},
    )
    both = register_definitions(store, [*FEATURE_REPOSITORY, successor])
    assert set(both["feature_services"]) == {"credit_default_v1", "credit_default_v2"}


def test_the_node_loads_the_latest_snapshot_and_refuses_a_customer_missing_there(
    store_and_snapshots: tuple[FeatureStore, pd.DataFrame], tmp_path: Path
) -> None:
    store, snapshots = store_and_snapshots
    latest = snapshots["event_timestamp"].max()
    registration = {
        "project": "testbank",
        "customer_table": {
            "latest_snapshot": latest.isoformat(),
            "customers": snapshots["customer_token"].nunique(),
        },
    }

    def table(frame: pd.DataFrame) -> ParquetBatches:
        path = tmp_path / f"snapshots-{len(frame)}.parquet"
        frame.to_parquet(path, row_group_size=3)  # several batches
        return ParquetBatches("customer_features", lambda: path.open("rb"))

    report = materialize_online_store(store, table(snapshots), registration)
    assert report["customers"] == 2
    assert report["materialized_until"] == latest.isoformat()
    refs = ["customer_balances:current_balance", "customer_profile:income"]
    online = online_customer_features(store, ["cus_a", "cus_b"], refs)
    at_latest = snapshots[snapshots["event_timestamp"] == latest]
    assert online.set_index("customer_token")[["current_balance", "income"]].to_dict(
        "index"
    ) == at_latest.set_index("customer_token")[["current_balance", "income"]].to_dict(
        "index"
    )
    cus_b_latest = snapshots["customer_token"].eq("cus_b") & (
        snapshots["event_timestamp"] == latest
    )
    gap = snapshots[~cus_b_latest]
    with pytest.raises(FeatureStoreError) as refused:
        materialize_online_store(store, table(gap), registration)
    assert str(refused.value) == (
        f"customer_features: 1 customers at the latest snapshot {latest.isoformat()}, "
        "2 in the table"
    )


def test_the_bulk_sqlite_write_makes_feast_s_own_rows(
    store_and_snapshots: tuple[FeatureStore, pd.DataFrame], tmp_path: Path
) -> None:
    """The online store loaded column by column holds exactly the rows Feast's own
    write makes: keys, ValueProto bytes, value_text, event_ts (NaN, 0.0, -0.0,
    integers, strings, a microsecond timestamp among them); and Feast reads them."""
    import sqlite3

    import numpy as np

    from bankplatform.features.sqlite_online import bulk_writable, write_sqlite_online

    store, snapshots = store_and_snapshots
    rows = snapshots.groupby("customer_token").tail(1).reset_index(drop=True)
    rows.loc[0, "txn_amount_sum_7d"] = 0.0
    rows.loc[1, "txn_amount_sum_7d"] = -0.0
    rows.loc[0, "card_utilisation"] = np.nan
    rows.loc[1, "event_timestamp"] = T("2026-01-02 03:04:05.678901", tz="UTC")
    twin_repo = tmp_path / "twin"
    twin_repo.mkdir()
    for name in ("customer_features.parquet", "application_features.parquet"):
        (twin_repo / name).write_bytes(
            (Path(store.config.repo_path) / name).read_bytes()
        )
    twin = FeatureStoreDataset(filepath=str(twin_repo), project="testbank").load()
    register_definitions(twin, FEATURE_REPOSITORY)
    for view in CUSTOMER_FEATURE_VIEWS:
        registered = twin.get_feature_view(view.name)
        assert bulk_writable(twin, registered)
        store.write_to_online_store(view.name, rows)  # Feast's own write
        write_sqlite_online(twin, registered, rows)

    def table(repo: Path, view: str) -> list[tuple[object, ...]]:
        columns = "entity_key, feature_name, value, value_text, event_ts, created_ts"
        query = f'SELECT {columns} FROM "testbank_{view}"'  # noqa: S608 - the test's own table
        with sqlite3.connect(repo / "online.db") as db:
            return sorted(db.execute(query).fetchall())

    for view in CUSTOMER_FEATURE_VIEWS:
        feast_rows = table(Path(store.config.repo_path), view.name)
        assert len(feast_rows) == len(rows) * len(view.features)
        assert table(twin_repo, view.name) == feast_rows
    refs = service_features(credit_default_v1)[:29]
    tokens = list(rows["customer_token"])
    assert online_customer_features(twin, tokens, refs).equals(
        online_customer_features(store, tokens, refs)
    )
