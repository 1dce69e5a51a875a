"""Monthly customer feature snapshots from the pseudonymised primary layer.

Every customer gets one row per snapshot (the first instant of each month from
the month after the first booking to the month after the last). A snapshot at T
summarises transactions booked at or before T: windowed sums are differences of
per-customer cumulative sums looked up with ``merge_asof`` at T and at T - window,
so nothing is exploded per window and the work is linear in transactions plus
snapshots.

Memory: the transactions arrive in batches (a table read a row group at a time)
and are kept only as compact columns (account number, time, amount, balance,
channel and merchant-category codes: 30 bytes a booking, about 2.6 GB for the
86M bookings of a million customers), filed by chunk of customers as they are
read. Chunks are then computed one by one, each chunk's bookings released and its
snapshots handed on before the next, so neither the bookings nor the output are
ever copied whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bankplatform.feature_repo.definitions import WINDOWS_DAYS

_GAMBLING_MCC = "7995"
_GROCERY_MCC = "5411"
_CARD_CHANNELS = ("pos", "ecommerce")
# Only these channels and merchant categories change a feature; any other value
# is kept as "other" (code 0).
_CHANNELS = ("other", "pos", "ecommerce", "atm", "returned_direct_debit", "late_fee")
_MCCS = ("other", _GAMBLING_MCC, _GROCERY_MCC)
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
BOOKING_COLUMNS = [
    "account_token",
    "booked_at",
    "amount",
    "channel",
    "mcc",
    "balance_after",
]
_PROFILE = ["income", "employment_status", "tenure_months"]


def snapshot_times(booked_at: pd.Series) -> pd.DatetimeIndex:
    """Month starts from the month after the first booking to the one after the last.

    Times are UTC, kept naive inside the computation (bookings are naive UTC).
    """
    return snapshot_months(booked_at.min(), booked_at.max())


def snapshot_months(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """Month starts from the month after ``first`` to the month after ``last``."""
    return pd.period_range(
        first.to_period("M") + 1, last.to_period("M") + 1, freq="M"
    ).to_timestamp()


def build_customer_snapshots(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    transactions: pd.DataFrame,
    chunk_customers: int,
) -> pd.DataFrame:
    """One row per customer and snapshot with every customer feature, in one frame.

    Args:
        customers: Pseudonymised customers (``customer_token``, profile fields).
        accounts: Pseudonymised accounts (``account_token``, ``customer_token``,
            ``product``, ``credit_limit``).
        transactions: Pseudonymised transactions (``account_token``, ``booked_at``,
            ``amount``, ``channel``, ``mcc``, ``balance_after``).
        chunk_customers: Customers per chunk (bounds memory).

    Returns:
        ``customer_token``, ``event_timestamp`` (UTC-aware) and the features,
        sorted by both.
    """
    chunks = customer_snapshot_chunks(
        customers, accounts, [transactions], chunk_customers
    )
    return pd.concat(list(chunks), ignore_index=True)


def customer_snapshot_chunks(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    bookings: Iterable[pd.DataFrame],
    chunk_customers: int,
) -> Iterator[pd.DataFrame]:
    """The snapshots of ``chunk_customers`` customers at a time, in token order.

    Args:
        customers: Pseudonymised customers.
        accounts: Pseudonymised accounts.
        bookings: The transactions in batches (``BOOKING_COLUMNS`` at least).
        chunk_customers: Customers per chunk.

    Yields:
        Each chunk's rows, sorted by ``customer_token`` and ``event_timestamp``;
        chunk after chunk, the whole table is sorted the same way.
    """
    population = Population.of(customers, accounts, chunk_customers)
    book = _CompactBook.read(bookings, population)
    snapshots = snapshot_months(book.first, book.last)
    for number in range(population.chunks):
        yield population.chunk_snapshots(number, book.take(number), snapshots)


def customer_features_at(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    bookings: Iterable[pd.DataFrame],
    times: pd.Series,
) -> pd.DataFrame:
    """Each customer's features at a time of their own, computed as the snapshots
    are (the streamed features are held equal to these).

    Args:
        customers: Pseudonymised customers.
        accounts: Pseudonymised accounts.
        bookings: The transactions in batches (``BOOKING_COLUMNS`` at least).
        times: When, by ``customer_token`` (UTC).

    Returns:
        One row per customer of ``times``: ``customer_token``, ``event_timestamp``
        and the features, sorted by token.
    """
    wanted = customers[customers["customer_token"].astype(str).isin(times.index)]
    population = Population.of(wanted, accounts, max(len(wanted), 1))
    book = _CompactBook.read(bookings, population)
    at = pd.to_datetime(times, utc=True).dt.tz_localize(None)
    grid = population.chunk_snapshots(
        0, book.take(0), pd.DatetimeIndex(sorted(set(at)))
    )
    own = at.reindex(grid["customer_token"]).dt.tz_localize("UTC").to_numpy()
    return grid[grid["event_timestamp"].to_numpy() == own].reset_index(drop=True)


def _booking_times(batch: pd.DataFrame) -> pd.Series:
    """A batch's booking times as naive ``datetime64[ns]`` (bookings are naive UTC)."""
    return pd.to_datetime(batch["booked_at"]).astype("datetime64[ns]")


