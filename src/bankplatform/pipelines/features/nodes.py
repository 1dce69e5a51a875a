"""Nodes of the features pipeline: feature tables, Feast registration and
materialisation, and the point-in-time training set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
from feast import FeatureStore

from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.feature_repo.definitions import (
    CUSTOMER_FEATURE_VIEWS,
    FEATURE_REPOSITORY,
    FEATURE_SERVICES,
)
from bankplatform.feature_repo.services import service_features
from bankplatform.features.customer_features import (
    BOOKING_COLUMNS,
    Population,
    customer_snapshot_chunks,
)
from bankplatform.features.on_ray import customer_snapshot_chunks_on_ray
from bankplatform.features.settings import FeaturesParameters
from bankplatform.features.store import (
    FeatureStoreError,
    register_definitions,
    training_set,
    write_online,
)
from bankplatform.ray_cluster import ray_connection
from bankplatform.security.runtime import DelegatedCaller

LABEL = "defaulted"


def build_customer_features(
    customers_primary: pd.DataFrame,
    accounts_primary: pd.DataFrame,
    transactions_primary: ParquetBatches,
    features: dict[str, Any],
) -> Iterator[pd.DataFrame]:
    """Monthly customer snapshots: transactions, balances, delinquency, profile.

    Args:
        customers_primary: Pseudonymised customers.
        accounts_primary: Pseudonymised accounts.
        transactions_primary: Pseudonymised transactions, read in batches of the
            columns the features use.
        features: ``params:features``.

    Returns:
        The snapshots a chunk of customers at a time (the dataset writes each as
        it comes): one row per customer and month, keyed by ``customer_token``
        and ``event_timestamp``.
    """
    parameters = FeaturesParameters.model_validate(features)
    if parameters.engine == "ray":
        return _snapshots_on_ray(
            Population.of(
                customers_primary, accounts_primary, parameters.chunk_customers
            ),
            transactions_primary,
            parameters.require_cluster,
        )
    return customer_snapshot_chunks(
        customers_primary,
        accounts_primary,
        transactions_primary.batches(BOOKING_COLUMNS),
        parameters.chunk_customers,
    )


def _snapshots_on_ray(
    population: Population, transactions: ParquetBatches, require_cluster: bool
) -> Iterator[pd.DataFrame]:
    """The Ray Data path, connected for as long as the dataset draws chunks."""
    caller = DelegatedCaller.of_this_process()  # the node's identity, now
    with ray_connection(
        os.cpu_count() or 1, require_cluster, "features.require_cluster"
    ):
        yield from customer_snapshot_chunks_on_ray(population, transactions, caller)


def build_application_features(loan_applications_primary: pd.DataFrame) -> pd.DataFrame:
    """The terms of each application at its application time.

    Args:
        loan_applications_primary: Pseudonymised loan applications.

    Returns:
        ``application_id``, ``customer_token``, ``event_timestamp`` (UTC) and the terms.
    """
    applications = loan_applications_primary
    return pd.DataFrame(
        {
            "application_id": applications["application_id"].astype(str),
            "customer_token": applications["customer_token"].astype(str),
            "event_timestamp": _utc(applications["applied_at"]),
            "loan_amount": applications["amount"].astype("float64"),
            "term_months": applications["term_months"].astype("int64"),
            "purpose": applications["purpose"].astype(str),
        }
    )


def register_feature_repository(
    feature_store: FeatureStore,
    customer_features: ParquetBatches,
    application_features: pd.DataFrame,
) -> dict[str, Any]:
    """``feast apply`` the repository (idempotent) once its tables hold every feature.

    Args:
        feature_store: The env's Feast store.
        customer_features: The saved customer snapshots (read in batches).
        application_features: The saved application terms.

    Returns:
        What is registered (views, services with version and features) and the
        customer table's latest snapshot and size, which materialisation needs.

    Raises:
        FeatureStoreError: A table lacks a defined feature, or a service changed.
    """
    columns = set(customer_features.schema().names) | set(application_features.columns)
    for service in FEATURE_SERVICES.values():
        absent = [
            r for r in service_features(service) if r.partition(":")[2] not in columns
        ]
        if absent:
            msg = f"feature tables lack {', '.join(absent)} served by {service.name}"
            raise FeatureStoreError(msg)
    registered = register_definitions(feature_store, FEATURE_REPOSITORY)
    registered["customer_table"] = _customer_table_summary(customer_features)
    return registered


def _customer_table_summary(customer_features: ParquetBatches) -> dict[str, Any]:
    """The latest snapshot and the number of customers, one batch at a time."""
    latest: pd.Timestamp | None = None
    customers: set[str] = set()
    for batch in customer_features.batches(["customer_token", "event_timestamp"]):
        if len(batch):
            newest = batch["event_timestamp"].max()
            latest = newest if latest is None else max(latest, newest)
        customers.update(batch["customer_token"].unique())
    if latest is None:
        msg = "customer_features holds no snapshot"
        raise FeatureStoreError(msg)
    return {"latest_snapshot": latest.isoformat(), "customers": len(customers)}


def materialize_online_store(
    feature_store: FeatureStore,
    customer_features: ParquetBatches,
    feature_registration: dict[str, Any],
) -> dict[str, Any]:
    """Load each customer's latest snapshot into the online store.

    Args:
        feature_store: The env's Feast store.
        customer_features: The snapshot table, sorted by customer token and time,
            read a batch at a time.
        feature_registration: The registration report: what is registered, and
            the customer table's latest snapshot.

    Returns:
        The views loaded, the snapshot they hold and the customers written.

    Raises:
        FeatureStoreError: Not every customer has a row at the latest snapshot.
    """
    table = feature_registration["customer_table"]
    latest = pd.Timestamp(table["latest_snapshot"])
    views = [view.name for view in CUSTOMER_FEATURE_VIEWS]
    # Every customer has a row at every snapshot, so the latest snapshot holds each
    # one's latest values: one row a customer, in token order (see write_online).
    rows = (
        batch[batch["event_timestamp"] == latest]
        for batch in customer_features.batches()
    )
    written = write_online(feature_store, views, rows)
    if written != table["customers"]:
        msg = f"customer_features: {written} customers at the latest snapshot {latest.isoformat()}, {table['customers']} in the table"
        raise FeatureStoreError(msg)
    return {
        "project": feature_registration["project"],
        "feature_views": views,
        "materialized_until": latest.isoformat(),
        "customers": written,
    }


def build_training_set(
    feature_store: FeatureStore,
    loan_applications_primary: pd.DataFrame,
    loan_outcomes_primary: pd.DataFrame,
    customers_primary: pd.DataFrame,
    feature_registration: dict[str, Any],
    features: dict[str, Any],
    protected_attributes: list[str],
) -> pd.DataFrame:
    """Point-in-time features for every labelled application, with its outcome.

    Args:
        feature_store: The env's Feast store.
        loan_applications_primary: Pseudonymised applications.
        loan_outcomes_primary: 12-month default outcomes.
        customers_primary: For the protected attributes (fairness tests only).
        feature_registration: The registration report (orders this after apply).
        features: ``params:features``.
        protected_attributes: ``params:governance.protected_attributes``, the
            customers' columns kept for fairness tests.

    Returns:
        One row per labelled application: keys, time, the service's features,
        ``defaulted``, and the protected attributes (never features).
    """
    parameters = FeaturesParameters.model_validate(features)
    service_name = parameters.feature_service
    if service_name not in feature_registration["feature_services"]:
        msg = f"feature service {service_name} is not registered"
        raise FeatureStoreError(msg)
    labelled = loan_applications_primary.merge(
        loan_outcomes_primary[["application_id", LABEL]], on="application_id"
    )
    entities = pd.DataFrame(
        {
            "application_id": labelled["application_id"].astype(str),
            "customer_token": labelled["customer_token"].astype(str),
            "event_timestamp": _utc(labelled["applied_at"]),
        }
    )
    # The registered service, not the local definition (they are equal once applied).
    registered = feature_store.get_feature_service(service_name)
    rows = training_set(feature_store, entities, registered)
    rows[LABEL] = labelled[LABEL].astype("int8").to_numpy()
    missing = [c for c in protected_attributes if c not in customers_primary.columns]
    if missing:
        msg = f"governance.protected_attributes names columns the customers lack: {', '.join(missing)}"
        raise FeatureStoreError(msg)
    protected = customers_primary.set_index("customer_token")[protected_attributes]
    return rows.join(protected, on="customer_token")


def keep_protected_attributes(
    customers_primary: pd.DataFrame, protected_attributes: list[str]
) -> pd.DataFrame:
    """Every customer's protected attributes by token: what the training pipeline
    joins to served decisions whose outcomes arrived (fairness tests only, never
    features), for customers who never applied in the extract too."""
    missing = [c for c in protected_attributes if c not in customers_primary.columns]
    if missing:
        msg = f"governance.protected_attributes names columns the customers lack: {', '.join(missing)}"
        raise FeatureStoreError(msg)
    return customers_primary[["customer_token", *protected_attributes]].reset_index(
        drop=True
    )


def _utc(times: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(times)
    return (
        stamps.dt.tz_localize("UTC")
        if stamps.dt.tz is None
        else stamps.dt.tz_convert("UTC")
    )
