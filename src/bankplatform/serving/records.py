"""What the scoring service writes off the request path: the decision log and
the audit records of every request.

Both are queued by the request and written by one background thread each,
every ``flush_seconds`` or sooner when a batch fills: the decision log as JSON
lines with one ``fsync`` per batch, the audit records as one batch call to the
key service (one write and ``fsync`` there). A record that cannot be written
stays queued and is retried; when the backlog passes its bound the service
stops deciding (503) rather than decide without a record.

**A decision is answered only once its line is durable**: the request waits for
its ticket (``until_written``), which wakes the writer at once; requests that
arrive while a batch is being written go together into the next one (group
commit: one ``fsync`` for all of them). Its audit record follows in the next
batch; if the process dies first, the service appends it when it starts again
(``replay_unaudited``): the line holds everything the record says.
"""

from __future__ import annotations

import asyncio
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
        # Tickets: items put and items written so far, and who waits for which.
        self._put_count = 0
        self._written_count = 0
        self._counts = threading.Lock()
        self._waiters: list[
            tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []
        self._written = threading.Condition(self._counts)
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

    def put(self, item: Item) -> int:
        """Queue one item (never blocks the request); its ticket (``until_written``)."""
        self._idle.clear()
        with self._counts:
            self._queue.append(item)
            self._put_count += 1
            ticket = self._put_count
        if len(self._queue) >= MAX_BATCH:
            self._wake.set()
        return ticket

    def written(self, ticket: int) -> bool:
        """Whether the item of ``ticket`` is written."""
        return self._written_count >= ticket

    def wait_written(self, ticket: int, timeout: float) -> bool:
        """Block until the item of ``ticket`` is written; False on timeout."""
        self._wake.set()
        with self._written:
            return self._written.wait_for(lambda: self.written(ticket), timeout)

    async def until_written(self, ticket: int, timeout: float) -> bool:
        """Wait (without blocking the event loop) until the item of ``ticket`` is
        written; the writer starts a batch at once. False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._counts:
            if self.written(ticket):
                return True
            self._waiters.append((ticket, loop, future))
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    def _wrote(self, count: int) -> None:
        """Count a written batch and wake whoever waited for it."""
        with self._counts:
            self._written_count += count
            ready = [w for w in self._waiters if w[0] <= self._written_count]
            self._waiters = [w for w in self._waiters if w[0] > self._written_count]
            self._written.notify_all()
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_resolve, future)

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
                self._wrote(len(batch))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class LoggedLine:
    """A queued decision-log line: its sha256 and its writer ticket."""

    sha256: str
    ticket: int


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

    def put(self, record: dict[str, Any]) -> LoggedLine:
        """Queue one record (a decision, a shadow score, an override)."""
        line = decision_line(record)
        return LoggedLine(decision_line_sha256(line), self._writer.put(line))

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
