"""The stream consumer's ledger: which events were applied, and what each customer
booked, in one SQLite file that survives ``kill -9``.

Exactly once: an event counts when its row is committed here, in the same
transaction as its event id; the consumer acknowledges it only after that commit
and after the customer's features were pushed. An event delivered again (the
consumer died before its ack) finds its id with the same stream sequence and
changes nothing, but its customer is pushed again (pushes are idempotent upserts
of values recomputed from the ledger). The same id at another sequence is a
duplicate and a dead letter.

The ledger starts from the batch: the primary layer's accounts, customers'
profile fields, the bookings of the last 365 days before the batch's last booking
(the longest window) and every account's last balance. A streamed booking must be
later than the batch's last one: earlier ones belong to the batch.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bankplatform.errors import BankplatformError
from bankplatform.streaming.events import BookingEvent, Rejection

# Bookings older than the longest feature window before a customer's latest one
# never change a feature (their balances do: kept per account).
HISTORY_DAYS = 365
_NS_PER_DAY = 86_400 * 10**9
CHANNEL_CODES = {
    "pos": 1,
    "ecommerce": 2,
    "atm": 3,
    "returned_direct_debit": 4,
    "late_fee": 5,
}  # any other channel is 0: it changes counts and sums only
MCC_CODES = {"7995": 1, "5411": 2}  # gambling, grocery; others 0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    customer INTEGER PRIMARY KEY, customer_token TEXT NOT NULL UNIQUE,
    income REAL, employment_status TEXT, tenure_months INTEGER);
CREATE TABLE IF NOT EXISTS accounts (
    account_token TEXT PRIMARY KEY, customer INTEGER NOT NULL,
    product TEXT NOT NULL, credit_limit REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bookings (
    customer INTEGER NOT NULL, booked_at INTEGER NOT NULL, amount REAL NOT NULL,
    channel INTEGER NOT NULL, mcc INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bookings_by_customer ON bookings (customer, booked_at);
CREATE TABLE IF NOT EXISTS balances (
    account_token TEXT PRIMARY KEY, customer INTEGER NOT NULL,
    booked_at INTEGER NOT NULL, sequence INTEGER NOT NULL,
    balance_after REAL NOT NULL);
CREATE INDEX IF NOT EXISTS balances_by_customer ON balances (customer);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, stream_sequence INTEGER NOT NULL,
    customer INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS unpushed (customer INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS rejected (
    stream_sequence INTEGER PRIMARY KEY, event_id TEXT, reason TEXT NOT NULL);
"""


class LedgerError(BankplatformError):
    """The ledger cannot be used: the message says why."""


@dataclass
class Applied:
    """What one batch of events did to the ledger."""

    customers: set[int] = field(default_factory=set)
    counted: int = 0
    redelivered: int = 0
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchLayer:
    """The primary layer the ledger starts from."""

    customers: pd.DataFrame  # customer_token, income, employment_status, tenure_months
    accounts: pd.DataFrame  # account_token, customer_token, product, credit_limit
    bookings: Iterable[
        pd.DataFrame
    ]  # account_token, booked_at, amount, channel, mcc, balance_after
    last_booking: pd.Timestamp  # the batch's latest booking (naive UTC)
    source: str  # what it was read from (digests), kept in the ledger


