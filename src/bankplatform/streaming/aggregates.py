"""A customer's features as of their latest booking, from the ledger.

The same definitions as the batch snapshots (``features.customer_features``):
a window of D days at T holds the bookings in (T - D, T]; counts, sums, means
and sample standard deviations of amounts over 7, 30 and 90 days; ATM and
e-commerce counts over 30 days; card, gambling and grocery spend (outflows on
card channels) over 90 days; returned direct debits and late fees over 90 and
365 days; balances from each account's last booking and card utilisation.
Computed here directly from each customer's bookings (sums over a mask), not
as differences of cumulative sums as the batch does: two ways to one value,
which the agreement test holds equal to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bankplatform.feature_repo.definitions import WINDOWS_DAYS
from bankplatform.streaming.ledger import CHANNEL_CODES, MCC_CODES, Ledger

_NS_PER_DAY = 86_400 * 10**9
_CARD = (CHANNEL_CODES["pos"], CHANNEL_CODES["ecommerce"])


def features_as_of_latest(ledger: Ledger, customers: Sequence[int]) -> pd.DataFrame:
    """One row per customer: ``customer_token``, ``event_timestamp`` (their latest
    booking, UTC) and every customer feature as of then."""
    numbers = np.asarray(sorted(customers), dtype="int64")
    bookings = ledger.recent_bookings(numbers.tolist())
    position = pd.Index(numbers).get_indexer(pd.Index(bookings["customer"]))
    booked = bookings["booked_at"].to_numpy("int64")
    latest = np.full(len(numbers), np.iinfo("int64").min, dtype="int64")
    np.maximum.at(latest, position, booked)
    age = latest[position] - booked
    amount = bookings["amount"].to_numpy("float64")
    channel = bookings["channel"].to_numpy("int64")
    mcc = bookings["mcc"].to_numpy("int64")
    outflow = np.clip(-amount, 0.0, None)
    card = np.isin(channel, _CARD)

    def total(days: int, weights: np.ndarray) -> np.ndarray:
        inside = age < days * _NS_PER_DAY
        return np.bincount(
            position[inside], weights=weights[inside], minlength=len(numbers)
        )

    ones = np.ones(len(bookings))
    columns: dict[str, np.ndarray] = {}
    for days in WINDOWS_DAYS:
        count = total(days, ones)
        amount_sum = total(days, amount)
        squares = total(days, amount**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, amount_sum / count, np.nan)
            variance = np.where(
                count > 1, (squares - count * mean**2) / (count - 1), np.nan
            )
        columns[f"txn_count_{days}d"] = count
        columns[f"txn_amount_sum_{days}d"] = amount_sum
        columns[f"txn_amount_mean_{days}d"] = mean
        columns[f"txn_amount_std_{days}d"] = np.sqrt(np.clip(variance, 0.0, None))
    columns["atm_count_30d"] = total(30, (channel == CHANNEL_CODES["atm"]) * 1.0)
    columns["ecommerce_count_30d"] = total(
        30, (channel == CHANNEL_CODES["ecommerce"]) * 1.0
    )
    card_spend = total(90, np.where(card, outflow, 0.0))
    gambling = total(90, np.where(card & (mcc == MCC_CODES["7995"]), outflow, 0.0))
    columns["card_spend_90d"] = card_spend
    columns["gambling_spend_90d"] = gambling
    columns["grocery_spend_90d"] = total(
        90, np.where(card & (mcc == MCC_CODES["5411"]), outflow, 0.0)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["gambling_share_90d"] = np.where(
            card_spend > 0, gambling / card_spend, np.nan
        )
    for days in (90, 365):
        returned = (channel == CHANNEL_CODES["returned_direct_debit"]) * 1.0
        columns[f"returned_dd_count_{days}d"] = total(days, returned)
        columns[f"late_fee_count_{days}d"] = total(
            days, (channel == CHANNEL_CODES["late_fee"]) * 1.0
        )
    frame = pd.DataFrame(columns)
    frame = pd.concat([frame, _balances(ledger, numbers)], axis=1)
    profile = ledger.profiles(numbers.tolist()).set_index("customer").reindex(numbers)
    frame.insert(0, "customer_token", profile["customer_token"].to_numpy())
    frame.insert(
        1,
        "event_timestamp",
        pd.to_datetime(latest, unit="ns").tz_localize("UTC"),
    )
    frame["income"] = profile["income"].to_numpy("float64")
    frame["employment_status"] = profile["employment_status"].to_numpy()
    frame["tenure_months"] = profile["tenure_months"].to_numpy("int64")
    return frame


def _balances(ledger: Ledger, numbers: np.ndarray) -> pd.DataFrame:
    accounts = ledger.balances(numbers.tolist())
    position = pd.Index(numbers).get_indexer(pd.Index(accounts["customer"]))
    card = (accounts["product"] == "credit_card").to_numpy()
    balance = accounts["balance_after"].to_numpy("float64")

    def per_customer(weights: np.ndarray) -> np.ndarray:
        return np.bincount(position, weights=weights, minlength=len(numbers))

    current = per_customer(np.where(card, 0.0, balance))
    card_balance = per_customer(np.where(card, balance, 0.0))
    limit = per_customer(
        np.where(card, accounts["credit_limit"].to_numpy("float64"), 0.0)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        utilisation = np.where(
            limit > 0, np.clip(-card_balance, 0.0, None) / limit, np.nan
        )
    return pd.DataFrame(
        {
            "current_balance": current,
            "card_balance": card_balance,
            "credit_limit": limit,
            "card_utilisation": utilisation,
        }
    )
