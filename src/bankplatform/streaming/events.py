"""Booking events as they travel on the stream, and the verdict on each one.

The feature side only ever sees the pseudonymised form: an account token, never an
account number (the edge swaps one for the other before publishing). An event is
JSON, one booking:

.. code-block:: json

    {"event_id": "bk-20260101-000001", "account_token": "acc_3f...",
     "booked_at": "2026-01-01T00:00:05+00:00", "amount": -23.5, "channel": "pos",
     "mcc": "5411", "balance_after": 1204.12}

A malformed event is not an exception: it is a ``Rejection`` with a one-line
reason that goes to the dead-letter subject, and the consumer moves on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

# The channels core banking books (``contracts.reference.CHANNELS``, tested equal);
# only some change a feature.
Channel = Literal[
    "pos",
    "ecommerce",
    "atm",
    "transfer_out",
    "direct_debit",
    "salary",
    "returned_direct_debit",
    "late_fee",
]
ACCOUNT_TOKEN = r"^acc_[0-9a-f]{32}$"  # noqa: S105 - a pattern, not a secret
_MAX_ID = 80
_MAX_AMOUNT = 10_000_000.0


class BookingEvent(BaseModel):
    """One pseudonymised booking (what ``bankplatform stream`` reads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,80}$")
    account_token: str = Field(pattern=ACCOUNT_TOKEN)
    booked_at: AwareDatetime
    amount: float = Field(ge=-_MAX_AMOUNT, le=_MAX_AMOUNT, allow_inf_nan=False)
    channel: Channel
    mcc: str | None = Field(default=None, pattern=r"^[0-9]{4}$")
    balance_after: float = Field(ge=-_MAX_AMOUNT, le=_MAX_AMOUNT, allow_inf_nan=False)

    @field_validator("booked_at")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        return moment.astimezone(UTC)

    def payload(self) -> bytes:
        """The event as the edge publishes it."""
        return orjson.dumps(self.model_dump(mode="json"))


@dataclass(frozen=True)
class Rejection:
    """Why an event is a dead letter."""

    reason: str
    event_id: str | None = None


def read_event(data: bytes, max_bytes: int) -> BookingEvent | Rejection:
    """An event from its bytes, or why it is not one (size, JSON, fields)."""
    if len(data) > max_bytes:
        return Rejection(
            f"event of {len(data):,} bytes is over the {max_bytes:,}-byte limit"
        )
    try:
        content = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        return Rejection(f"not JSON: {error}")
    if not isinstance(content, dict):
        return Rejection(f"not a JSON object but {type(content).__name__}")
    event_id = content.get("event_id")
    known_id = (
        event_id if isinstance(event_id, str) and len(event_id) <= _MAX_ID else None
    )
    try:
        return BookingEvent.model_validate(content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        return Rejection(f"{where}: {first['msg']}", known_id)


def dead_letter(
    data: bytes, rejection: Rejection, sequence: int, max_bytes: int
) -> bytes:
    """The dead letter of a rejected event: the reason, where it was on the stream,
    its digest and (when small enough) the event itself."""
    letter = {
        "reason": rejection.reason,
        "event_id": rejection.event_id,
        "stream_sequence": sequence,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "rejected_at": datetime.now(UTC).isoformat(),
        "event": data.decode("utf-8", "replace") if len(data) <= max_bytes else None,
    }
    return orjson.dumps(letter)
