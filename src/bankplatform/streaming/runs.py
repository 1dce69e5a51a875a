"""The stream's two jobs as a workspace runs them (``bankplatform stream`` and
``simulate bookings``, and notebook 07): each under its service identity, started
by the caller, with the one-line refusals of the key service.

- ``publish_bookings``: core banking's new bookings through the booking edge (as
  ``svc-booking-edge``).
- ``consume_bookings``: the consumer into the online store (as ``svc-streaming``),
  its ledger started from the batch the first time, the run audited.
- ``online_view``: what the online store holds for some customers, with as-of times.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import pandas as pd
from feast.data_source import PushMode
from filelock import FileLock, Timeout
from kedro.io.core import DatasetError
from nats.js.errors import NotFoundError

from bankplatform.errors import BankplatformError
from bankplatform.feature_repo.definitions import credit_default_v1
from bankplatform.feature_repo.services import service_features
from bankplatform.features.customer_features import BOOKING_COLUMNS
from bankplatform.project import catalog_dataset, env_config_loader
from bankplatform.security.client import acting_for, acting_pipeline
from bankplatform.security.runtime import activate, granted_run
from bankplatform.streaming.broker import (
    ADMIN,
    EDGE,
    FEATURES,
    connect,
    endpoint,
    ensure_streams,
)
from bankplatform.streaming.consumer import BookingConsumer, ConsumerReport, StopWhen
from bankplatform.streaming.edge import BookingEdge
from bankplatform.streaming.ledger import BatchLayer, Ledger
from bankplatform.streaming.settings import StreamingSettings, load_streaming_settings
from bankplatform.synthetic import GeneratorConfig
from bankplatform.synthetic.bookings import BookingDraws
from bankplatform.synthetic.extract import SUMMARY_FILE, core_banking_accounts

if TYPE_CHECKING:
    from pathlib import Path

    from bankplatform.security.runtime import WorkspaceSecurity


class WorkspaceContext(Protocol):
    """What a stream job needs of a workspace (``bankplatform.context``'s)."""

    @property
    def root(self) -> Path: ...
    @property
    def env(self) -> str: ...
    @property
    def security(self) -> WorkspaceSecurity: ...


PUSH_SOURCE = "customer_features_push"
_TICK = 0.1  # the publisher's pace: a tenth of a second's bookings at a time


class StreamRunError(BankplatformError):
    """A stream job that cannot run: the message says why."""


@dataclass(frozen=True)
class Published:
    """What ``publish_bookings`` put on the stream."""

    stored: int
    first_booked_at: str
    last_booked_at: str


def stream_settings(ctx: WorkspaceContext) -> StreamingSettings:
    """The env's ``streaming.yml`` (``$BANKPLATFORM_STREAM_SERVER`` applied)."""
    return load_streaming_settings(env_config_loader(ctx.root, ctx.env), ctx.root)


def publish_bookings(
    ctx: WorkspaceContext, rate: float, seconds: float, seed: int | None = None
) -> Published:
    """Publish ``rate`` bookings a second for ``seconds`` as the booking edge."""
    settings = stream_settings(ctx)
    extract = extract_config(ctx)
    draws = BookingDraws.over(
        core_banking_accounts(extract),
        seed if seed is not None else uuid.uuid4().int % 2**31,
    )
    activate(ctx.security)
    with granted_run(ctx.security, ["booking_edge"]), acting_for("booking_edge"):
        _run(_ensure(ctx, settings, replay=False))

        async def publish() -> Published:
            connection = await connect(endpoint(settings, ctx.root, EDGE), EDGE)
            try:
                edge = BookingEdge(settings, connection, ctx.security.pseudonymiser())
                return await _paced(edge, draws, rate, seconds, extract.history_end)
            finally:
                await connection.close()

        return _run(publish())


def consume_bookings(
    ctx: WorkspaceContext,
    idle_seconds: float | None = None,
    max_events: int | None = None,
    *,
    on_seeded: Any = None,
) -> ConsumerReport:
    """Consume into the online store as the streaming service until idle, a count,
    or SIGINT/SIGTERM; ``on_seeded(ledger, kept)`` hears when a new ledger started."""
    settings = stream_settings(ctx)
    settings.ledger.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.ledger.with_suffix(".lock")), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        msg = f"another `bankplatform stream` is consuming into {settings.ledger}"
        raise StreamRunError(msg) from None
    activate(ctx.security)
    try:
        with granted_run(ctx.security, ["streaming"]), acting_for("streaming"):
            ledger = Ledger(settings.ledger)
            try:
                if not ledger.seeded:
                    try:
                        batch = _batch_layer(ctx)
                    except DatasetError as error:
                        first = str(error).splitlines()[-1]
                        msg = f"the ledger starts from the primary layer, which cannot be read ({first}): run `kedro run --pipeline ingestion` first"
                        raise StreamRunError(msg) from None
                    kept = ledger.seed(batch)
                    if on_seeded is not None:
                        on_seeded(ledger, kept)
                # A new ledger counts every event the stream holds, from the first.
                _run(_ensure(ctx, settings, replay=not ledger.replayed))
                ledger.mark_replayed()
                store = catalog_dataset(ctx.root, ctx.env, "feature_store").load()

                def push(rows: pd.DataFrame) -> None:
                    store.push(PUSH_SOURCE, rows, to=PushMode.ONLINE)

                consumer = BookingConsumer(
                    settings, endpoint(settings, ctx.root, FEATURES), ledger, push
                )
                report = _run(
                    _until_signalled(consumer, StopWhen(idle_seconds, max_events))
                )
                ctx.security.audit_log().append(
                    "stream.consume",
                    f"stream:{settings.stream}/{settings.consumer}",
                    "allowed",
                    {
                        "counted": report.counted,
                        "redelivered": report.redelivered,
                        "dead_letters": report.dead_letters,
                        "customers_pushed": report.customers_pushed,
                        "ledger_counted": ledger.counted(),
                    },
                )
                return report
            finally:
                ledger.close()
    finally:
        lock.release()


