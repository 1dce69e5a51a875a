"""What the scoring service writes off the request path: the decision log and
the audit records of every request.

Both are queued by the request and written by one background thread each,
every ``flush_seconds`` or sooner when a batch fills: the decision log as JSON
lines with one ``fsync`` per batch, the audit records as one batch call to the
key service (one write and ``fsync`` there). A record that cannot be written
stays queued and is retried; when the backlog passes its bound the service
stops deciding (503) rather than decide without a record.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from bankplatform.security.audit import decision_line_sha256

_LOG = logging.getLogger("bankplatform.serving")
Item = TypeVar("Item")
MAX_BATCH = 1_000
MAX_BACKLOG = 50_000


class BackgroundWriter(Generic[Item]):
    """Queues items and writes them in batches from one daemon thread."""

    def __init__(
        self, name: str, write: Callable[[list[Item]], None], flush_seconds: float
    ) -> None:
        self.name = name
        self._write = write
        self._flush_seconds = flush_seconds
        self._queue: deque[Item] = deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Items not yet written."""
        return len(self._queue)

    @property
    def healthy(self) -> bool:
        """Whether the backlog is within its bound."""
        return len(self._queue) < MAX_BACKLOG

    def put(self, item: Item) -> None:
        """Queue one item (never blocks the request)."""
        self._idle.clear()
        self._queue.append(item)
        if len(self._queue) >= MAX_BATCH:
            self._wake.set()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return not self._queue

    def stop(self) -> None:
        """Write what is queued and stop the thread."""
        self.flush()
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            while self._queue:
                batch = [
                    self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))
                ]
                try:
                    self._write(batch)
                except Exception as error:
                    self.last_error = f"{type(error).__name__}: {error}"[:300]
                    _LOG.warning(
                        "%s not written, retrying: %s", self.name, self.last_error
                    )
                    time.sleep(min(1.0, self._flush_seconds * 10))
                    break
                self.last_error = ""
                for _ in batch:
                    self._queue.popleft()


class DecisionLog:
    """The decision log: a folder of daily JSON-lines files, pseudonymous only.

    Each line is encoded once (``decision_line``); its sha256 goes into the
    request's audit record, so a line edited afterwards no longer matches the
    signed log (``decision trace`` and monitoring check it).
    """

    def __init__(self, folder: Path, flush_seconds: float) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._writer: BackgroundWriter[bytes] = BackgroundWriter(
            "decision-log", self._append, flush_seconds
        )

    @property
    def writer(self) -> BackgroundWriter[bytes]:
        """Its background writer (backlog, health)."""
        return self._writer

    def put(self, record: dict[str, Any]) -> str:
        """Queue one record (a decision, a shadow score, an override); its line's sha256."""
        line = decision_line(record)
        self._writer.put(line)
        return decision_line_sha256(line)

    def _append(self, lines: list[bytes]) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        path = self.folder / f"decisions-{day}.jsonl"
        payload = b"".join(line + b"\n" for line in lines)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(descriptor, payload)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def decision_line(record: dict[str, Any]) -> bytes:
    """A record as its decision-log line (without the newline). orjson writes NaN
    and infinity as null: the log stays strict JSON."""
    return orjson.dumps(record)


def decision_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each record of one decision-log file with its line's sha256."""
    with path.open("rb") as stream:
        for line in stream:
            if line.strip():
                yield decision_line_sha256(line), orjson.loads(line)


def read_decision_records(folder: Path) -> list[dict[str, Any]]:
    """Every record of a decision log folder, oldest file first.

    Raises:
        FileNotFoundError: The folder does not exist (nothing was ever logged there).
    """
    if not folder.is_dir():
        msg = f"no decision log at {folder}"
        raise FileNotFoundError(msg)
    records = []
    for path in sorted(folder.glob("decisions-*.jsonl")):
        with path.open(encoding="utf-8") as stream:
            for line in stream:
                if line.strip():
                    records.append(json.loads(line))
    return records
