"""``bankplatform stream`` and ``simulate bookings``: core-banking bookings into fresh
online features, on NATS JetStream (``bankplatform.streaming.runs``)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

_ENV = click.option(
    "--env", help="Kedro env whose streaming.yml and catalog apply [manifest default]."
)


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
    from bankplatform.context import workspace_context
    from bankplatform.streaming.runs import consume_bookings

    def seeded(ledger: Any, kept: int) -> None:
        click.echo(
            f"ledger started from the batch: bookings after "
            f"{ledger.window_start.isoformat()} belong to the stream "
            f"({kept:,} recent bookings kept for the windows)"
        )

    report = consume_bookings(
        workspace_context(env), until_idle, max_events, on_seeded=seeded
    )
    click.echo(report.line())


@stream.command("status")
@_ENV
def status(env: str | None) -> None:
    """Lag and throughput: what the stream holds, what the consumer has not yet
    acknowledged, and the running consumer's own figures."""
    import json

    from nats.js.errors import NotFoundError

    from bankplatform.context import workspace_context
    from bankplatform.streaming.broker import ADMIN, connect, endpoint
    from bankplatform.streaming.runs import stream_settings

    ctx = workspace_context(env)
    settings = stream_settings(ctx)

    async def read() -> dict[str, Any]:
        connection = await connect(endpoint(settings, ctx.root, ADMIN), ADMIN)
        try:
            js = connection.jetstream()
            events = await js.stream_info(settings.stream)
            dead = await js.stream_info(settings.dead_letter_stream)
            consumer = await js.consumer_info(settings.stream, settings.consumer)
        except NotFoundError:
            raise click.ClickException(
                f"no booking stream {settings.stream} with consumer {settings.consumer} "
                "yet: `bankplatform simulate bookings` or `bankplatform stream` creates them"
            ) from None
        finally:
            await connection.close()
        return {
            "events": int(events.state.messages),
            "last_sequence": int(events.state.last_seq),
            "dead_letters": int(dead.state.messages),
            "pending": int(consumer.num_pending or 0),
            "unacknowledged": int(consumer.num_ack_pending or 0),
        }

    live = asyncio.run(read())
    click.echo(
        f"stream {settings.stream}: {live['events']:,} events (last sequence "
        f"{live['last_sequence']:,}), {live['dead_letters']:,} dead letters; consumer "
        f"{settings.consumer}: {live['pending']:,} not yet delivered, "
        f"{live['unacknowledged']:,} delivered but not acknowledged (lag "
        f"{live['pending'] + live['unacknowledged']:,})"
    )
    if not settings.status_file.is_file():
        click.echo("consumer: never ran in this workspace")
        return
    last = json.loads(settings.status_file.read_text())
    latency = last.get("latency_ms") or {}
    click.echo(
        f"consumer {'running' if last.get('running') else 'stopped'} (updated "
        f"{last.get('updated_at')}): {last.get('counted', 0):,} counted, "
        f"{last.get('dead_letters', 0):,} dead letters, "
        f"{last.get('events_per_second', 0)} events/s over the last 10 s, stored to "
        f"visible p50 {latency.get('p50', '-')} ms p99 {latency.get('p99', '-')} ms, "
        f"features as of {last.get('last_booked_at')}"
    )


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
    from bankplatform.context import workspace_context
    from bankplatform.streaming.runs import publish_bookings

    done = publish_bookings(workspace_context(env), rate, seconds, seed)
    click.echo(
        f"published {done.stored:,} bookings ({rate:g}/s for {seconds:g} s) booked "
        f"{done.first_booked_at} to {done.last_booked_at}, account numbers "
        f"pseudonymised at the edge"
    )
