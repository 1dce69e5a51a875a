"""Behavioural tests of the planted default signal, through the real ingestion
pipeline (in-memory catalog, SequentialRunner) on 5k customers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bankplatform.contracts.raw import RAW_TABLES
from bankplatform.datasets import RawTableDataset
from bankplatform.pipelines.ingestion import create_pipeline
from bankplatform.security.runtime import acting_in_run
from bankplatform.synthetic import GeneratorConfig, generate_raw_extract

pytestmark = [pytest.mark.model, pytest.mark.slow]
FEATURES = [
    "log_income",
    "unemployed",
    "burden",
    "returned_dd",
    "late_fees",
    "atm_share",
    "gambling_share",
    "utilisation",
]


@pytest.fixture(scope="module")
def applications(
    tmp_path_factory: pytest.TempPathFactory, active_test_security: object
) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("extract_5k")
    generate_raw_extract(GeneratorConfig(customers=5_000, seed=3), folder)
    datasets = {
        f"{table}_raw": RawTableDataset(
            filepath=str(folder / f"{table}.parquet"), table=table
        )
        for table in RAW_TABLES
    }
    catalog = DataCatalog(
        datasets={
            **datasets,
            "params:ingestion": MemoryDataset({"as_of": "2026-12-31"}),
        }
    )
    for table in RAW_TABLES:
        catalog[f"{table}_accepted"] = ParquetDataset(
            filepath=str(folder / "accepted" / f"{table}.parquet")
        )
    contracts = create_pipeline().to_outputs(*(f"{t}_accepted" for t in RAW_TABLES))
    with acting_in_run(
        "ingestion"
    ):  # raw PII: the key service decides as for ingestion
        SequentialRunner().run(contracts, catalog)
    accepted = {table: catalog.load(f"{table}_accepted") for table in RAW_TABLES}
    return _simple_aggregates(accepted)


def _simple_aggregates(accepted: dict[str, pd.DataFrame]) -> pd.DataFrame:
    apps = accepted["loan_applications"].merge(
        accepted["loan_outcomes"], on="application_id"
    )
    apps = apps.merge(
        accepted["customers"][["customer_id", "income", "employment_status"]],
        on="customer_id",
    )
    txns = accepted["transactions"].merge(
        accepted["accounts"][["account_id", "customer_id", "credit_limit"]],
        on="account_id",
    )
    window = apps[["application_id", "customer_id", "applied_at"]].merge(
        txns, on="customer_id"
    )
    window = window[
        (window["booked_at"] < window["applied_at"])
        & (window["booked_at"] >= window["applied_at"] - pd.Timedelta(days=90))
    ]
    window = window.assign(
        returned_dd=window["channel"].eq("returned_direct_debit"),
        late_fees=window["channel"].eq("late_fee"),
        atm_share=window["channel"].eq("atm"),
        gambling_share=window["mcc"].eq("7995"),
        utilisation=(-window["balance_after"] / window["credit_limit"]).where(
            window["credit_limit"] > 0
        ),
    )
    aggregates = window.groupby("application_id").agg(
        returned_dd=("returned_dd", "sum"),
        late_fees=("late_fees", "sum"),
        atm_share=("atm_share", "mean"),
        gambling_share=("gambling_share", "mean"),
        utilisation=("utilisation", "mean"),
    )
    frame = apps.set_index("application_id").join(aggregates)
    frame = frame.assign(
        log_income=np.log(frame["income"].clip(lower=1)),
        unemployed=frame["employment_status"].eq("unemployed").astype(int),
        burden=np.log1p(frame["amount"] / frame["income"].clip(lower=1)),
    )
    return frame.fillna(
        {
            "returned_dd": 0,
            "late_fees": 0,
            "atm_share": 0,
            "gambling_share": 0,
            "utilisation": 0,
        }
    )


def test_logistic_regression_reaches_auc_070_out_of_time(
    applications: pd.DataFrame,
) -> None:
    cutoff = applications["applied_at"].quantile(0.7)
    train = applications[applications["applied_at"] < cutoff]
    later = applications[applications["applied_at"] >= cutoff]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
    model.fit(train[FEATURES], train["defaulted"])
    auc = roc_auc_score(later["defaulted"], model.predict_proba(later[FEATURES])[:, 1])
    assert 0.70 <= auc <= 0.90, auc
    assert 0.04 < applications["defaulted"].mean() < 0.15


@pytest.mark.parametrize(
    ("feature", "riskier_when_higher"),
    [
        ("income", False),
        ("utilisation", True),
        ("returned_dd", True),
        ("late_fees", True),
        ("burden", True),
    ],
)
def test_default_rate_moves_in_the_expected_direction(
    applications: pd.DataFrame, feature: str, riskier_when_higher: bool
) -> None:
    ranked = applications[feature].rank(method="first")
    bands = pd.qcut(ranked, 4, labels=False)
    rates = applications.groupby(bands)["defaulted"].mean()
    top_minus_bottom = rates.iloc[-1] - rates.iloc[0]
    assert top_minus_bottom > 0.02 if riskier_when_higher else top_minus_bottom < -0.02
