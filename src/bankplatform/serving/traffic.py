"""Releases: which variant answers an application, and when the challenger goes.

- **Canary**: the challenger answers a share ``challenger_weight`` of customers,
  sticky by a hash of the customer token (a customer never flips between models).
- **Shadow**: the challenger also scores every champion request, silently.
- **Blue/green**: weight 1 switches every customer to the challenger, 0 back.
- **Halt**: a person stops automated decisions; every application is referred.

The state is a small JSON file written atomically, so a restart keeps it. The
``ReleaseMonitor`` judges the challenger over a sliding window and says when the
rollback policy is breached.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bankplatform.serving.schemas import TrafficState

if TYPE_CHECKING:
    from pathlib import Path

    from bankplatform.serving.settings import RollbackPolicy

_BUCKETS = float(2**64)


def customer_bucket(customer_token: str) -> float:
    """A customer's fixed place in [0, 1): the same token always lands in the same place."""
    digest = hashlib.sha256(customer_token.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


def routes_to_challenger(customer_token: str, weight: float) -> bool:
    """Whether a canary of ``weight`` sends this customer to the challenger."""
    return weight > 0 and customer_bucket(customer_token) < weight


class TrafficFile:
    """The release state on disk (atomic replace) and in memory."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.state = self._read()

    def _read(self) -> TrafficState:
        if not self._path.is_file():
            return TrafficState()
        return TrafficState.model_validate_json(self._path.read_text())

    def update(self, **changes: object) -> TrafficState:
        """Apply ``changes`` and write them durably before they take effect."""
        with self._lock:
            state = self.state.model_copy(update=changes)
            TrafficState.model_validate(state.model_dump())
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._path.with_suffix(".tmp")
            temporary.write_text(json.dumps(state.model_dump(), indent=2))
            os.replace(temporary, self._path)
            self.state = state
            return state


@dataclass(frozen=True)
class Observation:
    """The challenger's result on one application."""

    at: float
    failed: bool
    latency_ms: float
    shift: float | None


class ReleaseMonitor:
    """The challenger's recent answers, judged against the rollback policy."""

    def __init__(self, policy: RollbackPolicy) -> None:
        self._policy = policy
        self._window: deque[Observation] = deque()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the window (a new challenger, or a new release)."""
        with self._lock:
            self._window.clear()

    def observe(
        self, *, failed: bool, latency_ms: float, shift: float | None
    ) -> str | None:
        """Record one answer; the breach that calls for a rollback, if any."""
        now = time.monotonic()
        with self._lock:
            self._window.append(Observation(now, failed, latency_ms, shift))
            horizon = now - self._policy.window_seconds
            while self._window and self._window[0].at < horizon:
                self._window.popleft()
            return self._breach(list(self._window))

    def _breach(self, window: list[Observation]) -> str | None:
        policy = self._policy
        if len(window) < policy.min_requests:
            return None
        errors = sum(o.failed for o in window) / len(window)
        if errors > policy.max_error_rate:
            return f"challenger error rate {errors:.1%} over the last {len(window)} requests is above {policy.max_error_rate:.1%}"
        p99 = float(np.percentile([o.latency_ms for o in window], 99))
        if p99 > policy.max_p99_ms:
            return f"challenger p99 latency {p99:.0f} ms over the last {len(window)} requests is above {policy.max_p99_ms:.0f} ms"
        shifts = [o.shift for o in window if o.shift is not None]
        if len(shifts) >= policy.min_requests:
            mean_shift = float(np.mean(shifts))
            if mean_shift > policy.max_score_shift:
                return f"challenger scores differ from the champion's by {mean_shift:.3f} on average over {len(shifts)} requests, above {policy.max_score_shift}"
        return None

    def summary(self) -> dict[str, float | int]:
        """The window's figures, for ``GET /v1/models``."""
        with self._lock:
            window = list(self._window)
        if not window:
            return {"requests": 0}
        return {
            "requests": len(window),
            "error_rate": round(sum(o.failed for o in window) / len(window), 4),
            "p99_ms": round(
                float(np.percentile([o.latency_ms for o in window], 99)), 2
            ),
        }
