"""``bankplatform stream`` and ``simulate bookings``: core-banking bookings into fresh
online features, on NATS JetStream."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from datetime import date

    import pandas as pd

    from bankplatform.context import WorkspaceContext
    from bankplatform.streaming.ledger import BatchLayer
    from bankplatform.streaming.settings import StreamingSettings

_ENV = click.option(
    "--env", help="Kedro env whose streaming.yml and catalog apply [manifest default]."
)
PUSH_SOURCE = "customer_features_push"


@click.group(invoke_without_command=True)
@click.option(
    "--until-idle",
    type=click.FloatRange(0.1, 86_400),
    help="Stop after this many seconds with nothing to consume [run until stopped].",
)
@click.option(
    "--max-events", type=click.IntRange(1), help="Stop after this many events."
)
@_ENV
@click.pass_context
def stream(
    click_context: click.Context,
    until_idle: float | None,
    max_events: int | None,
    env: str | None,
) -> None:
    """Consume booking events into the online store (as the streaming service,
    started by a data engineer or admin): each event counted once in the ledger,
    the customer's 7/30/90/365-day features recomputed and pushed through Feast's
    push source; malformed events go to the dead-letter subject with the reason.
    Runs until Ctrl-C or SIGTERM unless --until-idle or --max-events say otherwise."""
    if click_context.invoked_subcommand is not None:
        return
    from filelock import FileLock, Timeout

    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import activate, granted_run
    from bankplatform.streaming.broker import FEATURES, endpoint
    from bankplatform.streaming.consumer import BookingConsumer, StopWhen
    from bankplatform.streaming.ledger import Ledger

    ctx, settings = _contexts(env)
    activate(ctx.security)
    lock = FileLock(str(settings.ledger.with_suffix(".lock")), timeout=0)
    settings.ledger.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except Timeout:
        raise click.ClickException(
            f"another `bankplatform stream` is consuming into {settings.ledger}"
        ) from None
    try:
        with granted_run(ctx.security, ["streaming"]), acting_for("streaming"):
            ledger = Ledger(settings.ledger)
            if not ledger.seeded:
                kept = ledger.seed(_batch_layer(ctx))
                click.echo(
                    f"ledger started from the batch: bookings after "
                    f"{ledger.window_start.isoformat()} belong to the stream "
                    f"({kept:,} recent bookings kept for the windows)"
                )
            # A new ledger counts every event the stream holds, from the first.
            _ensure_streams(ctx, settings, replay=not ledger.replayed)
            ledger.mark_replayed()
            store = _dataset(ctx, "feature_store").load()

            def push(rows: pd.DataFrame) -> None:
                from feast.data_source import PushMode

                store.push(PUSH_SOURCE, rows, to=PushMode.ONLINE)

            consumer = BookingConsumer(
                settings, endpoint(settings, ctx.root, FEATURES), ledger, push
            )
            report = asyncio.run(_run(consumer, StopWhen(until_idle, max_events)))
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
            ledger.close()
    finally:
        lock.release()
    click.echo(report.line())


async def _run(consumer: Any, until: Any) -> Any:
    until.stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, until.stop.set)
    return await consumer.run(until)


@stream.command("status")
@_ENV
def status(env: str | None) -> None:
    """Lag and throughput: what the stream holds, what the consumer has not yet
    acknowledged, and the running consumer's own figures."""
    import json

    from bankplatform.streaming.broker import ADMIN, connect, endpoint

    ctx, settings = _contexts(env)

    async def read() -> dict[str, Any]:
        connection = await connect(endpoint(settings, ctx.root, ADMIN), ADMIN)
        try:
            js = connection.jetstream()
            events = await js.stream_info(settings.stream)
            dead = await js.stream_info(settings.dead_letter_stream)
            consumer = await js.consumer_info(settings.stream, settings.consumer)
        finally:
            await connection.close()
        return {
            "events": int(events.state.messages),
            "last_sequence": int(events.state.last_seq),
            "dead_letters": int(dead.state.messages),
            "pending": int(consumer.num_pending or 0),
            "unacknowledged": int(consumer.num_ack_pending or 0),
            "redelivered": int(consumer.num_redelivered or 0),
        }

    live = asyncio.run(read())
    click.echo(
        f"stream {settings.stream}: {live['events']:,} events (last sequence "
        f"{live['last_sequence']:,}), {live['dead_letters']:,} dead letters; consumer "
        f"{settings.consumer}: {live['pending']:,} not yet delivered, "
        f"{live['unacknowledged']:,} delivered but not acknowledged (lag "
        f"{live['pending'] + live['unacknowledged']:,})"
    )
    if settings.status_file.is_file():
        last = json.loads(settings.status_file.read_text())
        state = "running" if last.get("running") else "stopped"
        latency = last.get("latency_ms") or {}
        click.echo(
            f"consumer {state} (updated {last.get('updated_at')}): "
            f"{last.get('counted', 0):,} counted, {last.get('dead_letters', 0):,} dead "
            f"letters, {last.get('events_per_second', 0)} events/s over the last 10 s, "
            f"published to visible p50 {latency.get('p50', '-')} ms p99 "
            f"{latency.get('p99', '-')} ms, features as of {last.get('last_booked_at')}"
        )
    else:
        click.echo("consumer: never ran in this workspace")


