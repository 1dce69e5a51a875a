"""`kedro run --pipeline features` on the ingested 1k extract: the training set,
the store's registration, lineage, audit, notebook 02, and no raw PII."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.feature_repo import credit_default_v1
from bankplatform.feature_repo.services import feature_names, service_features
from bankplatform.features.store import (
    online_customer_features,
)
from tests.conftest import (
    labelled_applications,
    notebook_summary,
    raw_pii_values,
    read_encrypted,
)

pytestmark = [pytest.mark.integration]
FEATURES = feature_names(credit_default_v1)


def _training_set(root: Path) -> pd.DataFrame:
    return read_encrypted(
        root / "data" / "05_model_input" / "training_set.parquet.enc", "training_set"
    )


def test_the_training_set_has_one_row_per_labelled_application(
    featured_workspace: Path,
) -> None:
    labelled = labelled_applications(featured_workspace)
    primary = featured_workspace / "data" / "03_primary"
    rows = _training_set(featured_workspace)
    assert len(rows) == len(labelled)
    assert set(rows["application_id"]) == set(labelled["application_id"])
    assert list(rows.columns) == [
        "application_id",
        "customer_token",
        "event_timestamp",
        *FEATURES,
        "defaulted",
        "gender",
        "age_band",
    ]
    assert len(FEATURES) == 32 and not {"gender", "age_band"} & set(FEATURES)
    joined = rows.merge(labelled, on="application_id", suffixes=("", "_source"))
    assert (joined["defaulted"] == joined["defaulted_source"]).all()
    assert (joined["loan_amount"] == joined["amount"]).all()
    # Every application after the first snapshot finds its customer's snapshot.
    assert rows["income"].notna().mean() > 0.95
    registration = json.loads(
        (featured_workspace / "data/08_reporting/feature_registration.json").read_text()
    )
    assert registration["feature_services"]["credit_default_v1"] == {
        "version": "1",
        "features": service_features(credit_default_v1),
    }
    online = json.loads(
        (
            featured_workspace / "data/08_reporting/online_store_materialization.json"
        ).read_text()
    )
    customers = read_encrypted(primary / "customers.parquet.enc", "customers_primary")
    assert online["customers"] == len(customers)


def test_the_online_store_holds_every_customers_latest_snapshot(
    featured_workspace: Path,
) -> None:
    """Materialised from the latest snapshot only (one row a customer, not the
    history): the values are each customer's latest offline ones, for all of them."""
    from feast import FeatureStore

    snapshots = pd.read_parquet(
        featured_workspace / "data/04_feature/customer_features.parquet"
    )
    latest = snapshots[
        snapshots["event_timestamp"] == snapshots["event_timestamp"].max()
    ]
    assert latest["customer_token"].is_unique
    assert set(latest["customer_token"]) == set(snapshots["customer_token"])
    store = FeatureStore(repo_path=str(featured_workspace / "data/04_feature"))
    refs = [
        r for r in service_features(credit_default_v1) if "loan_application" not in r
    ]
    tokens = latest["customer_token"].tolist()
    online = online_customer_features(store, tokens, refs).set_index("customer_token")
    expected = latest.set_index("customer_token")[[r.partition(":")[2] for r in refs]]
    numbers = expected.select_dtypes("number").columns
    text = expected.columns.difference(numbers)
    assert len(numbers) > 25 and list(text) == ["employment_status"]
    pd.testing.assert_frame_equal(
        online.loc[tokens, numbers].astype("float64"),
        expected.loc[tokens, numbers].astype("float64"),
        check_names=False,
    )
    assert (
        online.loc[tokens, text].astype(str) == expected.loc[tokens, text].astype(str)
    ).all(axis=None)


def test_the_run_records_its_feature_service_and_acts_as_the_features_service(
    featured_workspace: Path,
) -> None:
    client = MlflowClient(f"sqlite:///{featured_workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("credit_default_pd")
    assert experiment is not None
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`kedro.pipelines` = 'features'"
    )
    tags = run.data.tags
    assert (tags["feast.feature_service"], tags["feast.feature_service_version"]) == (
        "credit_default_v1",
        "1",
    )
    assert tags["feast.features"].split(",") == service_features(credit_default_v1)
    assert tags["feast.training_set"] == "training_set"
    inputs = {i.dataset.name for i in run.inputs.dataset_inputs}
    assert {"customers_primary", "transactions_primary"} <= inputs
    log = featured_workspace / ".bankplatform" / "audit" / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    start = max(
        i
        for i, r in enumerate(records)
        if r["resource"] == "pipeline:features" and r["action"] == "pipeline.run.start"
    )
    access = [r for r in records[start:] if r["action"].startswith(("read_", "write_"))]
    assert {(r["actor"], r["on_behalf_of"], r["outcome"]) for r in access} == {
        ("svc-features", "local-developer", "allowed")
    }
    assert ("write_confidential", "dataset:training_set") in {
        (r["action"], r["resource"]) for r in access
    }


def test_no_raw_pii_value_reaches_the_feature_layer_or_training_set(
    featured_workspace: Path,
) -> None:
    pii = raw_pii_values(featured_workspace)
    tables = [
        pd.read_parquet(
            featured_workspace / "data/04_feature/customer_features.parquet"
        ),
        pd.read_parquet(
            featured_workspace / "data/04_feature/application_features.parquet"
        ),
        _training_set(featured_workspace),
    ]
    cells = {
        str(value)
        for table in tables
        for column in table.columns
        if not pd.api.types.is_numeric_dtype(table[column])
        for value in table[column].dropna().unique()
    }
    assert len(cells) > 1_000
    assert not cells & pii
    online = (
        (featured_workspace / "data/04_feature/online.db")
        .read_bytes()
        .decode("latin-1")
    )
    log = (featured_workspace / "kedro_features_run.log").read_text()
    assert [value for value in pii if value in online or value in log] == []


def test_the_features_notebook_shows_what_the_pipeline_built(
    featured_workspace: Path, tmp_path: Path
) -> None:
    summary = notebook_summary(
        "02_features_with_feast.ipynb", featured_workspace, tmp_path
    )
    rows = _training_set(featured_workspace)
    assert summary == {
        "env": "test",
        "feature_service": "credit_default_v1",
        "version": "1",
        "features": 32,
        "training_rows": len(rows),
        "default_rate": round(float(rows["defaulted"].mean()), 4),
        "online_customers": 3,
    }
