"""``serving:`` from ``conf/<env>/serving.yml``: where the scoring service listens,
what it logs and the policy that rolls a bad challenger back.

A pydantic model with ``extra="forbid"``: a typo in the YAML is an error naming
the field, not a silent default. Paths are relative to the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.config import MissingConfigException
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from kedro.config import AbstractConfigLoader


class RollbackPolicy(BaseModel):
    """When the challenger's weight goes back to 0 by itself.

    Judged over the challenger's answers of the last ``window_seconds`` once
    there are ``min_requests`` of them. The score shift is the mean absolute
    difference between the challenger's and the champion's score for the same
    applications (the champion scores every challenger request too).
    """

    model_config = ConfigDict(extra="forbid")

    window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    min_requests: int = Field(default=20, ge=1, le=100_000)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    max_p99_ms: float = Field(default=100.0, gt=0)
    max_score_shift: float = Field(default=0.10, gt=0, le=1)
    # A challenger call still running after this long is a failure (the champion
    # answers at once): a hung challenger costs each request at most this.
    call_timeout_ms: float = Field(default=1_000.0, gt=0, le=60_000)


class ServingSettings(BaseModel):
    """The scoring service of one env.

    Attributes:
        host: Interface to listen on (loopback by default).
        port: TCP port.
        tls: Serve HTTPS only; a production workspace refuses to start without.
        tls_cert: Certificate (``bankplatform tls init`` makes a self-signed one).
        tls_key: Its private key (mode 600).
        max_body_bytes: Larger request bodies are refused with 413.
        reason_codes: How many reason codes a decision carries.
        decision_log: Folder of the decision log (JSON lines, pseudonymous).
        traffic_state: File with the release state (weight, shadow, halt).
        appeal_queue: File of contested decisions awaiting a reviewer.
        alias_poll_seconds: How often aliases are re-read from the registry.
        token_cache_seconds: How long the key service's verdict on a token is reused.
        flush_seconds: Longest an audit record waits to be sent (decision lines
            are on disk before the answer).
        rollback: The automatic rollback policy.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65_535)
    tls: bool = False
    tls_cert: Path = Path(".bankplatform-tls/scoring.crt")
    tls_key: Path = Path(".bankplatform-tls/scoring.key")
    max_body_bytes: int = Field(default=4_096, ge=256, le=1_048_576)
    reason_codes: int = Field(default=4, ge=1, le=20)
    decision_log: Path = Path("data/08_reporting/decisions")
    traffic_state: Path = Path("data/08_reporting/serving/traffic.json")
    appeal_queue: Path = Path("data/08_reporting/serving/appeals.jsonl")
    alias_poll_seconds: float = Field(default=30.0, gt=0, le=3_600)
    token_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    flush_seconds: float = Field(default=0.2, gt=0, le=10)
    rollback: RollbackPolicy = RollbackPolicy()

    def anchored(self, root: Path) -> ServingSettings:
        """The settings with every path made absolute under ``root``."""
        paths = (
            "tls_cert",
            "tls_key",
            "decision_log",
            "traffic_state",
            "appeal_queue",
        )
        return self.model_copy(
            update={name: root / getattr(self, name) for name in paths}
        )


def load_serving_settings(
    config_loader: AbstractConfigLoader, root: Path
) -> ServingSettings:
    """Read ``serving:`` from an env's ``serving.yml`` (all defaults if absent)."""
    section: dict[str, Any] = _serving_file(config_loader).get("serving") or {}
    return ServingSettings.model_validate(section).anchored(root)


def _serving_file(config_loader: AbstractConfigLoader) -> dict[str, Any]:
    known_patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(known_patterns, dict):
        known_patterns.setdefault("serving", ["serving*", "serving*/**"])
    try:
        return dict(config_loader["serving"] or {})
    except MissingConfigException:
        return {}
