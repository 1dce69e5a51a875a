"""What the scoring service writes: the decision log and the audit records of
every request.

**A decision is answered only once its line is on disk**: ``DecisionLog.put``
appends the line and ``fsync``s before it returns (in the request's own thread:
a hand-off to a writer thread cost more than the ``fsync`` itself here), and a
line that cannot be written means no answer (503). Its audit record is queued
and sent to the key service in batches by a background thread, every
``flush_seconds`` or sooner when a batch fills (one write and ``fsync`` there);
a record that cannot be written stays queued and is retried, and past its bound
the service stops deciding (503). If the process dies before the batch is sent,
the next start appends the missing records from the lines
(``ScoringService._replay_unaudited``): a line holds everything its record says.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from bankplatform.errors import BankplatformError
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


class DecisionLogError(BankplatformError):
    """A decision line could not be written: the decision is not answered."""


class DecisionLog:
    """The decision log: a folder of daily JSON-lines files, pseudonymous only.

    Each line is encoded once (``decision_line``) and is on disk when ``put``
    returns; its sha256 goes into the request's audit record, so a line edited
    afterwards no longer matches the signed log (``decision trace`` and
    monitoring check it).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._open: tuple[str, int] | None = None  # (day, descriptor)
        self.last_error = ""

    @property
    def healthy(self) -> bool:
        """Whether the last write succeeded."""
        return not self.last_error

    def put(self, record: dict[str, Any]) -> str:
        """Append one record (a decision, a shadow score, an override) and
        ``fsync`` it; its line's sha256.

        Raises:
            DecisionLogError: It could not be written (disk full, folder gone).
        """
        line = decision_line(record)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        try:
            with self._lock:
                descriptor = self._descriptor(day)
                os.write(descriptor, line + b"\n")
                os.fsync(descriptor)
        except OSError as error:
            self.last_error = f"{type(error).__name__}: {error.strerror or error}"
            msg = f"the decision log cannot be written ({self.last_error})"
            raise DecisionLogError(msg) from None
        self.last_error = ""
        return decision_line_sha256(line)

    def _descriptor(self, day: str) -> int:
        """Today's file, opened once a day (append only, 0640)."""
        if self._open is None or self._open[0] != day:
            self.close()
            path = self.folder / f"decisions-{day}.jsonl"
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._open = (day, os.open(path, flags, 0o640))
        return self._open[1]

    def close(self) -> None:
        """Close the open file (every line is already on disk)."""
        if self._open is not None:
            os.close(self._open[1])
            self._open = None


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


AUDITED_MARK = ".audited.json"


@dataclass(frozen=True)
class AuditedMark:
    """Up to where every decision line is known to have its audit record: the
    file and byte offset a clean stop (or the last replay) reached."""

    file: str
    offset: int


def read_audited_mark(folder: Path) -> AuditedMark | None:
    """The folder's mark, or ``None`` (never stopped cleanly, or unreadable)."""
    try:
        content = json.loads((folder / AUDITED_MARK).read_text())
        return AuditedMark(str(content["file"]), int(content["offset"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_audited_mark(folder: Path, mark: AuditedMark) -> None:
    """Replace the mark (atomic)."""
    path = folder / AUDITED_MARK
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"file": mark.file, "offset": mark.offset}))
    temporary.replace(path)


def end_mark(folder: Path) -> AuditedMark | None:
    """The end of the newest decision-log file (what a clean stop has audited)."""
    files = sorted(folder.glob("decisions-*.jsonl"))
    return AuditedMark(files[-1].name, files[-1].stat().st_size) if files else None


def decisions_after(
    folder: Path, mark: AuditedMark | None, written_before: str
) -> tuple[list[tuple[str, dict[str, Any]]], AuditedMark | None]:
    """The decision lines after ``mark`` written before ``written_before`` (ISO
    time: newer ones may still be on their way to the audit log), each with its
    sha256, and the mark just past the last one returned.

    Without a mark, the last two days' files are read (a service that never
    stopped cleanly since this mark existed).
    """
    files = sorted(folder.glob("decisions-*.jsonl"))
    if mark is not None and any(f.name == mark.file for f in files):
        files = [f for f in files if f.name >= mark.file]
    else:
        mark, files = None, files[-2:]
    found: list[tuple[str, dict[str, Any]]] = []
    reached = mark
    for path in files:
        start = mark.offset if mark is not None and path.name == mark.file else 0
        with path.open("rb") as stream:
            stream.seek(start)
            position = start
            for line in stream:
                if not line.endswith(b"\n"):
                    break  # a line still being written
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    position += len(line)
                    continue
                if str(record.get("time", "")) >= written_before:
                    return found, reached
                position += len(line)
                reached = AuditedMark(path.name, position)
                if record.get("type") == "decision":
                    found.append((decision_line_sha256(line), record))
    return found, reached


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
