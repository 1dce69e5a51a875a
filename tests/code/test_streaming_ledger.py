"""Booking events, their verdicts and the ledger's exactly-once counting, without a
server: what a redelivery, a duplicate and each malformed event do."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from pydantic import ValidationError

from bankplatform.contracts.reference import CHANNELS
from bankplatform.features.customer_features import customer_features_at
from bankplatform.streaming.aggregates import features_as_of_latest
from bankplatform.streaming.events import BookingEvent, Channel, Rejection, read_event
from bankplatform.streaming.ledger import BatchLayer, Ledger, LedgerError
from bankplatform.streaming.settings import StreamingSettings

pytestmark = pytest.mark.unit
ALICE, BOB = "cus_" + "a" * 32, "cus_" + "b" * 32
CURRENT, CARD, SAVINGS = "acc_" + "1" * 32, "acc_" + "2" * 32, "acc_" + "3" * 32


def _event(
    event_id: str, account: str, at: str, amount: float, **more: object
) -> BookingEvent:
    return BookingEvent.model_validate(
        {
            "event_id": event_id,
            "account_token": account,
            "booked_at": at,
            "amount": amount,
            "channel": more.get("channel", "pos"),
            "mcc": more.get("mcc", "5411"),
            "balance_after": more.get("balance_after", 100.0),
        }
    )


@pytest.fixture
def book() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    customers = pd.DataFrame(
        {
            "customer_token": [ALICE, BOB],
            "income": [42_000.0, 18_000.0],
            "employment_status": ["employed", "self_employed"],
            "tenure_months": [30, 7],
        }
    )
    accounts = pd.DataFrame(
        {
            "account_token": [CURRENT, CARD, SAVINGS],
            "customer_token": [ALICE, ALICE, BOB],
            "product": ["current_account", "credit_card", "savings_account"],
            "credit_limit": [np.nan, 3_000.0, np.nan],
        }
    )
    transactions = pd.DataFrame(
        {
            "account_token": [CURRENT, CARD, CARD, SAVINGS, CURRENT],
            "booked_at": pd.to_datetime(
                [
                    "2024-11-01 10:00",  # outside every window later
                    "2025-10-20 12:00",
                    "2025-12-30 08:00",
                    "2025-12-01 09:00",
                    "2025-12-31 23:00",
                ]
            ),
            "amount": [500.0, -80.0, -120.5, 250.0, -12.0],
            "channel": ["salary", "ecommerce", "pos", "salary", "late_fee"],
            "mcc": [None, "7995", "5411", None, None],
            "balance_after": [500.0, -80.0, -200.5, 250.0, 488.0],
        }
    )
    return customers, accounts, transactions


@pytest.fixture
def ledger(tmp_path: Path, book: tuple[pd.DataFrame, ...]) -> Ledger:
    customers, accounts, transactions = book
    ledger = Ledger(tmp_path / "ledger.sqlite")
    kept = ledger.seed(
        BatchLayer(
            customers,
            accounts,
            [transactions],
            pd.Timestamp(transactions["booked_at"].max()),
            "test",
        )
    )
    assert kept == 4  # the 2024 salary is older than the longest window
    return ledger


def test_channels_are_core_banking_s() -> None:
    assert set(typing.get_args(Channel)) == set(CHANNELS)


def test_each_malformed_event_gets_its_reason() -> None:
    limit = 1_000
    assert read_event(b"x" * 1_001, limit) == Rejection(
        "event of 1,001 bytes is over the 1,000-byte limit"
    )
    assert read_event(b"{oops", limit).reason.startswith("not JSON")
    assert read_event(b"[1]", limit) == Rejection("not a JSON object but list")
    good = _event("e1", CARD, "2026-01-02T10:00:00+00:00", -5.0).payload()
    assert read_event(good, limit) == BookingEvent.model_validate(orjson.loads(good))
    bad_token = orjson.loads(good) | {"account_token": "A000000001"}
    verdict = read_event(orjson.dumps(bad_token), limit)
    assert verdict == Rejection(
        "account_token: String should match pattern '^acc_[0-9a-f]{32}$'", "e1"
    )
    naive = orjson.loads(good) | {"booked_at": "2026-01-02T10:00:00"}
    assert read_event(orjson.dumps(naive), limit).reason.startswith("booked_at:")
    extra = orjson.loads(good) | {"account_id": "A000000001"}
    assert read_event(orjson.dumps(extra), limit).reason.startswith("account_id:")


def test_a_redelivery_counts_once_and_a_duplicate_id_is_refused(ledger: Ledger) -> None:
    first = _event("e1", CARD, "2026-01-02T10:00:00+00:00", -30.0, balance_after=-230.5)
    applied = ledger.apply([(7, first)])
    assert (applied.counted, applied.redelivered, applied.rejections) == (1, 0, [])
    again = ledger.apply([(7, first)])  # the consumer died before its ack
    assert (again.counted, again.redelivered, again.customers) == (0, 1, {0})
    copy = ledger.apply([(8, first)])
    assert copy.rejections == [
        (8, Rejection("duplicate event id e1 (counted at stream sequence 7)", "e1"))
    ]
    # A rejected sequence delivered again gets the same verdict, recorded once.
    assert ledger.apply([(8, first)]).rejections == copy.rejections
    early = _event("e2", CARD, "2025-12-31T22:00:00+00:00", -1.0)
    unknown = _event("e3", "acc_" + "9" * 32, "2026-01-02T10:00:00+00:00", -1.0)
    refused = ledger.apply([(9, early), (10, unknown)]).rejections
    assert [r.reason for _, r in refused] == [
        "booked_at 2025-12-31T22:00:00+00:00 is not after the batch's last booking "
        "(2025-12-31T23:00:00): the batch owns it",
        f"unknown account {'acc_' + '9' * 32}",
    ]
    assert (ledger.counted(), ledger.rejected_count()) == (1, 3)


def test_a_new_ledger_refuses_to_be_started_twice(
    ledger: Ledger, book: tuple[pd.DataFrame, ...]
) -> None:
    customers, accounts, transactions = book
    with pytest.raises(LedgerError, match="already started from test"):
        ledger.seed(
            BatchLayer(customers, accounts, [transactions], pd.Timestamp(0), "x")
        )


def test_features_from_the_ledger_equal_the_batch_s(
    ledger: Ledger, book: tuple[pd.DataFrame, ...]
) -> None:
    customers, accounts, transactions = book
    streamed = [
        _event(
            "s1",
            CARD,
            "2026-01-03T09:30:00+00:00",
            -45.25,
            balance_after=-245.75,
            mcc="7995",
        ),
        _event(
            "s2",
            CURRENT,
            "2026-01-05T18:00:00+00:00",
            -60.0,
            channel="atm",
            mcc="6011",
            balance_after=428.0,
        ),
        _event(
            "s3",
            SAVINGS,
            "2026-01-04T07:00:00+00:00",
            -12.0,
            channel="late_fee",
            mcc=None,
            balance_after=238.0,
        ),
    ]
    ledger.apply(list(enumerate(streamed, start=1)))
    online = features_as_of_latest(ledger, [0, 1]).set_index("customer_token")
    events = pd.DataFrame(
        [
            {
                **e.model_dump(exclude={"event_id"}),
                "booked_at": pd.Timestamp(e.booked_at).tz_localize(None),
            }
            for e in streamed
        ]
    )
    latest = pd.Series(
        pd.to_datetime(["2026-01-05 18:00", "2026-01-04 07:00"]).tz_localize("UTC"),
        index=[ALICE, BOB],
    )
    batch = customer_features_at(
        customers,
        accounts,
        [pd.concat([transactions, events], ignore_index=True)],
        latest,
    ).set_index("customer_token")
    assert list(online.index) == [ALICE, BOB]
    assert (online["event_timestamp"] == latest).all()
    for name in batch.columns.drop("event_timestamp"):
        expected, found = batch[name].reindex(online.index), online[name]
        if name == "employment_status":
            assert list(found) == list(expected)
            continue
        assert np.allclose(found, expected, atol=0.005, equal_nan=True), name
    alice = online.loc[ALICE]
    # Spot values: gambling on the card, 80 in October and 45.25 streamed; the card's
    # balance and utilisation, the late fees of 365 days.
    assert alice["gambling_spend_90d"] == pytest.approx(125.25)
    assert alice["card_balance"] == pytest.approx(-245.75)
    assert alice["card_utilisation"] == pytest.approx(245.75 / 3_000)
    assert alice["current_balance"] == pytest.approx(428.0)
    assert alice["late_fee_count_365d"] == 1
    assert online.loc[BOB, "late_fee_count_90d"] == 1


def test_plain_nats_only_on_loopback() -> None:
    assert StreamingSettings(server="nats://127.0.0.1:4222").server.startswith("nats")
    with pytest.raises(ValidationError, match="only a loopback stream may be plain"):
        StreamingSettings(server="nats://nats.bank.internal:4222")
    with pytest.raises(ValidationError, match="neither 'embedded' nor"):
        StreamingSettings(server="kafka://broker:9092")
