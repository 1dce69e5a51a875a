"""Run locks on PostgreSQL, for runs of one workspace on several hosts.

One connection per run holds a session-level advisory lock per dataset
(``pg_try_advisory_lock`` for writes, ``pg_try_advisory_lock_shared`` for
reads), keyed by a hash of the workspace and the dataset's name. A run whose
process or host dies loses its connection, and PostgreSQL releases its locks.
Who holds what is in ``bankplatform_run_locks`` (one row per run and dataset,
with the holding connection's backend pid: a row whose backend is gone is
ignored).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import psycopg2
import psycopg2.errors

from bankplatform.runs.holders import Holder, Mode, held_by_parent

_TABLE = """
CREATE TABLE IF NOT EXISTS bankplatform_run_locks (
    run_id text NOT NULL,
    workspace text NOT NULL,
    dataset text NOT NULL,
    mode text NOT NULL,
    holder jsonb NOT NULL,
    backend_pid integer NOT NULL,
    PRIMARY KEY (run_id, dataset)
)
"""


def advisory_key(workspace: str, dataset: str) -> int:
    """A signed 64-bit key for the pair (PostgreSQL's advisory lock space)."""
    digest = hashlib.sha256(f"{workspace}\0{dataset}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresRunLocks:
    """``RunLocks`` on PostgreSQL advisory locks (see the module docstring)."""

    def __init__(self, dsn: str, workspace: str, password: str | None = None) -> None:
        self._dsn = dsn
        self._workspace = workspace
        self._password = password
        self._connection: Any = None
        self._run_id: str | None = None

    def try_acquire(self, wants: Mapping[str, Mode], holder: Holder) -> str | None:
        """Take every lock, or none (see ``RunLocks``)."""
        connection = self._connect()
        with connection.cursor() as cursor:
            for name, mode in sorted(wants.items()):
                function = (
                    "pg_try_advisory_lock"
                    if mode is Mode.WRITE
                    else "pg_try_advisory_lock_shared"
                )
                cursor.execute(
                    f"SELECT {function}(%s)", (advisory_key(self._workspace, name),)
                )
                if cursor.fetchone()[0]:
                    continue
                if held_by_parent(self.holders(name)):
                    continue  # a run started by the run that holds it (a retrain)
                self.release()
                return name
            cursor.executemany(
                "INSERT INTO bankplatform_run_locks VALUES (%s, %s, %s, %s, %s, pg_backend_pid())",
                [
                    (
                        holder.run_id,
                        self._workspace,
                        name,
                        mode.value,
                        json.dumps(asdict(holder)),
                    )
                    for name, mode in wants.items()
                ],
            )
        self._run_id = holder.run_id
        return None

    def holders(self, dataset: str) -> list[Holder]:
        """Runs whose holding connection is still open and that lock ``dataset``."""
        connection = self._connect()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT holder FROM bankplatform_run_locks l WHERE workspace = %s AND dataset = %s "
                "AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid) "
                "ORDER BY holder->>'since'",
                (self._workspace, dataset),
            )
            return [Holder(**row[0]) for row in cursor.fetchall()]

    def release(self) -> None:
        """Unlock everything and forget this run's rows; the connection closes."""
        if self._connection is None:
            return
        try:
            with self._connection.cursor() as cursor:
                if self._run_id is not None:
                    cursor.execute(
                        "DELETE FROM bankplatform_run_locks WHERE run_id = %s",
                        (self._run_id,),
                    )
                cursor.execute("SELECT pg_advisory_unlock_all()")
        finally:
            self._connection.close()
            self._connection, self._run_id = None, None

    def _connect(self) -> Any:
        if self._connection is None:
            options = {"password": self._password} if self._password else {}
            self._connection = psycopg2.connect(
                self._dsn, connect_timeout=10, **options
            )
            self._connection.autocommit = True
            with self._connection.cursor() as cursor:
                try:
                    cursor.execute(_TABLE)
                except psycopg2.errors.UniqueViolation:
                    pass  # another run created it at the same moment
        return self._connection
