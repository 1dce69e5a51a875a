"""The booking edge: raw core-banking bookings in, pseudonymised events on the stream.

Core banking knows accounts by number; the feature side must never see one. The
edge swaps each account number for its token through the key service (the HMAC
key never leaves it; each call audited) before anything is published, so no
subject the feature side reads, and no byte of the stream's store, holds a raw
account number. Tokens are remembered for the edge process's life: a busy
account costs one key-service call, not one per booking.

Publishing is idempotent per event: the event id is JetStream's message id, so a
retried publish inside the stream's duplicate window is stored once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pandas as pd
from nats.aio.client import Client as NATS

from bankplatform.security.pseudonyms import IdentifierKind, TokenMaker
from bankplatform.streaming.events import BookingEvent
from bankplatform.streaming.settings import StreamingSettings

_IN_FLIGHT = 256  # publishes awaiting their acknowledgement at once


@dataclass
class BookingEdge:
    """Pseudonymises raw bookings and publishes them (the ``booking-edge`` identity)."""

    settings: StreamingSettings
    connection: NATS
    pseudonymiser: TokenMaker
    tokens: dict[str, str] = field(default_factory=dict)
    published: int = 0
    stored_again: int = 0

    async def publish(self, raw: pd.DataFrame, event_ids: list[str]) -> int:
        """Publish raw bookings (``account_id`` and the booking fields) as events.

        Returns:
            How many the stream stored (a retried id it already holds is not).
        """
        events = [
            BookingEvent(
                event_id=event_id,
                account_token=token,
                booked_at=booked_at.to_pydatetime(),
                amount=float(amount),
                channel=channel,
                mcc=mcc,
                balance_after=float(balance),
            )
            for event_id, token, booked_at, amount, channel, mcc, balance in zip(
                event_ids,
                self._tokens(raw["account_id"]),
                pd.to_datetime(raw["booked_at"], utc=True),
                raw["amount"],
                raw["channel"],
                raw["mcc"],
                raw["balance_after"],
                strict=True,
            )
        ]
        js = self.connection.jetstream()
        stored = 0
        for start in range(0, len(events), _IN_FLIGHT):
            acks = await asyncio.gather(
                *(
                    js.publish(
                        self.settings.subject,
                        event.payload(),
                        headers={"Nats-Msg-Id": event.event_id},
                    )
                    for event in events[start : start + _IN_FLIGHT]
                )
            )
            fresh = sum(1 for ack in acks if not ack.duplicate)
            stored += fresh
            self.stored_again += len(acks) - fresh
        self.published += stored
        return stored

    def _tokens(self, account_ids: pd.Series) -> list[str]:
        numbers = account_ids.astype(str)
        unknown = pd.Series(sorted(set(numbers) - set(self.tokens)), dtype=object)
        if len(unknown):
            made = self.pseudonymiser.tokens(unknown, IdentifierKind.ACCOUNT)
            self.tokens.update(zip(unknown, made.astype(str), strict=True))
        return [self.tokens[number] for number in numbers]
