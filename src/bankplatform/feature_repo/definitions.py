"""Feast definitions: entities, sources, feature views and versioned feature services.

Sources are parquet files in the feature layer (``data/04_feature``), which is
also the Feast repo folder: relative paths resolve there. Customer features are
monthly snapshots: a row at ``event_timestamp`` T summarises what was booked
before T, so a point-in-time join for an application at time A takes the
latest snapshot at or before A and never sees later activity. Protected
attributes (gender, age band) are never features.

A feature service is versioned by name: changing what ``credit_default_v1``
serves is refused at registration; define ``credit_default_v2`` instead.
"""

from __future__ import annotations

from datetime import timedelta

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    ValueType,
)
from feast.types import Float64, Int64, String

CUSTOMER_FEATURES_FILE = "customer_features.parquet"
APPLICATION_FEATURES_FILE = "application_features.parquet"
WINDOWS_DAYS = (7, 30, 90)
# Monthly snapshots: a customer's latest row is at most one month old; 35 days
# lets every application find the previous month's snapshot, and no older one.
SNAPSHOT_TTL = timedelta(days=35)

customer = Entity(
    name="customer",
    join_keys=["customer_token"],
    value_type=ValueType.STRING,
    description="A customer, by pseudonymous token (never a raw customer id).",
)
loan_application = Entity(
    name="loan_application",
    join_keys=["application_id"],
    value_type=ValueType.STRING,
    description="One loan application.",
)

customer_features_source = FileSource(
    name="customer_features_source",
    path=CUSTOMER_FEATURES_FILE,
    timestamp_field="event_timestamp",
    description="Monthly customer snapshots built by the features pipeline.",
)
# The stream's way in (``bankplatform stream``): rows pushed here update every
# customer view in the online store at once; history still comes from the snapshots.
customer_features_push = PushSource(
    name="customer_features_push",
    batch_source=customer_features_source,
    description="Customer features recomputed from streamed core-banking bookings.",
)
application_features_source = FileSource(
    name="application_features_source",
    path=APPLICATION_FEATURES_FILE,
    timestamp_field="event_timestamp",
    description="Loan applications as submitted, at their application time.",
)


def _floats(*names: str) -> list[Field]:
    return [Field(name=name, dtype=Float64) for name in names]


customer_transactions_fv = FeatureView(
    name="customer_transactions",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    source=customer_features_push,
    schema=[
        *_floats(
            *(
                f"txn_{measure}_{days}d"
                for days in WINDOWS_DAYS
                for measure in ("count", "amount_sum", "amount_mean", "amount_std")
            )
        ),
        *_floats(
            "atm_count_30d",
            "ecommerce_count_30d",
            "card_spend_90d",
            "gambling_spend_90d",
            "grocery_spend_90d",
            "gambling_share_90d",
        ),
    ],
    description="Transaction aggregates over 7, 30 and 90 days, by channel and merchant group.",
)
customer_balances_fv = FeatureView(
    name="customer_balances",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    source=customer_features_push,
    schema=_floats(
        "current_balance", "card_balance", "credit_limit", "card_utilisation"
    ),
    description="Balances at the snapshot and credit card utilisation.",
)
customer_delinquency_fv = FeatureView(
    name="customer_delinquency",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    source=customer_features_push,
    schema=_floats(
        "returned_dd_count_90d",
        "returned_dd_count_365d",
        "late_fee_count_90d",
        "late_fee_count_365d",
    ),
    description="Returned direct debits and late fees over 90 and 365 days.",
)
customer_profile_fv = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    source=customer_features_push,
    schema=[
        Field(name="income", dtype=Float64),
        Field(name="employment_status", dtype=String),
        Field(name="tenure_months", dtype=Int64),
    ],
    description="Profile fields allowed as features (never gender or age band).",
)
loan_application_fv = FeatureView(
    name="loan_application_terms",
    entities=[loan_application],
    ttl=timedelta(days=1),
    source=application_features_source,
    online=False,  # at scoring time the terms come with the request
    schema=[
        Field(name="loan_amount", dtype=Float64),
        Field(name="term_months", dtype=Int64),
        Field(name="purpose", dtype=String),
    ],
    description="What was applied for.",
)

CUSTOMER_FEATURE_VIEWS = (
    customer_transactions_fv,
    customer_balances_fv,
    customer_delinquency_fv,
    customer_profile_fv,
)

credit_default_v1 = FeatureService(
    name="credit_default_v1",
    features=[*CUSTOMER_FEATURE_VIEWS, loan_application_fv],
    tags={"version": "1", "model": "credit_default_pd"},
    description="Features of the retail credit default (PD) model, version 1.",
)

FEATURE_SERVICES = {service.name: service for service in (credit_default_v1,)}
FEATURE_REPOSITORY = [
    customer,
    loan_application,
    customer_features_source,
    customer_features_push,
    application_features_source,
    *CUSTOMER_FEATURE_VIEWS,
    loan_application_fv,
    *FEATURE_SERVICES.values(),
]