def online_view(ctx: WorkspaceContext, tokens: list[str]) -> pd.DataFrame:
    """The online store's customer features for ``tokens`` with each one's as-of
    time (``as_of``, UTC), one row per customer, by token."""
    store = catalog_dataset(ctx.root, ctx.env, "feature_store").load()
    refs = [
        r
        for r in service_features(credit_default_v1)
        if not r.startswith("loan_application_terms:")
    ]
    response = store.get_online_features(
        features=refs, entity_rows=[{"customer_token": t} for t in tokens]
    ).to_dict(include_event_timestamps=True)
    frame = pd.DataFrame(response).set_index("customer_token")
    stamps = frame[[c for c in frame.columns if c.endswith("__ts")]]
    view = frame.drop(columns=stamps.columns)
    stamps = stamps.drop(columns="customer_token__ts", errors="ignore")  # the key's: 0
    view["as_of"] = pd.to_datetime(stamps.min(axis=1), unit="s", utc=True)
    return view


def extract_config(ctx: WorkspaceContext) -> GeneratorConfig:
    """The settings the workspace's raw extract was generated with (its
    ``_extract.json``: sizes and seed, no data)."""
    summary = ctx.root / "data" / "01_raw" / SUMMARY_FILE
    if not summary.is_file():
        msg = f"no extract in this workspace ({summary} is missing): run `bankplatform data generate`"
        raise StreamRunError(msg)
    return GeneratorConfig.model_validate(orjson.loads(summary.read_bytes())["config"])


async def _paced(
    edge: BookingEdge,
    draws: BookingDraws,
    rate: float,
    seconds: float,
    history_end: date,
) -> Published:
    """``rate`` bookings a second for ``seconds``: exactly ``rate * seconds`` of
    them, paced by the clock (a busy machine catches up, it never publishes fewer);
    event times run on from the stream's last booking (or the day after the
    extract's end)."""
    run = uuid.uuid4().hex[:10]
    first = clock = await _after_last_booking(edge, history_end)
    total = round(rate * seconds)
    started = time.monotonic()
    number, stored = 0, 0
    while number < total:
        elapsed = time.monotonic() - started
        count = min(total, int(rate * elapsed) + 1) - number
        if count > 0:
            until = max(first + pd.Timedelta(seconds=elapsed), clock)
            raw = draws.draw(count, clock, until)
            ids = [f"bk-{run}-{number + i:09d}" for i in range(count)]
            stored += await edge.publish(raw, ids)
            number += count
            clock = until + pd.Timedelta(microseconds=1)
        await asyncio.sleep(_TICK)
    return Published(stored, first.isoformat(), clock.isoformat())


async def _after_last_booking(edge: BookingEdge, history_end: date) -> pd.Timestamp:
    settings = edge.settings
    try:
        last = await edge.connection.jetstream().get_last_msg(
            settings.stream, settings.subject
        )
        booked = pd.Timestamp(orjson.loads(last.data or b"{}")["booked_at"])
        return booked + pd.Timedelta(seconds=1)
    except (NotFoundError, KeyError, ValueError, orjson.JSONDecodeError):
        # The day after the extract's last: the batch holds everything before.
        return (pd.Timestamp(history_end) + pd.Timedelta(days=1)).tz_localize("UTC")


async def _ensure(
    ctx: WorkspaceContext, settings: StreamingSettings, *, replay: bool
) -> None:
    """The streams and the consumer exist (created as the platform's identity)."""
    connection = await connect(endpoint(settings, ctx.root, ADMIN), ADMIN)
    try:
        await ensure_streams(connection, settings, replay=replay)
    finally:
        await connection.close()


async def _until_signalled(
    consumer: BookingConsumer, until: StopWhen
) -> ConsumerReport:
    until.stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, until.stop.set)
        except (RuntimeError, ValueError):  # not the main thread (a notebook's run)
            break
    return await consumer.run(until)


def _run(awaitable: Any) -> Any:
    """Run a coroutine to its end from synchronous code (a notebook's too, whose
    kernel already runs a loop: then in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(awaitable)
    pipeline = acting_pipeline()  # the service identity is the thread's: carry it

    def in_thread() -> Any:
        with acting_for(pipeline):
            return asyncio.run(awaitable)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(in_thread).result()


def _batch_layer(ctx: WorkspaceContext) -> BatchLayer:
    """The primary layer the ledger starts from (read as the streaming service)."""

    def dataset(name: str) -> Any:
        return catalog_dataset(ctx.root, ctx.env, name)

    transactions = dataset("transactions_primary").load()
    last = max(
        pd.to_datetime(batch["booked_at"]).max()
        for batch in transactions.batches(["booked_at"])
    )
    digests = []
    for path in sorted((ctx.root / "data" / "03_primary").glob("*.parquet.enc")):
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        digests.append(f"{path.name} sha256 {digest[:16]}")
    return BatchLayer(
        customers=dataset("customers_primary").load(),
        accounts=dataset("accounts_primary").load(),
        bookings=transactions.batches(BOOKING_COLUMNS),
        last_booking=pd.Timestamp(last),
        source=", ".join(digests),
    )
