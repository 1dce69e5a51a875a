"""The booking stream end to end: the edge publishes on the embedded JetStream,
``bankplatform stream`` counts each event once and the online store ends equal to
the batch's own computation, to the cent, whatever kills the consumer."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bankplatform.feature_repo.definitions import credit_default_v1
from bankplatform.feature_repo.services import service_features
from bankplatform.features.customer_features import (
    BOOKING_COLUMNS,
    customer_features_at,
)
from bankplatform.project import env_config_loader
from bankplatform.security.envelope import DecryptingReader
from bankplatform.streaming.broker import (
    ADMIN,
    EDGE,
    FEATURES,
    EmbeddedServer,
    StreamEndpoint,
    StreamError,
    connect,
    endpoint,
)
from bankplatform.streaming.events import BookingEvent
from bankplatform.streaming.settings import StreamingSettings, load_streaming_settings
from tests.conftest import (
    BIN,
    REPO,
    command_env,
    copy_workspace,
    read_encrypted,
    read_raw,
    run_command,
    workspace_keyring,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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


@pytest.fixture
def streaming_workspace(featured_workspace: Path, tmp_path: Path) -> Any:
    """A copy of the featured 1k workspace; its stream server stopped at the end."""
    root = copy_workspace(featured_workspace, tmp_path / "ws")
    yield root
    EmbeddedServer(_settings(root), root).stop()


def _settings(root: Path) -> StreamingSettings:
    return load_streaming_settings(env_config_loader(root, ENV), root)


def _bankplatform(root: Path, *args: str, timeout: float = 240) -> Any:
    result = run_command(["bankplatform", *args, "--env", ENV], root, timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _stream_messages(root: Path, stream: str) -> list[tuple[int, bytes]]:
    """Every message a stream holds (sequence, data), read as the platform."""
    settings = _settings(root)

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


def _primary(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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


def _counted_events(
    root: Path, accounts: pd.DataFrame, after: pd.Timestamp
) -> pd.DataFrame:
    """The stream's well-formed, first-seen events on known accounts after the
    batch: what the consumer must have counted, once each."""
    rows, seen = [], set()
    known = set(accounts["account_token"].astype(str))
    for _, data in _stream_messages(root, _settings(root).stream):
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


def _assert_online_equals_batch(root: Path) -> dict[str, Any]:
    """Every streamed customer's online features equal the batch computation over
    the primary bookings plus the streamed ones, at that customer's latest booking."""
    from feast import FeatureStore

    customers, accounts, transactions = _primary(root)
    batch_end = pd.to_datetime(transactions["booked_at"]).max()
    events = _counted_events(root, accounts, batch_end)
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


def test_streamed_features_equal_the_batch_to_the_cent(
    streaming_workspace: Path,
) -> None:
    root = streaming_workspace
    published = _bankplatform(
        root, "simulate", "bookings", "--rate", "300", "--seconds", "3", "--seed", "5"
    )
    assert "account numbers pseudonymised at the edge" in published.stdout
    consumed = _bankplatform(root, "stream", "--until-idle", "2")
    assert "ledger started from the batch" in consumed.stdout
    figures = _assert_online_equals_batch(root)
    assert figures["events"] >= 800
    # Streamed bookings are the newest of the 7-day window: every customer has some.
    assert figures["with_7d_activity"] == figures["customers"]
    status = _bankplatform(root, "stream", "status")
    assert "lag 0" in status.stdout
    audit = _bankplatform(root, "audit", "show", "--tail", "30").stdout
    assert "stream.consume" in audit


def test_no_raw_account_number_reaches_the_stream_store(
    streaming_workspace: Path,
) -> None:
    root = streaming_workspace
    _bankplatform(root, "simulate", "bookings", "--rate", "200", "--seconds", "2")
    store = _settings(root).folder / "store"
    files = [p for p in store.rglob("*") if p.is_file()]
    content = b"".join(p.read_bytes() for p in files)
    assert files and len(content) > 100_000, (
        "the stream's store was not where we looked"
    )
    raw = read_raw(root / "data" / "01_raw", "accounts")
    numbers = {str(n) for n in raw["account_id"].dropna() if len(str(n)) >= 4}
    assert len(numbers) > 1_000
    # The store does hold the events (their tokens), and no account number.
    assert content.count(b'"account_token":"acc_') >= 400
    leaked = [n for n in numbers if n.encode() in content]
    assert leaked == []