class Ledger:
    """One consumer's ledger file (mode 600)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if fresh:
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Committed means on disk: a kill -9 (or a power cut) after the commit
        # keeps the events it counted.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # The batch it starts from ------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    @property
    def seeded(self) -> bool:
        return self.meta("window_start") is not None

    @property
    def replayed(self) -> bool:
        """Whether the consumer was set to deliver the whole stream to this ledger."""
        return self.meta("replayed") is not None

    def mark_replayed(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('replayed', '1')")

    @property
    def window_start(self) -> pd.Timestamp:
        """The batch's last booking: streamed bookings must be later."""
        value = self.meta("window_start")
        if value is None:
            msg = f"{self.path}: the ledger was never started from the batch"
            raise LedgerError(msg)
        return pd.Timestamp(int(value))

    def seed(self, batch: BatchLayer) -> int:
        """Start from the batch (once; a ledger that was started refuses).

        Returns:
            The bookings kept (those inside the longest window).
        """
        if self.seeded:
            msg = f"{self.path}: already started from {self.meta('source')}"
            raise LedgerError(msg)
        customers = batch.customers.sort_values("customer_token").reset_index(drop=True)
        number = pd.Series(np.arange(len(customers)), index=customers["customer_token"])
        accounts = batch.accounts.assign(
            customer=batch.accounts["customer_token"].map(number)
        ).dropna(subset=["customer"])
        cut = _ns(batch.last_booking) - HISTORY_DAYS * _NS_PER_DAY
        kept = 0
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
                zip(
                    range(len(customers)),
                    customers["customer_token"].astype(str),
                    customers["income"].astype("float64"),
                    customers["employment_status"].astype(str),
                    customers["tenure_months"].astype("int64").tolist(),
                    strict=True,
                ),
            )
            db.executemany(
                "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                zip(
                    accounts["account_token"].astype(str),
                    accounts["customer"].astype("int64").tolist(),
                    accounts["product"].astype(str),
                    accounts["credit_limit"].fillna(0.0).astype("float64"),
                    strict=True,
                ),
            )
            owner = pd.Series(
                accounts["customer"].astype("int64").to_numpy(),
                index=accounts["account_token"].astype(str),
            )
            for frame in batch.bookings:
                kept += self._seed_bookings(db, frame, owner, cut)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("window_start", str(_ns(batch.last_booking))),
                    ("source", batch.source),
                ],
            )
        return kept

    def _seed_bookings(
        self, db: sqlite3.Connection, frame: pd.DataFrame, owner: pd.Series, cut: int
    ) -> int:
        customer = owner.reindex(frame["account_token"].astype(str)).to_numpy()
        known = ~np.isnan(customer.astype("float64"))
        frame, customer = frame[known], customer[known].astype("int64")
        booked = _ns_array(frame["booked_at"])
        recent = booked > cut
        db.executemany(
            "INSERT INTO bookings VALUES (?, ?, ?, ?, ?)",
            zip(
                customer[recent].tolist(),
                booked[recent].tolist(),
                frame["amount"].to_numpy("float64")[recent].tolist(),
                _channel_codes(frame["channel"])[recent].tolist(),
                _mcc_codes(frame["mcc"])[recent].tolist(),
                strict=True,
            ),
        )
        # Each account's last balance in this batch (file order breaks ties), kept
        # if later than what an earlier batch gave.
        last = (
            pd.DataFrame(
                {
                    "account_token": frame["account_token"].astype(str).to_numpy(),
                    "customer": customer,
                    "booked_at": booked,
                    "balance_after": frame["balance_after"].to_numpy("float64"),
                }
            )
            .sort_values("booked_at", kind="stable")
            .drop_duplicates("account_token", keep="last")
        )
        db.executemany(
            _UPSERT_BALANCE,
            zip(
                last["account_token"],
                last["customer"].tolist(),
                last["booked_at"].tolist(),
                [0] * len(last),
                last["balance_after"].tolist(),
                strict=True,
            ),
        )
        return int(recent.sum())

    # Streamed events ---------------------------------------------------------

    def apply(self, events: Sequence[tuple[int, BookingEvent | Rejection]]) -> Applied:
        """Count a batch of events (stream sequence, parsed event) in one transaction."""
        applied = Applied()
        window_start = _ns(self.window_start)
        with self._transaction() as db:
            for sequence, event in events:
                verdict = self._apply_one(db, sequence, event, window_start, applied)
                if verdict is not None:
                    applied.rejections.append((sequence, verdict))
                    db.execute(
                        "INSERT OR IGNORE INTO rejected VALUES (?, ?, ?)",
                        (sequence, verdict.event_id, verdict.reason),
                    )
            # Until their push is done: a consumer killed in between pushes them
            # at its next start, before any event comes again.
            db.executemany(
                "INSERT OR IGNORE INTO unpushed VALUES (?)",
                [(c,) for c in applied.customers],
            )
        return applied

    def unpushed(self) -> set[int]:
        """Customers whose counted events may not have reached the online store."""
        return {int(c) for (c,) in self._db.execute("SELECT customer FROM unpushed")}

    def mark_pushed(self, customers: Iterable[int]) -> None:
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM unpushed WHERE customer = ?", [(c,) for c in customers]
            )

    def _apply_one(
        self,
        db: sqlite3.Connection,
        sequence: int,
        event: BookingEvent | Rejection,
        window_start: int,
        applied: Applied,
    ) -> Rejection | None:
        earlier = db.execute(
            "SELECT reason, event_id FROM rejected WHERE stream_sequence = ?",
            (sequence,),
        ).fetchone()
        if earlier is not None:  # delivered again: the same verdict
            return Rejection(str(earlier[0]), earlier[1])
        if isinstance(event, Rejection):
            return event
        seen = db.execute(
            "SELECT stream_sequence, customer FROM events WHERE event_id = ?",
            (event.event_id,),
        ).fetchone()
        if seen is not None:
            if int(seen[0]) == sequence:
                applied.redelivered += 1
                applied.customers.add(int(seen[1]))
                return None
            return Rejection(
                f"duplicate event id {event.event_id} (counted at stream sequence {seen[0]})",
                event.event_id,
            )
        account = self._refusal(db, event, window_start)
        if isinstance(account, Rejection):
            return account
        customer, booked = account, _ns(pd.Timestamp(event.booked_at))
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?)", (event.event_id, sequence, customer)
        )
        db.execute(
            "INSERT INTO bookings VALUES (?, ?, ?, ?, ?)",
            (
                customer,
                booked,
                event.amount,
                CHANNEL_CODES.get(event.channel, 0),
                MCC_CODES.get(event.mcc or "", 0),
            ),
        )
        db.execute(
            _UPSERT_BALANCE,
            (event.account_token, customer, booked, sequence, event.balance_after),
        )
        applied.counted += 1
        applied.customers.add(customer)
        return None

    @staticmethod
    def _refusal(
        db: sqlite3.Connection, event: BookingEvent, window_start: int
    ) -> int | Rejection:
        """The event's customer, or why it cannot count."""
        account = db.execute(
            "SELECT customer FROM accounts WHERE account_token = ?",
            (event.account_token,),
        ).fetchone()
        if account is None:
            return Rejection(f"unknown account {event.account_token}", event.event_id)
        if _ns(pd.Timestamp(event.booked_at)) <= window_start:
            return Rejection(
                f"booked_at {event.booked_at.isoformat()} is not after the batch's last "
                f"booking ({pd.Timestamp(window_start).isoformat()}): the batch owns it",
                event.event_id,
            )
        return int(account[0])

    # Reading it back -------------------------------------------------------

    def profiles(self, customers: Sequence[int]) -> pd.DataFrame:
        rows = self._select_in(
            "SELECT customer, customer_token, income, employment_status, tenure_months"
            " FROM customers WHERE customer IN ({})",
            customers,
        )
        return pd.DataFrame(
            rows,
            columns=[
                "customer",
                "customer_token",
                "income",
                "employment_status",
                "tenure_months",
            ],
        )

    def recent_bookings(self, customers: Sequence[int]) -> pd.DataFrame:
        """The customers' bookings (all the ledger keeps; at most a window older
        than the batch's last booking)."""
        rows = self._select_in(
            "SELECT customer, booked_at, amount, channel, mcc FROM bookings"
            " WHERE customer IN ({})",
            customers,
        )
        return pd.DataFrame(
            rows, columns=["customer", "booked_at", "amount", "channel", "mcc"]
        )

    def balances(self, customers: Sequence[int]) -> pd.DataFrame:
        """Each account's last balance, with its product and limit."""
        rows = self._select_in(
            "SELECT b.customer, a.product, a.credit_limit, b.balance_after"
            " FROM balances b JOIN accounts a USING (account_token)"
            " WHERE b.customer IN ({})",
            customers,
        )
        return pd.DataFrame(
            rows, columns=["customer", "product", "credit_limit", "balance_after"]
        )

    def counted(self) -> int:
        """Events counted so far."""
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def rejected_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM rejected").fetchone()[0])

    def _select_in(self, sql: str, values: Sequence[int]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(values), 900):  # SQLite's variable limit
            part = list(values[start : start + 900])
            marks = ",".join("?" * len(part))
            rows += self._db.execute(sql.format(marks), part).fetchall()
        return rows

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


_UPSERT_BALANCE = """
INSERT INTO balances VALUES (?, ?, ?, ?, ?)
ON CONFLICT (account_token) DO UPDATE SET
    booked_at = excluded.booked_at, sequence = excluded.sequence,
    balance_after = excluded.balance_after
WHERE excluded.booked_at > balances.booked_at
   OR (excluded.booked_at = balances.booked_at AND excluded.sequence >= balances.sequence)
"""


def _ns(moment: pd.Timestamp) -> int:
    """Nanoseconds since the epoch, UTC (naive times are UTC)."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(stamp.value)


def _ns_array(times: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(times)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]").to_numpy().astype("int64")


def _channel_codes(channels: pd.Series) -> np.ndarray:
    return channels.astype(str).map(CHANNEL_CODES).fillna(0).astype("int64").to_numpy()


def _mcc_codes(mccs: pd.Series) -> np.ndarray:
    return mccs.astype(str).map(MCC_CODES).fillna(0).astype("int64").to_numpy()
