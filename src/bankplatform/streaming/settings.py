"""``streaming:`` from ``conf/<env>/streaming.yml``: which JetStream, which subjects,
where the consumer keeps its ledger.

A pydantic model with ``extra="forbid"``: a typo in the YAML is an error naming the
field. Paths are relative to the workspace. ``server: embedded`` starts this
workspace's own ``nats-server`` on loopback with TLS; a URL names an existing
JetStream (``tls://`` with a client certificate per identity; plain ``nats://`` only
on loopback).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kedro.config import MissingConfigException
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from kedro.config import AbstractConfigLoader

EMBEDDED = "embedded"
# Overrides ``streaming.server`` (an operator pointing a workspace at a stream).
SERVER_VARIABLE = "BANKPLATFORM_STREAM_SERVER"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class StreamCredential(BaseModel):
    """One identity's client certificate and key (PEM) for an existing JetStream."""

    model_config = ConfigDict(extra="forbid")

    cert_file: Path
    key_file: Path


class StreamingSettings(BaseModel):
    """The booking stream of one env.

    Attributes:
        server: ``embedded`` or the URL of an existing JetStream.
        folder: The embedded server's folder (config, certificates, store).
        ca_file: The CA that signed an existing server's certificate.
        credentials: Client certificates by identity (``booking-edge``,
            ``online-features``, ``stream-admin``), for an existing server.
        stream: The JetStream stream of pseudonymised booking events.
        subject: The subject the edge publishes them on.
        dead_letter_stream: The stream of rejected events.
        dead_letter_subject: Its subject.
        consumer: The durable consumer that feeds the online store.
        ledger: The consumer's ledger (applied events, each customer's bookings).
        status_file: Lag and throughput, rewritten by the running consumer.
        max_event_bytes: Larger events are dead letters.
        fetch_batch: Events fetched (and pushed) at a time.
        fetch_wait_seconds: How long a fetch waits to fill its batch once an
            event came (what an event may wait for company at low rates).
        ack_wait_seconds: An unacknowledged event is delivered again after this.
        retention_days: How long the stream keeps events.
    """

    model_config = ConfigDict(extra="forbid")

    server: str = EMBEDDED
    folder: Path = Path(".bankplatform/stream")
    ca_file: Path | None = None
    credentials: dict[str, StreamCredential] = Field(default_factory=dict)
    stream: str = Field(default="BOOKINGS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject: str = Field(default="bookings.events", pattern=r"^[a-z0-9_.-]{1,128}$")
    dead_letter_stream: str = Field(
        default="BOOKINGS_DEAD_LETTER", pattern=r"^[A-Za-z0-9_-]{1,64}$"
    )
    dead_letter_subject: str = Field(
        default="bookings.dead_letter", pattern=r"^[a-z0-9_.-]{1,128}$"
    )
    consumer: str = Field(default="online-features", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    ledger: Path = Path("data/04_feature/online_stream/ledger.sqlite")
    status_file: Path = Path("data/08_reporting/stream/status.json")
    max_event_bytes: int = Field(default=65_536, ge=512, le=1_048_576)
    fetch_batch: int = Field(default=500, ge=1, le=10_000)
    fetch_wait_seconds: float = Field(default=0.05, gt=0, le=5)
    ack_wait_seconds: float = Field(default=30.0, gt=0, le=3_600)
    retention_days: int = Field(default=30, ge=1, le=3_650)

    @field_validator("server")
    @classmethod
    def _known_server(cls, server: str) -> str:
        if server == EMBEDDED:
            return server
        parts = urlsplit(server)
        if parts.scheme not in ("tls", "nats") or not parts.hostname:
            msg = f"streaming.server: {server!r} is neither 'embedded' nor a tls:// or nats:// URL"
            raise ValueError(msg)
        if parts.scheme == "nats" and parts.hostname not in _LOOPBACK:
            msg = f"streaming.server: {server} is not TLS; only a loopback stream may be plain nats://"
            raise ValueError(msg)
        return server

    @property
    def embedded(self) -> bool:
        """Whether this workspace runs its own server."""
        return self.server == EMBEDDED

    def anchored(self, root: Path) -> StreamingSettings:
        """The settings with every path absolute under ``root``."""
        credentials = {
            name: StreamCredential(
                cert_file=root / c.cert_file, key_file=root / c.key_file
            )
            for name, c in self.credentials.items()
        }
        return self.model_copy(
            update={
                "folder": root / self.folder,
                "ca_file": root / self.ca_file if self.ca_file else None,
                "credentials": credentials,
                "ledger": root / self.ledger,
                "status_file": root / self.status_file,
            }
        )


def load_streaming_settings(
    config_loader: AbstractConfigLoader, root: Path
) -> StreamingSettings:
    """Read ``streaming:`` from an env's ``streaming.yml`` (defaults if absent);
    ``$BANKPLATFORM_STREAM_SERVER`` names another server."""
    section: dict[str, Any] = dict(
        _streaming_file(config_loader).get("streaming") or {}
    )
    if os.environ.get(SERVER_VARIABLE):
        section["server"] = os.environ[SERVER_VARIABLE]
    return StreamingSettings.model_validate(section).anchored(root)


def _streaming_file(config_loader: AbstractConfigLoader) -> dict[str, Any]:
    known_patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(known_patterns, dict):
        known_patterns.setdefault("streaming", ["streaming*", "streaming*/**"])
    try:
        return dict(config_loader["streaming"] or {})
    except MissingConfigException:
        return {}