def test_malformed_events_are_dead_letters_and_the_consumer_goes_on(
    streaming_workspace: Path,
) -> None:
    root = streaming_workspace
    _bankplatform(root, "simulate", "bookings", "--rate", "150", "--seconds", "1")
    _, accounts, transactions = _primary(root)
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
    settings = _settings(root)

    async def publish() -> None:
        connection = await connect(endpoint(settings, root, EDGE), EDGE)
        try:
            for data in bad:
                await connection.jetstream().publish(settings.subject, data)
        finally:
            await connection.close()

    asyncio.run(publish())
    consumed = _bankplatform(root, "stream", "--until-idle", "2")
    assert "dead letters" in consumed.stdout
    letters = [
        orjson.loads(d) for _, d in _stream_messages(root, settings.dead_letter_stream)
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
    # The good event counted once, at its first amount; everything else still flowed.
    _assert_online_equals_batch(root)


def test_kill_9_at_random_points_loses_and_doubles_nothing(
    streaming_workspace: Path,
) -> None:
    root = streaming_workspace
    env = {**command_env(), "KEDRO_ENV": ENV}
    publisher = subprocess.Popen(
        [
            str(BIN / "bankplatform"),
            "simulate",
            "bookings",
            "--rate",
            "250",
            "--seconds",
            "12",
            "--env",
            ENV,
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(11)  # noqa: S311 - when to kill, not a secret
    kills = 0
    # The first consumer starts the ledger from the batch; then kill -9, again and again.
    for _ in range(4):
        consumer = subprocess.Popen(
            [str(BIN / "bankplatform"), "stream", "--env", ENV],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(6.0, 9.0) if kills == 0 else rng.uniform(1.0, 3.5))
        if consumer.poll() is None:
            os.kill(consumer.pid, signal.SIGKILL)
            kills += 1
        consumer.wait(30)
    out, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err[-2000:]
    assert kills >= 3
    _bankplatform(root, "stream", "--until-idle", "3")
    _, accounts, transactions = _primary(root)
    events = _counted_events(
        root, accounts, pd.to_datetime(transactions["booked_at"]).max()
    )
    import sqlite3

    with sqlite3.connect(_settings(root).ledger) as db:
        counted = db.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchone()
    assert counted == (len(events), len(events))
    assert len(events) >= 2_000
    _assert_online_equals_batch(root)


def test_a_credential_of_another_identity_is_refused(
    streaming_workspace: Path, tmp_path: Path
) -> None:
    from bankplatform.security.tls import issue_certificate, local_ca

    root = streaming_workspace
    settings = _settings(root)
    _bankplatform(root, "simulate", "bookings", "--rate", "10", "--seconds", "1")
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


def test_an_existing_jetstream_stands_in_for_the_bank_s_cluster(
    streaming_workspace: Path,
) -> None:
    """The production profile's path: no embedded server, the machine's own
    JetStream on 127.0.0.1:4222 (plain: the only TLS-less URL accepted is a
    loopback one), under names of this test's own."""
    import uuid

    import nats
    import yaml

    root = streaming_workspace
    prod = yaml.safe_load((REPO / "conf" / "prod" / "streaming.yml").read_text())
    prod_settings = StreamingSettings.model_validate(prod["streaming"])
    assert prod_settings.server.startswith("tls://")
    assert set(prod_settings.credentials) == {EDGE, FEATURES, ADMIN}
    suffix = uuid.uuid4().hex[:8]
    names = {
        "stream": f"BOOKINGS_{suffix}",
        "subject": f"bookings.{suffix}.events",
        "dead_letter_stream": f"BOOKINGS_DEAD_{suffix}",
        "dead_letter_subject": f"bookings.{suffix}.dead_letter",
        "consumer": f"online-features-{suffix}",
        "ack_wait_seconds": 5,
    }
    (root / "conf" / ENV / "streaming.yml").write_text(
        yaml.safe_dump({"streaming": names})
    )
    external = {"BANKPLATFORM_STREAM_SERVER": "nats://127.0.0.1:4222"}

    def command(*args: str) -> Any:
        result = run_command(["bankplatform", *args, "--env", ENV], root, 240, external)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    try:
        command(
            "simulate", "bookings", "--rate", "200", "--seconds", "2", "--seed", "9"
        )
        command("stream", "--until-idle", "2")
        status = command("stream", "status").stdout
        assert f"stream {names['stream']}:" in status and "lag 0" in status
        assert not (root / ".bankplatform" / "stream" / "run").exists()  # never started

        async def held() -> int:
            connection = await nats.connect("nats://127.0.0.1:4222")
            try:
                info = await connection.jetstream().stream_info(names["stream"])
                return int(info.state.messages)
            finally:
                await connection.close()

        assert asyncio.run(held()) >= 350
        os.environ["BANKPLATFORM_STREAM_SERVER"] = external[
            "BANKPLATFORM_STREAM_SERVER"
        ]
        _assert_online_equals_batch(root)
    finally:
        os.environ.pop("BANKPLATFORM_STREAM_SERVER", None)

        async def remove() -> None:
            connection = await nats.connect("nats://127.0.0.1:4222")
            try:
                for stream in (names["stream"], names["dead_letter_stream"]):
                    try:
                        await connection.jetstream().delete_stream(stream)
                    except Exception:  # noqa: S110 - not created
                        pass
            finally:
                await connection.close()

        asyncio.run(remove())


def test_the_notebook_shows_a_booking_move_features_and_score_and_decisions_see_it(
    governed_workspace: Path, tmp_path: Path
) -> None:
    """Notebook 07 on a workspace with a champion: bookings published and counted,
    one customer's features and score before and after; then the scoring service
    decides on the streamed features and its decision line says as of when."""
    from tests.conftest import notebook_summary
    from tests.helpers import champion_workspace, start_service, token

    root = champion_workspace(governed_workspace, tmp_path / "champion")
    try:
        summary = notebook_summary("07_streaming_features.ipynb", root, tmp_path)
        assert summary["published"] >= 250
        assert summary["counted"] + summary["dead_letters"] == summary["published"]
        assert summary["customers_moved"] > 100
        assert summary["as_of_before"] == "2026-01-01T00:00:00+00:00"
        assert summary["as_of_after"] > summary["as_of_before"]
        assert "txn_count_7d" in summary["features_changed"]
        assert 0 < summary["score_before"] < 1 and 0 < summary["score_after"] < 1
        service = start_service(root)
        try:
            with service.client(
                token(root, "origination-system", "scoring_client")
            ) as client:
                answer = client.post(
                    "/v1/score",
                    json={
                        "customer_token": summary["customer"],
                        "amount": 8_000.0,
                        "term_months": 36,
                        "purpose": "car",
                    },
                )
            assert answer.status_code == 200, answer.text
            request_id = answer.json()["request_id"]
            shown = run_command(
                ["bankplatform", "decision", "show", request_id, "--env", ENV], root
            )
            assert shown.returncode == 0, shown.stderr[-2000:]
        finally:
            service.stop()
        from bankplatform.serving.records import decision_lines

        folder = root / "data" / "08_reporting" / "decisions"
        (line,) = [
            record
            for path in sorted(folder.glob("*.jsonl"))
            for _, record in decision_lines(path)
            if record.get("request_id") == request_id
        ]
        # Feast keeps whole seconds of the event time.
        streamed = pd.Timestamp(summary["as_of_after"]).floor("s")
        assert pd.Timestamp(line["features_as_of"]) == streamed
        assert line["score"] == pytest.approx(summary["score_after"], abs=1e-6)
    finally:
        EmbeddedServer(_settings(root), root).stop()
