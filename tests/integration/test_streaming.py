"""The booking stream end to end on the embedded JetStream: the edge publishes
pseudonymised bookings (and a faulty producer malformed ones), ``bankplatform
stream`` counts each good event once and dead-letters the rest with a reason, the
online store ends equal to the batch's own computation to the cent, no account
number reaches the stream's store, and a certificate of the wrong identity is
refused. One workspace, one consumer run: the suite's time is the shared machine's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from bankplatform.security.tls import issue_certificate, local_ca
from bankplatform.streaming.broker import (
    EDGE,
    FEATURES,
    StreamEndpoint,
    StreamError,
    connect,
    endpoint,
)
from tests.conftest import read_raw
from tests.streams import (
    assert_online_equals_batch,
    bankplatform,
    primary_tables,
    stream_messages,
    stream_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_stream_counts_each_event_once_and_agrees_with_the_batch(
    streaming_workspace: Path, tmp_path: Path
) -> None:
    root = streaming_workspace
    settings = stream_settings(root)
    published = bankplatform(
        root, "simulate", "bookings", "--rate", "300", "--seconds", "3", "--seed", "5"
    )
    assert "account numbers pseudonymised at the edge" in published.stdout
    _, accounts, transactions = primary_tables(root)
    token = str(accounts["account_token"].iloc[0])
    good = {
        "event_id": "bk-test-good-1",
        "account_token": token,
        "booked_at": "2026-03-01T10:00:00+00:00",
        "amount": -42.5,
        "channel": "pos",
        "mcc": "5411",
        "balance_after": 900.0,
    }
    bad = [
        b"{not json",
        orjson.dumps(
            {**good, "event_id": "bk-unknown", "account_token": "acc_" + "0" * 32}
        ),
        orjson.dumps(
            {**good, "event_id": "bk-early", "booked_at": "2025-06-01T00:00:00+00:00"}
        ),
        orjson.dumps({**good, "event_id": "bk-huge", "note": "x" * 1_048_576}),
        orjson.dumps(good),
        orjson.dumps({**good, "amount": -1.0}),  # the same id again
        orjson.dumps({**good, "event_id": "bk-test-good-2", "amount": "12,50"}),
    ]

    async def publish() -> None:
        connection = await connect(endpoint(settings, root, EDGE), EDGE)
        try:
            for data in bad:
                await connection.jetstream().publish(settings.subject, data)
        finally:
            await connection.close()

    asyncio.run(publish())
    consumed = bankplatform(root, "stream", "--until-idle", "2")
    assert "ledger started from the batch" in consumed.stdout
    assert "dead letters" in consumed.stdout
    letters = [
        orjson.loads(d) for _, d in stream_messages(root, settings.dead_letter_stream)
    ]
    reasons = {letter["event_id"]: letter["reason"] for letter in letters}
    assert any(letter["reason"].startswith("not JSON") for letter in letters)
    assert reasons["bk-unknown"] == "unknown account acc_" + "0" * 32
    assert "is not after the batch's last booking" in reasons["bk-early"]
    assert reasons["bk-test-good-1"].startswith("duplicate event id bk-test-good-1")
    assert reasons["bk-test-good-2"].startswith("amount:")
    huge = next(letter for letter in letters if "bytes is over" in letter["reason"])
    assert huge["reason"].endswith("bytes is over the 65,536-byte limit")
    assert huge["event"] is None and huge["bytes"] > 1_048_576
    # The good one among the faulty producer's events counted once, at its first
    # amount; every other event still flowed, to the cent.
    figures = assert_online_equals_batch(root)
    assert figures["events"] >= 800
    # Streamed bookings are the newest of the 7-day window: every customer has some.
    assert figures["with_7d_activity"] == figures["customers"]
    status = bankplatform(root, "stream", "status")
    assert "lag 0" in status.stdout
    assert (
        "stream.consume" in bankplatform(root, "audit", "show", "--tail", "30").stdout
    )
    _the_store_holds_tokens_and_no_account_number(root)
    _another_identity_is_refused(root, tmp_path)


def _the_store_holds_tokens_and_no_account_number(root: Path) -> None:
    store = stream_settings(root).folder / "store"
    files = [p for p in store.rglob("*") if p.is_file()]
    content = b"".join(p.read_bytes() for p in files)
    assert files and len(content) > 100_000, (
        "the stream's store was not where we looked"
    )
    raw = read_raw(root / "data" / "01_raw", "accounts")
    numbers = {str(n) for n in raw["account_id"].dropna() if len(str(n)) >= 4}
    assert len(numbers) > 1_000
    assert content.count(b'"account_token":"acc_') >= 800
    leaked = [n for n in numbers if n.encode() in content]
    assert leaked == []


def _another_identity_is_refused(root: Path, tmp_path: Path) -> None:
    settings = stream_settings(root)
    features = endpoint(settings, root, FEATURES)
    edge = endpoint(settings, root, EDGE)
    server_log = settings.folder / "run" / "nats-server.log"

    async def consumer_publishes() -> str:
        connection = await connect(features, FEATURES)
        try:
            await connection.jetstream().publish(settings.subject, b"{}", timeout=2)
            return "published"
        except Exception as error:
            return type(error).__name__
        finally:
            await connection.close()

    async def edge_reads() -> str:
        connection = await connect(edge, EDGE)
        try:
            sub = await connection.jetstream().pull_subscribe_bind(
                settings.consumer, stream=settings.stream
            )
            await sub.fetch(1, timeout=2)
            return "read"
        except Exception as error:
            return type(error).__name__
        finally:
            await connection.close()

    assert asyncio.run(consumer_publishes()) == "TimeoutError"
    assert asyncio.run(edge_reads()) == "TimeoutError"
    log = server_log.read_text()
    assert (
        'online-features@stream.bankplatform.local" - Publish Violation - Subject "bookings.events"'
        in log
    )
    assert (
        'booking-edge@stream.bankplatform.local" - Publish Violation - Subject "$JS.API.CONSUMER.MSG.NEXT'
        in log
    )
    # A certificate from another CA, and no certificate at all: no connection.
    stranger = local_ca(tmp_path / "other-ca")
    cert, key = issue_certificate(
        stranger,
        tmp_path / "x.crt",
        tmp_path / "x.key",
        ["x"],
        ("online-features@stream.bankplatform.local",),
    )
    for target in (
        StreamEndpoint(features.url, features.ca_file, cert, key),
        StreamEndpoint(features.url, features.ca_file, None, None),
    ):
        with pytest.raises(StreamError, match="cannot connect to the booking stream"):
            asyncio.run(connect(target, FEATURES))
