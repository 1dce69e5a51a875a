"""Customer snapshots computed by hand on a tiny book: windows, balances, delinquency,
and no snapshot ever sees a later booking."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from bankplatform.features.customer_features import (
    build_customer_snapshots,
    customer_snapshot_chunks,
    snapshot_times,
)
from tests.conftest import tiny_book

pytestmark = pytest.mark.unit
T = pd.Timestamp


def _snapshot(features: pd.DataFrame, token: str, month: str) -> pd.Series:
    at = T(month, tz="UTC")
    row = features[
        (features["customer_token"] == token) & (features["event_timestamp"] == at)
    ]
    assert len(row) == 1
    return row.iloc[0]


def test_every_customer_has_one_row_per_month_start_after_the_first_booking() -> None:
    customers, accounts, transactions = tiny_book()
    features = build_customer_snapshots(
        customers, accounts, transactions, chunk_customers=1
    )
    assert list(snapshot_times(transactions["booked_at"])) == [
        T("2024-02-01"),
        T("2024-03-01"),
        T("2024-04-01"),
    ]
    assert len(features) == 2 * 3
    assert "gender" not in features  # a protected attribute, never a feature


def test_window_aggregates_match_a_hand_count() -> None:
    customers, accounts, transactions = tiny_book()
    features = build_customer_snapshots(
        customers, accounts, transactions, chunk_customers=1
    )
    feb = _snapshot(features, "cus_a", "2024-02-01")
    # 7 days before 1 Feb: the ATM withdrawal (28 Jan) and the card payment (30 Jan).
    assert (feb["txn_count_7d"], feb["txn_amount_sum_7d"]) == (2.0, -350.0)
    assert feb["txn_amount_mean_7d"] == -175.0
    assert math.isclose(feb["txn_amount_std_7d"], pd.Series([-50.0, -300.0]).std())
    # 30 days: all four January bookings.
    assert (feb["txn_count_30d"], feb["txn_amount_sum_30d"]) == (4.0, 1_550.0)
    assert feb["atm_count_30d"] == 1.0 and feb["ecommerce_count_30d"] == 1.0
    # Card spend: POS groceries 100 and the online gambling 300.
    assert (
        feb["card_spend_90d"],
        feb["grocery_spend_90d"],
        feb["gambling_spend_90d"],
    ) == (
        400.0,
        100.0,
        300.0,
    )
    assert feb["gambling_share_90d"] == 0.75
    assert (feb["current_balance"], feb["card_balance"], feb["credit_limit"]) == (
        1_850.0,
        -300.0,
        1_000.0,
    )
    assert feb["card_utilisation"] == 0.3
    mar = _snapshot(features, "cus_a", "2024-03-01")
    assert (mar["late_fee_count_90d"], mar["returned_dd_count_90d"]) == (1.0, 1.0)
    assert (mar["current_balance"], mar["card_balance"]) == (1_890.0, -312.0)
    assert mar["txn_count_7d"] == 0.0
    assert math.isnan(mar["txn_amount_mean_7d"])  # no bookings: no mean, not zero
    b_feb = _snapshot(features, "cus_b", "2024-02-01")
    assert (b_feb["txn_count_90d"], b_feb["current_balance"], b_feb["income"]) == (
        0.0,
        0.0,
        50_000.0,
    )


def test_a_later_booking_never_changes_an_earlier_snapshot() -> None:
    customers, accounts, transactions = tiny_book()
    before = build_customer_snapshots(
        customers, accounts, transactions, chunk_customers=5
    )
    later = pd.DataFrame(
        {
            "account_token": ["acc_a1"],
            "booked_at": [T("2024-03-20 10:00")],
            "amount": [-5_000.0],
            "channel": ["transfer_out"],
            "mcc": [None],
            "balance_after": [-3_110.0],
        }
    )
    after = build_customer_snapshots(
        customers,
        accounts,
        pd.concat([transactions, later], ignore_index=True),
        chunk_customers=5,
    )
    early = after["event_timestamp"] <= T("2024-03-01", tz="UTC")
    pd.testing.assert_frame_equal(
        before[early].reset_index(drop=True), after[early].reset_index(drop=True)
    )
    april = _snapshot(after, "cus_a", "2024-04-01")
    assert april["current_balance"] == -3_110.0


def test_chunking_does_not_change_the_result() -> None:
    customers, accounts, transactions = tiny_book()
    whole = build_customer_snapshots(
        customers, accounts, transactions, chunk_customers=100
    )
    split = build_customer_snapshots(
        customers, accounts, transactions, chunk_customers=1
    )
    pd.testing.assert_frame_equal(whole, split)


def busy_book() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """500 customers, 1,000 accounts, 40k bookings: ties in time, an unknown account,
    a customer whose accounts hold no booking (the first token)."""
    rng = np.random.default_rng(8)
    tokens = np.array([f"cus_{i:04d}" for i in rng.permutation(500)])
    customers = pd.DataFrame(
        {
            "customer_token": tokens,
            "income": rng.normal(40_000, 9_000, 500),
            "employment_status": rng.choice(["employed", "retired"], 500),
            "tenure_months": rng.integers(0, 400, 500),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_token": [f"acc_{i:04d}" for i in range(1_000)],
            "customer_token": np.repeat(tokens, 2),
            "product": np.tile(["current_account", "credit_card"], 500),
            "credit_limit": np.tile([np.nan, 2_000.0], 500),
        }
    )
    rows = 40_000
    booked = accounts["account_token"].to_numpy()[rng.integers(2, 1_000, rows)]
    booked[::997] = "acc_unknown"
    transactions = pd.DataFrame(
        {
            "account_token": booked,
            "booked_at": T("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 400, rows), unit="D"),  # many ties
            "amount": rng.normal(-40, 300, rows).round(2),
            "channel": rng.choice(
                [
                    "pos",
                    "ecommerce",
                    "atm",
                    "late_fee",
                    "returned_direct_debit",
                    "salary",
                ],
                rows,
            ),
            "mcc": rng.choice(["5411", "7995", "5812", None], rows),
            "balance_after": rng.normal(1_000, 2_000, rows).round(2),
        }
    )
    return customers, accounts, transactions


def test_batches_and_chunks_do_not_change_the_result_on_a_busy_book() -> None:
    """500 customers, 40k bookings (ties in time, an unknown account, a customer
    without bookings): read in uneven batches and chunked, the same table."""
    customers, accounts, transactions = busy_book()
    tokens = customers["customer_token"].to_numpy()
    rng = np.random.default_rng(9)
    rows = len(transactions)
    whole = build_customer_snapshots(
        customers, accounts, transactions, chunk_customers=500
    )
    cuts = [0, *np.cumsum(rng.integers(1, 9_000, 20)).clip(max=rows).tolist(), rows]
    batches = [transactions.iloc[a:b] for a, b in pairwise(cuts)]
    streamed = pd.concat(
        customer_snapshot_chunks(customers, accounts, batches, chunk_customers=37),
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(streamed, whole)
    assert len(whole) == 500 * 14
    # The customer whose accounts hold no booking (acc_0000, acc_0001) still has rows.
    first = whole[whole["customer_token"] == tokens[0]]
    assert (first["txn_count_90d"] == 0).all() and len(first) == 14
