"""Helpers of the booking-stream tests: the stream's messages, the primary layer,
and the check that the online store equals the batch's own computation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from bankplatform.feature_repo.definitions import credit_default_v1
from bankplatform.feature_repo.services import service_features
from bankplatform.features.customer_features import (
    BOOKING_COLUMNS,
    customer_features_at,
)
from bankplatform.project import env_config_loader
from bankplatform.security.envelope import DecryptingReader
from bankplatform.streaming.broker import ADMIN, connect, endpoint
from bankplatform.streaming.events import BookingEvent
from bankplatform.streaming.settings import StreamingSettings, load_streaming_settings
from tests.conftest import (
    read_encrypted,
    run_command,
    workspace_keyring,
)

ENV = "test"
# Every customer feature the model's service reads online (not the application's).
ONLINE_REFS = [
    ref
    for ref in service_features(credit_default_v1)
    if not ref.startswith("loan_application_terms:")
]
FEATURE_COLUMNS = [
    ref.partition(":")[2]
    for ref in ONLINE_REFS
    if not ref.endswith("employment_status")
]


def stream_settings(root: Path) -> StreamingSettings:
    return load_streaming_settings(env_config_loader(root, ENV), root)


def bankplatform(root: Path, *args: str, timeout: float = 240) -> Any:
    result = run_command(["bankplatform", *args, "--env", ENV], root, timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def stream_messages(root: Path, stream: str) -> list[tuple[int, bytes]]:
    """Every message a stream holds (sequence, data), read as the platform."""
    settings = stream_settings(root)

    async def read() -> list[tuple[int, bytes]]:
        connection = await connect(endpoint(settings, root, ADMIN), ADMIN)
        try:
            js = connection.jetstream()
            info = await js.stream_info(stream)
            found = []
            for sequence in range(info.state.first_seq, info.state.last_seq + 1):
                message = await js.get_msg(stream, sequence)
                found.append((sequence, bytes(message.data)))
            return found
        finally:
            await connection.close()

    return asyncio.run(read())


def primary_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    primary = root / "data" / "03_primary"
    keyring = workspace_keyring(root)
    customers = read_encrypted(
        primary / "customers.parquet.enc", "customers_primary", keyring
    )
    accounts = read_encrypted(
        primary / "accounts.parquet.enc", "accounts_primary", keyring
    )
    with DecryptingReader(
        primary / "transactions.parquet.enc", "transactions_primary", keyring
    ) as reader:
        transactions = pq.read_table(reader, columns=BOOKING_COLUMNS).to_pandas()
    return customers, accounts, transactions


def counted_events(
    root: Path, accounts: pd.DataFrame, after: pd.Timestamp
) -> pd.DataFrame:
    """The stream's well-formed, first-seen events on known accounts after the
    batch: what the consumer must have counted, once each."""
    rows, seen = [], set()
    known = set(accounts["account_token"].astype(str))
    for _, data in stream_messages(root, stream_settings(root).stream):
        try:
            event = BookingEvent.model_validate(orjson.loads(data))
        except (ValueError, orjson.JSONDecodeError):
            continue
        booked = pd.Timestamp(event.booked_at).tz_convert("UTC").tz_localize(None)
        if (
            event.event_id in seen
            or event.account_token not in known
            or booked <= after
        ):
            continue
        seen.add(event.event_id)
        rows.append(
            {
                "event_id": event.event_id,
                "account_token": event.account_token,
                "booked_at": booked,
                "amount": event.amount,
                "channel": event.channel,
                "mcc": event.mcc,
                "balance_after": event.balance_after,
            }
        )
    return pd.DataFrame(rows)


def assert_online_equals_batch(root: Path) -> dict[str, Any]:
    """Every streamed customer's online features equal the batch computation over
    the primary bookings plus the streamed ones, at that customer's latest booking."""
    from feast import FeatureStore

    customers, accounts, transactions = primary_tables(root)
    batch_end = pd.to_datetime(transactions["booked_at"]).max()
    events = counted_events(root, accounts, batch_end)
    assert len(events) > 50, "too few streamed events for the check to mean anything"
    owner = accounts.set_index("account_token")["customer_token"]
    events["customer_token"] = owner.reindex(events["account_token"]).to_numpy()
    latest = events.groupby("customer_token")["booked_at"].max()
    everything = pd.concat(
        [transactions, events[BOOKING_COLUMNS]], ignore_index=True
    ).sort_values("booked_at", kind="stable")
    expected = customer_features_at(
        customers, accounts, [everything], latest
    ).set_index("customer_token")
    store = FeatureStore(repo_path=str(root / "data" / "04_feature"))
    response = store.get_online_features(
        features=ONLINE_REFS,
        entity_rows=[{"customer_token": t} for t in latest.index],
    ).to_dict(include_event_timestamps=True)
    online = pd.DataFrame(response).set_index("customer_token")
    assert len(expected) == len(latest) == len(online)
    for name in FEATURE_COLUMNS:
        want = expected[name].reindex(online.index).to_numpy("float64")
        got = online[name].to_numpy("float64")
        same = (np.isnan(want) & np.isnan(got)) | (np.abs(want - got) < 0.005)
        assert same.all(), (name, want[~same][:5], got[~same][:5])
    assert list(online["employment_status"]) == list(
        expected["employment_status"].reindex(online.index)
    )
    stamps = pd.to_datetime(online["txn_count_7d__ts"], unit="s")
    assert (stamps == latest.reindex(online.index).dt.floor("s")).all()
    changed = (expected["txn_count_7d"].reindex(online.index).to_numpy() > 0).sum()
    return {
        "customers": len(latest),
        "events": len(events),
        "with_7d_activity": changed,
    }
