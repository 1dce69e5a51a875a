"""``bankplatform stream``: booking events in, fresh customer features out.

One loop: fetch a batch from the durable consumer, read each event (malformed
ones become dead letters), count the batch in the ledger in one transaction,
recompute the touched customers' features from the ledger and push them through
Feast's push source, publish the batch's dead letters, then acknowledge. A crash
anywhere before the acknowledgement means the batch comes again, and the ledger
makes that harmless (see ``ledger``). Lag and throughput go to a status file as
it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout

from bankplatform.streaming.aggregates import features_as_of_latest
from bankplatform.streaming.broker import FEATURES, StreamEndpoint, connect
from bankplatform.streaming.events import dead_letter, read_event
from bankplatform.streaming.ledger import Ledger
from bankplatform.streaming.settings import StreamingSettings

# Pushes the recomputed rows to the online store (Feast's ``push``).
Push = Callable[[pd.DataFrame], None]
_RATE_SECONDS = 10.0


@dataclass
class ConsumerReport:
    """What a run of the consumer did (also the status file's content)."""

    started_at: str
    updated_at: str = ""
    counted: int = 0
    redelivered: int = 0
    dead_letters: int = 0
    customers_pushed: int = 0
    batches: int = 0
    last_booked_at: str | None = None
    events_per_second: float = 0.0
    pending: int | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    running: bool = True

    def line(self) -> str:
        """One line for the command's output."""
        latency = (
            f", published to visible p50 {self.latency_ms['p50']:.0f} ms "
            f"p99 {self.latency_ms['p99']:.0f} ms"
            if self.latency_ms
            else ""
        )
        return (
            f"counted {self.counted:,} booking events ({self.redelivered:,} delivered "
            f"again, counted once), {self.dead_letters:,} dead letters, "
            f"{self.customers_pushed:,} customer rows pushed{latency}"
        )


@dataclass
class StopWhen:
    """When a run ends: after ``idle_seconds`` with nothing to fetch, after
    ``max_events`` events, or when ``stop`` is set (a signal)."""

    idle_seconds: float | None = None
    max_events: int | None = None
    stop: asyncio.Event | None = None


class BookingConsumer:
    """The stream's consumer for one workspace env."""

    def __init__(
        self,
        settings: StreamingSettings,
        target: StreamEndpoint,
        ledger: Ledger,
        push: Push,
    ) -> None:
        self.settings = settings
        self.target = target
        self.ledger = ledger
        self.push = push
        self.report = ConsumerReport(started_at=_now())
        self._latencies: list[float] = []
        self._recent_latencies: deque[float] = deque(maxlen=10_000)
        self._recent: deque[tuple[float, int]] = deque()
        self._written = 0.0  # when the status file was last written (monotonic)

    async def run(self, until: StopWhen) -> ConsumerReport:
        """Consume until ``until`` says so; the report of the run."""
        connection = await connect(self.target, FEATURES)
        try:
            js = connection.jetstream()
            subscription = await js.pull_subscribe_bind(
                self.settings.consumer, stream=self.settings.stream
            )
            # What a killed run counted but never pushed goes out first.
            self._push(self.ledger.unpushed())
            await self._consume(connection, subscription, until)
        finally:
            # Everything handled was acknowledged and flushed; nothing to drain
            # (a drain waits out its own 30 s timeout on a pull subscription).
            await connection.close()
        return self.report

    async def _consume(
        self, connection: NATS, subscription: Any, until: StopWhen
    ) -> None:
        idle_since = time.monotonic()
        while not self._done(until, idle_since):
            try:
                messages = await subscription.fetch(
                    self.settings.fetch_batch, timeout=self.settings.fetch_wait_seconds
                )
            except (TimeoutError, NatsTimeout):
                messages = []
            if not messages:  # a fetch may also come back empty-handed
                await self._refresh_status(connection)
                if self.report.pending:  # delivered to a run that died: comes back
                    idle_since = time.monotonic()
                continue
            idle_since = time.monotonic()
            await self._handle(connection, messages)
        self.report.running = False
        await self._refresh_status(connection, force=True)

    def _done(self, until: StopWhen, idle_since: float) -> bool:
        if until.stop is not None and until.stop.is_set():
            return True
        if until.max_events is not None and self._seen() >= until.max_events:
            return True
        return (
            until.idle_seconds is not None
            and time.monotonic() - idle_since >= until.idle_seconds
        )

    def _push(self, customers: set[int]) -> None:
        """Recompute and push the customers' rows, then clear them in the ledger."""
        if not customers:
            return
        rows = features_as_of_latest(self.ledger, sorted(customers))
        self.push(rows)
        self.ledger.mark_pushed(customers)
        self.report.customers_pushed += len(rows)
        newest = rows["event_timestamp"].max().isoformat()
        if self.report.last_booked_at is None or newest > self.report.last_booked_at:
            self.report.last_booked_at = newest

    def _seen(self) -> int:
        r = self.report
        return r.counted + r.redelivered + r.dead_letters

    async def _handle(self, connection: NATS, messages: list[Msg]) -> None:
        limit = self.settings.max_event_bytes
        parsed = [
            (m.metadata.sequence.stream, read_event(m.data, limit)) for m in messages
        ]
        applied = self.ledger.apply(parsed)
        self._push(applied.customers)
        by_sequence = {m.metadata.sequence.stream: m for m in messages}
        for sequence, rejection in applied.rejections:
            letter = dead_letter(by_sequence[sequence].data, rejection, sequence, limit)
            # One dead letter per stream sequence, however often it is delivered.
            await connection.jetstream().publish(
                self.settings.dead_letter_subject,
                letter,
                headers={"Nats-Msg-Id": f"dead-letter-{sequence}"},
            )
        visible = datetime.now(UTC)
        for message in messages:
            await message.ack()
            stored = message.metadata.timestamp
            if stored is not None:
                latency = (visible - stored).total_seconds() * 1000
                self._latencies.append(latency)
                self._recent_latencies.append(latency)
        await connection.flush()
        self.report.counted += applied.counted
        self.report.redelivered += applied.redelivered
        self.report.dead_letters += len(applied.rejections)
        self.report.batches += 1
        self._recent.append((time.monotonic(), len(messages)))
        await self._refresh_status(connection)

    async def _refresh_status(self, connection: NATS, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < 1.0:
            return
        while self._recent and now - self._recent[0][0] > _RATE_SECONDS:
            self._recent.popleft()
        report = self.report
        report.events_per_second = round(
            sum(n for _, n in self._recent) / _RATE_SECONDS, 1
        )
        if self._recent_latencies:  # the last 10,000 events'
            values = np.asarray(self._recent_latencies)
            report.latency_ms = {
                "p50": round(float(np.percentile(values, 50)), 1),
                "p99": round(float(np.percentile(values, 99)), 1),
                "max": round(float(values.max()), 1),
            }
        try:
            info = await connection.jetstream().consumer_info(
                self.settings.stream, self.settings.consumer
            )
            report.pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        except Exception:
            report.pending = None
        report.updated_at = _now()
        write_status(self.settings.status_file, asdict(report))
        self._written = now

    def latencies_ms(self) -> list[float]:
        """Every event's time from stored on the stream to visible online (ms)."""
        return list(self._latencies)


def write_status(path: Path, content: dict[str, Any]) -> None:
    """Replace the status file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=2))
    os.replace(partial, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