@dataclass(frozen=True)
class Population:
    """The customers in token order, their accounts and profile, cut into chunks of
    ``chunk_customers``: what computing a chunk's snapshots needs besides its
    bookings (small enough to ship to every worker of a cluster)."""

    owners: _Owners
    profile: pd.DataFrame
    chunk_customers: int

    @classmethod
    def of(
        cls, customers: pd.DataFrame, accounts: pd.DataFrame, chunk_customers: int
    ) -> Population:
        tokens = np.sort(customers["customer_token"].astype(str).to_numpy())
        # In token order, so a chunk joins its own slice, not the whole table.
        profile = customers.set_index(customers["customer_token"].astype(str))[
            _PROFILE
        ].reindex(tokens)
        return cls(_Owners.of(accounts, tokens), profile, chunk_customers)

    @property
    def chunks(self) -> int:
        """How many chunks the customers make."""
        return -(-len(self.owners.customers) // self.chunk_customers)

    def file_bookings(
        self, batch: pd.DataFrame, booked_at: pd.Series | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """A batch of bookings as compact columns, the chunk of each booking's
        customer, and which rows of the batch they are (bookings of unknown
        accounts or customers are dropped). ``booked_at``: the batch's times as
        naive ``datetime64[ns]`` (``_booking_times``), if already converted."""
        owners = self.owners
        if booked_at is None:
            booked_at = _booking_times(batch)
        account = owners.index.get_indexer(pd.Index(batch["account_token"].astype(str)))
        kept = account >= 0
        kept[kept] = owners.owner[account[kept]] >= 0
        columns = {
            "account": account[kept].astype("int32"),
            "booked_at": booked_at.to_numpy()[kept],
            "amount": batch["amount"].to_numpy("float64")[kept],
            "balance_after": batch["balance_after"].to_numpy("float64")[kept],
            "channel": _codes(batch["channel"], _CHANNELS)[kept],
            "mcc": _codes(batch["mcc"], _MCCS)[kept],
        }
        chunk = owners.owner[columns["account"]] // self.chunk_customers
        return columns, chunk, kept

    def bookings_frame(self, columns: dict[str, np.ndarray]) -> pd.DataFrame:
        """Compact bookings joined to their accounts' owner, product and limit.
        Accounts and customers are their positions (integers), not their tokens:
        joins on integers hash an order of magnitude faster than on strings
        scattered over a million-customer heap."""
        owners, account = self.owners, columns["account"]
        return pd.DataFrame(
            {
                "account": account.astype("int64"),
                "booked_at": columns["booked_at"],
                "amount": columns["amount"],
                "channel": _categories(columns["channel"], _CHANNELS),
                "mcc": _categories(columns["mcc"], _MCCS),
                "balance_after": columns["balance_after"],
                "customer": owners.owner[account].astype("int64"),
                "product": owners.product[account],
                "credit_limit": owners.credit_limit[account],
            }
        )

    def chunk_snapshots(
        self, number: int, booked: pd.DataFrame, snapshots: pd.DatetimeIndex
    ) -> pd.DataFrame:
        """Chunk ``number``'s rows from its bookings (``bookings_frame``), sorted by
        ``customer_token`` and ``event_timestamp``."""
        start = number * self.chunk_customers
        positions = np.arange(
            start, min(start + self.chunk_customers, len(self.owners.customers))
        )
        part = _chunk_features(positions, booked, snapshots)
        # The grid runs customer by customer (positions ascend, so tokens do),
        # snapshot by snapshot: already in the promised order.
        tokens = self.owners.customers[part.pop("customer").to_numpy()]
        part.insert(0, "customer_token", tokens)
        for name in _PROFILE:
            values = self.profile[name].to_numpy()[positions]
            part[name] = np.repeat(values, len(snapshots))
        part["tenure_months"] = part["tenure_months"].astype("int64")
        part["event_timestamp"] = part["event_timestamp"].dt.tz_localize("UTC")
        return part


@dataclass(frozen=True)
class _Owners:
    """Accounts by number: owner (position in the sorted customer tokens),
    product and credit limit; an account of an unknown customer has owner -1."""

    customers: np.ndarray
    index: pd.Index
    owner: np.ndarray
    product: np.ndarray
    credit_limit: np.ndarray

    @classmethod
    def of(cls, accounts: pd.DataFrame, customer_tokens: np.ndarray) -> _Owners:
        owner_tokens = accounts["customer_token"].astype(str).to_numpy()
        found = np.searchsorted(customer_tokens, owner_tokens)
        found = np.minimum(found, max(len(customer_tokens) - 1, 0))
        known = (
            customer_tokens[found] == owner_tokens
            if len(customer_tokens)
            else np.zeros(len(owner_tokens), dtype=bool)
        )
        return cls(
            customers=customer_tokens,
            index=pd.Index(accounts["account_token"].astype(str).to_numpy()),
            owner=np.where(known, found, -1).astype("int32"),
            product=accounts["product"].astype(str).to_numpy(),
            credit_limit=accounts["credit_limit"].astype("float64").to_numpy(),
        )


BOOK_COLUMNS = ("account", "booked_at", "amount", "balance_after", "channel", "mcc")
_NO_BOOKING = "transactions: no booking at all, so no snapshot can be placed"


@dataclass
class _CompactBook:
    """Every booking of a known customer as compact columns, filed by chunk of
    customers as the batches are read: a chunk's pieces are joined only when the
    chunk is computed, and dropped then, so no sort of the whole book is needed."""

    population: Population
    pieces: list[list[dict[str, np.ndarray]]]
    first: pd.Timestamp
    last: pd.Timestamp

    @classmethod
    def read(
        cls, batches: Iterable[pd.DataFrame], population: Population
    ) -> _CompactBook:
        chunks = population.chunks
        pieces: list[list[dict[str, np.ndarray]]] = [[] for _ in range(chunks)]
        first: pd.Timestamp | None = None
        last: pd.Timestamp | None = None
        for batch in batches:
            booked_at = _booking_times(batch)
            if len(batch):
                low, high = booked_at.min(), booked_at.max()
                first = low if first is None else min(first, low)
                last = high if last is None else max(last, high)
            columns, chunk, _ = population.file_bookings(batch, booked_at)
            order = np.argsort(chunk, kind="stable")  # file order within a chunk
            bounds = np.searchsorted(chunk[order], np.arange(chunks + 1))
            for number in np.flatnonzero(np.diff(bounds)):
                rows = order[bounds[number] : bounds[number + 1]]
                pieces[number].append({k: v[rows] for k, v in columns.items()})
        if first is None or last is None:
            raise ValueError(_NO_BOOKING)
        return cls(population, pieces, first, last)

    def take(self, number: int) -> pd.DataFrame:
        """Chunk ``number``'s bookings (``Population.bookings_frame``); the chunk's
        pieces are released."""
        pieces, self.pieces[number] = self.pieces[number], []
        return self.population.bookings_frame(_join_pieces(pieces))


def _join_pieces(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Compact booking columns of several pieces, one after the other."""
    return {
        name: np.concatenate(
            [piece[name] for piece in pieces] or [np.empty(0, _EMPTY_TYPES[name])]
        )
        for name in BOOK_COLUMNS
    }


_EMPTY_TYPES = {
    "account": "int32",
    "booked_at": "datetime64[ns]",
    "amount": "float64",
    "balance_after": "float64",
    "channel": "int8",
    "mcc": "int8",
}


def _categories(codes: np.ndarray, vocabulary: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(vocabulary))  # type: ignore[arg-type]


def _codes(values: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Each value's position in ``vocabulary``; anything else (or missing) is 0."""
    codes = pd.Categorical(values.astype(str), categories=vocabulary).codes
    return np.where(codes < 0, 0, codes).astype("int8")


def _chunk_features(
    customers: np.ndarray, booked: pd.DataFrame, snapshots: pd.DatetimeIndex
) -> pd.DataFrame:
    """The features of ``customers`` (positions) at every snapshot, from their
    bookings (``account`` and ``customer`` positions): one row per customer and
    snapshot, customer by customer."""
    grid = pd.DataFrame(
        {
            "customer": np.repeat(customers, len(snapshots)),
            "event_timestamp": snapshots[
                np.tile(np.arange(len(snapshots)), len(customers))
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
    channel = ordered["channel"]
    mcc = ordered["mcc"]
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
    cumulative = measures.groupby(ordered["customer"].to_numpy()).cumsum()
    cumulative["customer"] = ordered["customer"].to_numpy()
    cumulative["booked_at"] = ordered["booked_at"].to_numpy()
    return cumulative.reset_index(drop=True)


def _as_of(
    grid: pd.DataFrame, cumulative: pd.DataFrame, lag: pd.Timedelta
) -> pd.DataFrame:
    """Cumulative measures at ``event_timestamp - lag`` for every grid row."""
    probe = pd.DataFrame(
        {
            "customer": grid["customer"].to_numpy(),
            "at": (grid["event_timestamp"] - lag).to_numpy(),
            "row": np.arange(len(grid)),
        }
    ).sort_values("at", kind="stable")
    found = pd.merge_asof(
        probe,
        cumulative,
        left_on="at",
        right_on="booked_at",
        by="customer",
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
            "customer",
            "account",
            "product",
            "booked_at",
            "balance_after",
            "credit_limit",
        ]
    ]
    accounts = last.drop_duplicates("account")[
        ["customer", "account", "product", "credit_limit"]
    ]
    probe = grid.reset_index(names="row").merge(accounts, on="customer")
    probe = probe.sort_values("event_timestamp", kind="stable")
    found = pd.merge_asof(
        probe,
        last[["account", "booked_at", "balance_after"]].sort_values(
            "booked_at", kind="stable"
        ),
        left_on="event_timestamp",
        right_on="booked_at",
        by="account",
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
