"""Where the audit log's records and checkpoints are kept: a file (the embedded
default) or PostgreSQL (production, several hosts, the bank's backups).

Both keep each record's exact line (the hashed bytes) and each checkpoint's
line; the chain, its checkpoints and their verification are ``AuditLog``'s and
are the same on either. ``transaction()`` serialises writers: a file lock, or a
PostgreSQL advisory lock held by the transaction that inserts, so records and
the checkpoint due with them commit together or not at all.

On PostgreSQL the tables refuse ``UPDATE`` and ``DELETE`` (a trigger); the
database's owner can still drop the trigger, which is why ``verify`` checks the
hashes, the signed checkpoints and the witnesses rather than trusting the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg2
from filelock import FileLock

BLOCK_LINES = 10_000
_CHUNK = 1 << 22
# Table creation is serialised across every log of a database.
_SETUP_LOCK = int.from_bytes(
    hashlib.sha256(b"bankplatform-audit-setup").digest()[:8], "big", signed=True
)


class AuditStoreError(OSError):
    """The store could not be read or written (an ``OSError``, as a file's would be)."""


class AuditStore(Protocol):
    """The storage of one audit log."""

    @property
    def name(self) -> str:
        """Where the log is, in words (for error messages)."""
        ...

    def transaction(self) -> Any:
        """A context in which this process alone appends; committed on exit."""
        ...

    def last_record(self) -> dict[str, Any] | None:
        """The last intact record (``seq`` and ``hash`` at least), or ``None``."""
        ...

    def append_records(self, records: list[tuple[int, bytes]]) -> None:
        """Store records' ``(seq, line)`` (each line without its newline), in order."""
        ...

    def record_blocks(self) -> Iterator[list[bytes]]:
        """Every stored record line, oldest first, in blocks."""
        ...

    def append_checkpoint(self, line: bytes) -> None:
        """Store one signed checkpoint's line."""
        ...

    def checkpoint_lines(self) -> list[str]:
        """Every stored checkpoint line, oldest first."""
        ...


class FileAuditStore:
    """Records as lines of a JSONL file, checkpoints in ``<file>.checkpoints``;
    each append is one ``write`` and one ``fsync``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._checkpoints = path.with_name(path.name + ".checkpoints")

    @property
    def name(self) -> str:
        """The log file."""
        return str(self.path)

    def transaction(self) -> Any:
        """A new file lock each time: one inherited across fork (ParallelRunner's
        workers) refuses to work."""
        return FileLock(f"{self.path}.lock")

    def last_record(self) -> dict[str, Any] | None:
        """The last line that is a record, scanning back past damage."""
        path = self.path
        if not path.is_file() or path.stat().st_size == 0:
            return None
        with path.open("rb") as stream:
            position = stream.seek(0, os.SEEK_END)
            block = b""
            while True:
                lines = block.splitlines()
                for line in reversed(lines[1:] if position else lines):
                    record = record_or_none(line)
                    if record is not None:
                        return record
                if position == 0:
                    return None
                step = min(1 << 16, position)
                position -= step
                stream.seek(position)
                block = stream.read(step) + block

    def append_records(self, records: list[tuple[int, bytes]]) -> None:
        """One write of all the lines."""
        _append_line(self.path, b"\n".join(line for _, line in records))

    def record_blocks(self) -> Iterator[list[bytes]]:
        """The file's lines as read in 4 MiB blocks; an unterminated last line
        (a write cut short) is yielded too, for ``verify`` to name."""
        if not self.path.is_file():
            return
        rest = b""
        with self.path.open("rb") as stream:
            while block := stream.read(_CHUNK):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                yield lines
        if rest.strip():
            yield [rest]

    def append_checkpoint(self, line: bytes) -> None:
        """One line appended to the checkpoints file."""
        _append_line(self._checkpoints, line)

    def checkpoint_lines(self) -> list[str]:
        """The checkpoints file's non-empty lines."""
        if not self._checkpoints.is_file():
            return []
        return [
            line for line in self._checkpoints.read_text().splitlines() if line.strip()
        ]


_TABLES = (
    """CREATE TABLE IF NOT EXISTS bankplatform_audit_records (
        log text NOT NULL, seq bigint NOT NULL, line bytea NOT NULL,
        PRIMARY KEY (log, seq))""",
    """CREATE TABLE IF NOT EXISTS bankplatform_audit_checkpoints (
        log text NOT NULL, number bigserial, line text NOT NULL,
        PRIMARY KEY (log, number))""",
    """CREATE OR REPLACE FUNCTION bankplatform_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
        RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP;
        END $$""",
    """CREATE OR REPLACE TRIGGER bankplatform_audit_records_append_only
        BEFORE UPDATE OR DELETE OR TRUNCATE ON bankplatform_audit_records
        FOR EACH STATEMENT EXECUTE FUNCTION bankplatform_audit_append_only()""",
    """CREATE OR REPLACE TRIGGER bankplatform_audit_checkpoints_append_only
        BEFORE UPDATE OR DELETE OR TRUNCATE ON bankplatform_audit_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION bankplatform_audit_append_only()""",
)


class PostgresAuditStore:
    """Records and checkpoints in two PostgreSQL tables, one row each, keyed by
    the log's name (one database can hold the logs of several workspaces).

    Each thread has its own connection (the key service answers requests on a
    pool of threads): the advisory lock serialises their appends, and a long
    ``verify`` on one thread does not hold up the others' appends."""

    def __init__(self, dsn: str, log: str, password: str | None = None) -> None:
        self._dsn = dsn
        self._log = log
        self._password = password
        self._local = threading.local()
        self._ready = False

    @property
    def _connection(self) -> Any:
        return getattr(self._local, "connection", None)

    @_connection.setter
    def _connection(self, connection: Any) -> None:
        self._local.connection = connection

    @property
    def name(self) -> str:
        """The database (without credentials) and the log's name."""
        database = psycopg2.extensions.parse_dsn(self._dsn)
        where = f"{database.get('host', '')}:{database.get('port', '5432')}/{database.get('dbname', '')}"
        return f"PostgreSQL {where} (log {self._log})"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction holding the log's advisory lock: appends inside it
        commit together at the end, or roll back together on an error."""
        with self._errors():
            connection = self._connect()
            self._local.appending = True
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s)", (self._lock_key(),)
                    )
                yield
                connection.commit()
            except BaseException:
                self._abandon()
                raise
            finally:
                self._local.appending = False

    def last_record(self) -> dict[str, Any] | None:
        """The record with the highest seq."""
        with self._errors(), self._connect().cursor() as cursor:
            cursor.execute(
                "SELECT line FROM bankplatform_audit_records WHERE log = %s "
                "ORDER BY seq DESC LIMIT 1",
                (self._log,),
            )
            row = cursor.fetchone()
        return None if row is None else record_or_none(bytes(row[0]))

    def append_records(self, records: list[tuple[int, bytes]]) -> None:
        """One row per record, keyed by its seq."""
        rows = [(self._log, seq, line) for seq, line in records]
        with self._errors(), self._connect().cursor() as cursor:
            cursor.executemany(
                "INSERT INTO bankplatform_audit_records (log, seq, line) VALUES (%s, %s, %s)",
                rows,
            )

    def record_blocks(self) -> Iterator[list[bytes]]:
        """Rows in seq order through a server-side cursor, ``BLOCK_LINES`` at a time."""
        with self._errors():
            connection = self._connect()
            try:
                with connection.cursor(name="bankplatform_audit_read") as cursor:
                    cursor.itersize = BLOCK_LINES
                    cursor.execute(
                        "SELECT line FROM bankplatform_audit_records WHERE log = %s ORDER BY seq",
                        (self._log,),
                    )
                    while rows := cursor.fetchmany(BLOCK_LINES):
                        yield [bytes(row[0]) for row in rows]
            finally:
                self._end_read()

    def append_checkpoint(self, line: bytes) -> None:
        """One row (inside the appending transaction)."""
        with self._errors(), self._connect().cursor() as cursor:
            cursor.execute(
                "INSERT INTO bankplatform_audit_checkpoints (log, line) VALUES (%s, %s)",
                (self._log, line.decode()),
            )

    def checkpoint_lines(self) -> list[str]:
        """Every checkpoint row in the order written."""
        with self._errors():
            try:
                with self._connect().cursor() as cursor:
                    cursor.execute(
                        "SELECT line FROM bankplatform_audit_checkpoints WHERE log = %s ORDER BY number",
                        (self._log,),
                    )
                    return [str(row[0]) for row in cursor.fetchall()]
            finally:
                self._end_read()

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg2.Error as error:
            self._abandon()
            text = str(error).strip()
            raise AuditStoreError(
                text.splitlines()[0] if text else type(error).__name__
            ) from None

    def _end_read(self) -> None:
        """End a read outside an append (no transaction left open between calls);
        inside one, the transaction and its lock stay until it commits."""
        if getattr(self._local, "appending", False):
            return
        if self._connection is not None and not self._connection.closed:
            self._connection.rollback()

    def _abandon(self) -> None:
        """Roll back, or drop a broken connection (the next call reconnects)."""
        if self._connection is None:
            return
        try:
            self._connection.rollback()
        except psycopg2.Error:
            self.close()

    def _lock_key(self) -> int:
        digest = hashlib.sha256(f"bankplatform-audit\0{self._log}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _connect(self) -> Any:
        if self._connection is not None and self._connection.closed:
            self._connection = None
        if self._connection is None:
            options = {"password": self._password} if self._password else {}
            self._connection = psycopg2.connect(
                self._dsn, connect_timeout=10, **options
            )
        if not self._ready:
            with self._connection.cursor() as cursor:
                # Serialised: two services creating the tables at once would race.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                for statement in _TABLES:
                    cursor.execute(statement)
            self._connection.commit()
            self._ready = True
        return self._connection


def record_or_none(line: bytes) -> dict[str, Any] | None:
    """The record a line holds (``seq`` and ``hash`` at least), else ``None``."""
    try:
        record = json.loads(line)
        int(record["seq"]), str(record["hash"])
    except (ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, line + b"\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
