"""Who holds a workspace's dataset locks, and the interface of a lock store
(``runs.lock`` takes them; ``runs.file_locks`` and ``runs.postgres_locks`` store them)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol


class Mode(str, Enum):
    """How a run uses a dataset: ``read`` may be shared, ``write`` may not."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Holder:
    """Who holds locks, for the message a refused run gets."""

    user: str
    pipelines: str
    pid: int
    host: str
    since: str
    run_id: str = field(default_factory=lambda: f"{os.getpid()}-{time.time_ns()}")

    @classmethod
    def now(cls, user: str, pipelines: str) -> Holder:
        """This process, from now on."""
        since = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(user, pipelines, os.getpid(), socket.gethostname(), since)

    def describe(self) -> str:
        """``alice (kedro run features, pid 42 on host) since ...``."""
        return f"{self.user} (kedro run {self.pipelines}, pid {self.pid} on {self.host}) since {self.since}"


class RunLocks(Protocol):
    """Takes and releases one run's dataset locks."""

    def try_acquire(self, wants: Mapping[str, Mode], holder: Holder) -> str | None:
        """Take every lock, or none: ``None``, or the first dataset held by another run."""
        ...  # pragma: no cover

    def holders(self, dataset: str) -> list[Holder]:
        """The runs that hold a lock on ``dataset`` now."""
        ...  # pragma: no cover

    def release(self) -> None:
        """Give back every lock this run took (idempotent)."""
        ...  # pragma: no cover


def held_by_parent(holders: list[Holder]) -> bool:
    """Whether only the run that started this process holds a dataset: it waits
    for this one (monitoring's retrain), so this one works under its locks."""
    here = socket.gethostname()
    return bool(holders) and all(
        h.pid == os.getppid() and h.host == here for h in holders
    )


def alive(entry: Mapping[str, Any]) -> bool:
    """Whether a lock record's run still runs (another host's run is taken as alive)."""
    if entry.get("host") != socket.gethostname():
        return True  # another host's run: its record is all we know
    try:
        os.kill(int(entry["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
