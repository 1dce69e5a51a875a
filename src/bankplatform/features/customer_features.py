"""Monthly customer feature snapshots from the pseudonymised primary layer.

Every customer gets one row per snapshot (the first instant of each month from
the month after the first booking to the month after the last). A snapshot at T
summarises transactions booked at or before T: windowed sums are differences of
per-customer cumulative sums looked up with ``merge_asof`` at T and at T - window,
so nothing is exploded per window and the work is linear in transactions plus
snapshots. Customers are processed in chunks, which bounds the working memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from bankplatform.feature_repo.definitions import WINDOWS_DAYS

_GAMBLING_MCC = "7995"
_GROCERY_MCC = "5411"
_CARD_CHANNELS = ("pos", "ecommerce")
_DELINQUENCY_DAYS = (90, 365)
_MEASURES = (
    "n",
    "amount",
    "amount_sq",
    "atm",
    "ecommerce",
    "returned_dd",
    "late_fee",
    "card_spend",
    "gambling_spend",
    "grocery_spend",
)


def snapshot_times(booked_at: pd.Series) -> pd.DatetimeIndex:
    """Month starts from the month after the first booking to the one after the last.

    Times are UTC, kept naive inside the computation (bookings are naive UTC).
    """
    first = booked_at.min().to_period("M") + 1
    last = booked_at.max().to_period("M") + 1
    return pd.period_range(first, last, freq="M").to_timestamp()


def build_customer_snapshots(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    transactions: pd.DataFrame,
    chunk_customers: int,
) -> pd.DataFrame:
    """One row per customer and snapshot with every customer feature.

    Args:
        customers: Pseudonymised customers (``customer_token``, profile fields).
        accounts: Pseudonymised accounts (``account_token``, ``customer_token``,
            ``product``, ``credit_limit``).
        transactions: Pseudonymised transactions (``account_token``, ``booked_at``,
            ``amount``, ``channel``, ``mcc``, ``balance_after``).
        chunk_customers: Customers per chunk (bounds memory).

    Returns:
        ``customer_token``, ``event_timestamp`` (UTC-aware) and the features, sorted.
    """
    snapshots = snapshot_times(pd.to_datetime(transactions["booked_at"]))
    profile = customers.set_index("customer_token")[
        ["income", "employment_status", "tenure_months"]
    ]
    parts = [
        _chunk_features(tokens, part, snapshots)
        for tokens, part in _chunks(
            customers["customer_token"], accounts, transactions, chunk_customers
        )
    ]
    features = pd.concat(parts, ignore_index=True)
    features = features.join(profile, on="customer_token")
    features["tenure_months"] = features["tenure_months"].astype("int64")
    features["event_timestamp"] = features["event_timestamp"].dt.tz_localize("UTC")
    return features.sort_values(
        ["customer_token", "event_timestamp"], ignore_index=True
    )


def _chunks(
    tokens: pd.Series, accounts: pd.DataFrame, transactions: pd.DataFrame, size: int
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Per chunk of customers: their tokens and their bookings joined to the owners.

    Only a chunk's bookings are ever copied and joined: the transactions are
    ordered by chunk through an index array, not by copying the table.
    """
    ordered = np.sort(tokens.astype(str).to_numpy())
    chunk_of_customer = pd.Series(np.arange(len(ordered)) // size, index=ordered)
    owners = accounts[
        ["account_token", "customer_token", "product", "credit_limit"]
    ].copy()
    owners["customer_token"] = owners["customer_token"].astype(str)
    chunk_of_account = owners.set_index("account_token")["customer_token"].map(
        chunk_of_customer
    )
    # Bookings of unknown accounts or customers get no chunk (-1) and are skipped.
    chunk = (
        transactions["account_token"].map(chunk_of_account).fillna(-1).to_numpy("int64")
    )
    order = np.argsort(chunk, kind="stable")
    starts = np.searchsorted(chunk[order], np.arange(len(ordered) // size + 2))
    for number, start in enumerate(range(0, len(ordered), size)):
        rows = order[starts[number] : starts[number + 1]]
        part = transactions.iloc[rows].merge(owners, on="account_token", how="inner")
        part["booked_at"] = pd.to_datetime(part["booked_at"]).astype("datetime64[ns]")
        yield ordered[start : start + size], part


def _chunk_features(
    tokens: np.ndarray, booked: pd.DataFrame, snapshots: pd.DatetimeIndex
) -> pd.DataFrame:
    grid = pd.DataFrame(
        {
            "customer_token": np.repeat(tokens, len(snapshots)),
            "event_timestamp": snapshots[
                np.tile(np.arange(len(snapshots)), len(tokens))
            ],
        }
    )
    cumulative = _cumulative_measures(booked)
    at_snapshot = _as_of(grid, cumulative, pd.Timedelta(0))
    columns: dict[str, Any] = {}
    for days in WINDOWS_DAYS:
        window = at_snapshot - _as_of(grid, cumulative, pd.Timedelta(days=days))
        columns.update(_window_features(window, days))
    month = at_snapshot - _as_of(grid, cumulative, pd.Timedelta(days=30))
    quarter = at_snapshot - _as_of(grid, cumulative, pd.Timedelta(days=90))
    columns["atm_count_30d"] = month["atm"]
    columns["ecommerce_count_30d"] = month["ecommerce"]
    columns["card_spend_90d"] = quarter["card_spend"]
    columns["gambling_spend_90d"] = quarter["gambling_spend"]
    columns["grocery_spend_90d"] = quarter["grocery_spend"]
    columns["gambling_share_90d"] = quarter["gambling_spend"] / quarter[
        "card_spend"
    ].where(quarter["card_spend"] > 0)
    for days in _DELINQUENCY_DAYS:
        window = at_snapshot - _as_of(grid, cumulative, pd.Timedelta(days=days))
        columns[f"returned_dd_count_{days}d"] = window["returned_dd"]
        columns[f"late_fee_count_{days}d"] = window["late_fee"]
    balances = _balances(grid, booked)
    return pd.concat([grid, pd.DataFrame(columns), balances], axis=1)


def _cumulative_measures(booked: pd.DataFrame) -> pd.DataFrame:
    ordered = booked.sort_values("booked_at", kind="stable")
    amount = ordered["amount"].astype("float64")
    outflow = (-amount).clip(lower=0)
    channel = ordered["channel"].astype(str)
    mcc = ordered["mcc"].astype(str)
    card = channel.isin(_CARD_CHANNELS)
    measures = pd.DataFrame(
        {
            "n": 1.0,
            "amount": amount,
            "amount_sq": amount**2,
            "atm": (channel == "atm").astype(float),
            "ecommerce": (channel == "ecommerce").astype(float),
            "returned_dd": (channel == "returned_direct_debit").astype(float),
            "late_fee": (channel == "late_fee").astype(float),
            "card_spend": outflow.where(card, 0.0),
            "gambling_spend": outflow.where(card & (mcc == _GAMBLING_MCC), 0.0),
            "grocery_spend": outflow.where(card & (mcc == _GROCERY_MCC), 0.0),
        },
        index=ordered.index,
    )
    cumulative = measures.groupby(ordered["customer_token"].to_numpy()).cumsum()
    cumulative["customer_token"] = ordered["customer_token"].astype(str).to_numpy()
    cumulative["booked_at"] = ordered["booked_at"].to_numpy()
    return cumulative.reset_index(drop=True)


def _as_of(
    grid: pd.DataFrame, cumulative: pd.DataFrame, lag: pd.Timedelta
) -> pd.DataFrame:
    """Cumulative measures at ``event_timestamp - lag`` for every grid row."""
    probe = pd.DataFrame(
        {
            "customer_token": grid["customer_token"].to_numpy(),
            "at": (grid["event_timestamp"] - lag).to_numpy(),
            "row": np.arange(len(grid)),
        }
    ).sort_values("at", kind="stable")
    found = pd.merge_asof(
        probe,
        cumulative,
        left_on="at",
        right_on="booked_at",
        by="customer_token",
        direction="backward",
    )
    found = found.set_index("row").sort_index()
    return found[list(_MEASURES)].fillna(0.0).reset_index(drop=True)


def _window_features(window: pd.DataFrame, days: int) -> dict[str, pd.Series]:
    count = window["n"]
    mean = window["amount"] / count.where(count > 0)
    variance = (window["amount_sq"] - count * mean**2) / (count - 1).where(count > 1)
    return {
        f"txn_count_{days}d": count,
        f"txn_amount_sum_{days}d": window["amount"],
        f"txn_amount_mean_{days}d": mean,
        f"txn_amount_std_{days}d": variance.clip(lower=0) ** 0.5,
    }


def _balances(grid: pd.DataFrame, booked: pd.DataFrame) -> pd.DataFrame:
    """Balances at each snapshot: each account's last ``balance_after`` before it."""
    last = booked[
        [
            "customer_token",
            "account_token",
            "product",
            "booked_at",
            "balance_after",
            "credit_limit",
        ]
    ]
    accounts = last.drop_duplicates("account_token")[
        ["customer_token", "account_token", "product", "credit_limit"]
    ]
    probe = grid.reset_index(names="row").merge(accounts, on="customer_token")
    probe = probe.sort_values("event_timestamp", kind="stable")
    found = pd.merge_asof(
        probe,
        last[["account_token", "booked_at", "balance_after"]].sort_values("booked_at"),
        left_on="event_timestamp",
        right_on="booked_at",
        by="account_token",
        direction="backward",
    )
    opened = found["booked_at"].notna()
    found["balance_after"] = found["balance_after"].fillna(0.0)
    card = found["product"] == "credit_card"
    sums = (
        pd.DataFrame(
            {
                "row": found["row"],
                "current_balance": found["balance_after"].where(~card, 0.0),
                "card_balance": found["balance_after"].where(card, 0.0),
                "credit_limit": found["credit_limit"]
                .where(card & opened, 0.0)
                .fillna(0.0),
            }
        )
        .groupby("row")
        .sum()
    )
    sums = sums.reindex(range(len(grid)), fill_value=0.0)
    limit = sums["credit_limit"].where(sums["credit_limit"] > 0)
    sums["card_utilisation"] = (-sums["card_balance"]).clip(lower=0) / limit
    return sums.reset_index(drop=True)