@click.command("bookings")
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 100_000),
    default=100.0,
    show_default=True,
    help="Bookings per second.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0.1, 86_400),
    default=10.0,
    show_default=True,
    help="How long to publish.",
)
@click.option("--seed", type=click.IntRange(0), help="Random seed [a fresh one].")
@_ENV
def simulate_bookings(
    rate: float, seconds: float, seed: int | None, env: str | None
) -> None:
    """Publish new bookings from core banking (after the extract's end) through
    the booking edge: core banking's accounts (drawn as the extract drew them)
    carry raw account numbers, which the key service pseudonymises before
    anything reaches the stream (as the booking edge, started by a data
    engineer). Consume them with `bankplatform stream`."""
    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import activate, granted_run
    from bankplatform.streaming.broker import EDGE, connect, endpoint
    from bankplatform.streaming.edge import BookingEdge
    from bankplatform.synthetic.bookings import BookingDraws
    from bankplatform.synthetic.extract import core_banking_accounts

    ctx, settings = _contexts(env)
    activate(ctx.security)
    extract = _extract_config(ctx)
    accounts = core_banking_accounts(extract)
    draws = BookingDraws.over(accounts, seed if seed is not None else _fresh_seed())
    with granted_run(ctx.security, ["booking_edge"]), acting_for("booking_edge"):
        _ensure_streams(ctx, settings)

        async def publish() -> tuple[int, str, str]:
            connection = await connect(endpoint(settings, ctx.root, EDGE), EDGE)
            try:
                edge = BookingEdge(settings, connection, ctx.security.pseudonymiser())
                return await _publish_for(
                    edge, draws, rate, seconds, extract.history_end, settings
                )
            finally:
                await connection.close()

        published, first, last = asyncio.run(publish())
    click.echo(
        f"published {published:,} bookings ({rate:g}/s for {seconds:g} s) booked "
        f"{first} to {last}, account numbers pseudonymised at the edge"
    )


async def _publish_for(
    edge: Any,
    draws: Any,
    rate: float,
    seconds: float,
    history_end: date,
    settings: StreamingSettings,
) -> tuple[int, str, str]:
    """Publish ``rate`` bookings a second for ``seconds``, in ticks of 100 ms; event
    times run on from the stream's last booking (or the extract's end)."""
    import time

    import pandas as pd

    run = uuid.uuid4().hex[:10]
    clock = await _last_booking(edge, history_end, settings)
    first = clock
    started = time.monotonic()
    tick, due, number, published = 0.1, 0.0, 0, 0
    while (elapsed := time.monotonic() - started) < seconds:
        due += rate * tick
        count = int(due) - number
        if count > 0:
            until = first + pd.Timedelta(seconds=elapsed)
            raw = draws.draw(count, clock, max(until, clock))
            ids = [f"bk-{run}-{number + i:09d}" for i in range(count)]
            published += await edge.publish(raw, ids)
            number += count
            clock = max(until, clock) + pd.Timedelta(microseconds=1)
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - started - elapsed)))
    return published, first.isoformat(), clock.isoformat()


async def _last_booking(
    edge: Any, history_end: date, settings: StreamingSettings
) -> pd.Timestamp:
    import orjson
    import pandas as pd
    from nats.js.errors import NotFoundError

    try:
        last = await edge.connection.jetstream().get_last_msg(
            settings.stream, settings.subject
        )
        booked = pd.Timestamp(orjson.loads(last.data)["booked_at"])
        return booked + pd.Timedelta(seconds=1)
    except (NotFoundError, KeyError, ValueError, orjson.JSONDecodeError):
        # The day after the extract's last: the batch holds everything before.
        return (pd.Timestamp(history_end) + pd.Timedelta(days=1)).tz_localize("UTC")


def _extract_config(ctx: WorkspaceContext) -> Any:
    """The settings the workspace's raw extract was generated with (its
    ``_extract.json``: sizes and seed, no data)."""
    import json

    from bankplatform.synthetic import GeneratorConfig
    from bankplatform.synthetic.extract import SUMMARY_FILE

    summary = ctx.root / "data" / "01_raw" / SUMMARY_FILE
    if not summary.is_file():
        raise click.ClickException(
            f"no extract in this workspace ({summary} is missing): run `bankplatform data generate`"
        )
    return GeneratorConfig.model_validate(json.loads(summary.read_text())["config"])


def _fresh_seed() -> int:
    return int(uuid.uuid4().int % 2**31)


def _contexts(env: str | None) -> tuple[WorkspaceContext, StreamingSettings]:
    from bankplatform.context import workspace_context
    from bankplatform.project import env_config_loader
    from bankplatform.streaming.settings import load_streaming_settings

    ctx = workspace_context(env)
    settings = load_streaming_settings(env_config_loader(ctx.root, ctx.env), ctx.root)
    return ctx, settings


def _dataset(ctx: WorkspaceContext, name: str) -> Any:
    from bankplatform.cli.data import catalog_dataset

    return catalog_dataset(ctx, name)


def _ensure_streams(
    ctx: WorkspaceContext, settings: StreamingSettings, *, replay: bool = False
) -> None:
    """The streams and the consumer exist (created as the platform's identity)."""
    from bankplatform.streaming.broker import ADMIN, connect, endpoint, ensure_streams

    async def ensure() -> None:
        connection = await connect(endpoint(settings, ctx.root, ADMIN), ADMIN)
        try:
            await ensure_streams(connection, settings, replay=replay)
        finally:
            await connection.close()

    asyncio.run(ensure())


def _batch_layer(ctx: WorkspaceContext) -> BatchLayer:
    """The primary layer the ledger starts from (read as the streaming service)."""
    import hashlib

    import pandas as pd

    from bankplatform.features.customer_features import BOOKING_COLUMNS
    from bankplatform.streaming.ledger import BatchLayer

    customers = _dataset(ctx, "customers_primary").load()
    accounts = _dataset(ctx, "accounts_primary").load()
    transactions = _dataset(ctx, "transactions_primary").load()
    last = max(
        pd.to_datetime(batch["booked_at"]).max()
        for batch in transactions.batches(["booked_at"])
    )
    primary = ctx.root / "data" / "03_primary"
    digests = []
    for path in sorted(primary.glob("*.parquet.enc")):
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        digests.append(f"{path.name} sha256 {digest[:16]}")
    source = ", ".join(digests)
    return BatchLayer(
        customers=customers,
        accounts=accounts,
        bookings=transactions.batches(BOOKING_COLUMNS),
        last_booking=pd.Timestamp(last),
        source=source,
    )
