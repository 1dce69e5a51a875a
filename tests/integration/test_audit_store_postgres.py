"""The audit log on PostgreSQL (the production profile's store): the same chain,
checkpoints and verdicts as the file, over verify-full TLS to a real server;
append-only tables; tampering by the database's owner named; several writers;
an unreachable store refuses the audited action."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bankplatform.keyservice.audit_log import AuditLog
from bankplatform.keyservice.audit_store import FileAuditStore, PostgresAuditStore
from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.security.audit import AuditWriteError
from tests.helpers import append_approvals, free_port, run_processes
from tests.servers import PostgresTLS, serve_database

pytestmark = pytest.mark.integration
SECRET = secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresTLS]:
    yield from serve_database(tmp_path_factory.mktemp("audit_tls"), "audit", SECRET)


def _dsn(postgres: PostgresTLS, port: int | None = None) -> str:
    return (
        f"postgresql://audit@127.0.0.1:{port or postgres.port}/audit"
        f"?sslmode=verify-full&sslrootcert={postgres.ca_cert}"
    )


def _keyring(folder: Path, master: bytes) -> LocalKeyring:
    ring = LocalKeyring(folder / "keyring.json", master)
    ring.initialise()
    return ring


def _log(postgres: PostgresTLS, name: str, ring: LocalKeyring) -> AuditLog:
    store = PostgresAuditStore(_dsn(postgres), log=name, password=SECRET)
    return AuditLog(store, ring, checkpoint_every=5)


def _as_owner(postgres: PostgresTLS, *statements: str) -> list[Any]:
    """Statements as the database's owner (who can switch the trigger off)."""
    connection: Any = postgres.connect("audit", user="audit", password=SECRET)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
        connection.commit()
        return rows
    finally:
        connection.close()


def test_the_log_on_postgres_holds_exactly_the_lines_a_file_log_would(
    postgres: PostgresTLS, tmp_path: Path
) -> None:
    ring = _keyring(tmp_path, secrets.token_bytes(32))
    audit = _log(postgres, "same-lines", ring)
    append_approvals(audit)
    verdict = audit.verify()
    assert (verdict.ok, verdict.records, verdict.checkpoints) == (True, 12, 4)
    assert [r["details"]["n"] for r in audit.records()] == list(range(12))
    stored = _as_owner(
        postgres,
        "SELECT seq, line FROM bankplatform_audit_records "
        "WHERE log = 'same-lines' ORDER BY seq",
    )
    assert [seq for seq, _ in stored] == list(range(1, 13))
    # The stored bytes verify as a file log too: the store changes nothing.
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b"".join(bytes(line) + b"\n" for _, line in stored))
    checkpoints = _as_owner(
        postgres,
        "SELECT line FROM bankplatform_audit_checkpoints "
        "WHERE log = 'same-lines' ORDER BY number",
    )
    copy.with_name("copy.jsonl.checkpoints").write_text(
        "".join(line + "\n" for (line,) in checkpoints)
    )
    as_file = AuditLog(FileAuditStore(copy), ring, checkpoint_every=5).verify()
    assert (as_file.ok, as_file.records, as_file.checkpoints) == (True, 12, 4)
    # Another log in the same database is another chain.
    other = _log(postgres, "another-workspace", ring)
    other.append("bob", "pipeline.run.start", "pipeline:features", "allowed")
    assert [r["seq"] for r in other.records()] == [1]
    assert audit.verify().records == 12


def test_update_delete_and_truncate_are_refused_by_the_database(
    postgres: PostgresTLS, tmp_path: Path
) -> None:
    append_approvals(
        _log(postgres, "append-only", _keyring(tmp_path, secrets.token_bytes(32)))
    )
    for statement in (
        "UPDATE bankplatform_audit_records SET line = 'x' WHERE log = 'append-only'",
        "DELETE FROM bankplatform_audit_records WHERE log = 'append-only' AND seq = 3",
        "TRUNCATE bankplatform_audit_checkpoints",
    ):
        with pytest.raises(
            Exception, match=r"the audit log is append-only: \w+ refused"
        ):
            _as_owner(postgres, statement)
    assert _as_owner(
        postgres,
        "SELECT count(*) FROM bankplatform_audit_records WHERE log = 'append-only'",
    ) == [(12,)]


_TRIGGER_OFF = "ALTER TABLE bankplatform_audit_records DISABLE TRIGGER USER"
_TRIGGER_ON = "ALTER TABLE bankplatform_audit_records ENABLE TRIGGER USER"


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (
            "UPDATE bankplatform_audit_records SET line = "
            "convert_to(replace(convert_from(line, 'UTF8'), '\"allowed\"', '\"denied\"'), 'UTF8') "
            "WHERE log = '{log}' AND seq = 7",
            "record seq 7: content does not match its hash (edited)",
        ),
        (
            "DELETE FROM bankplatform_audit_records WHERE log = '{log}' AND seq = 7",
            "record at line 7: seq 8, expected 7 (a record was deleted or reordered)",
        ),
        (
            "DELETE FROM bankplatform_audit_records WHERE log = '{log}' AND seq > 10",
            "log truncated: a signed checkpoint covers seq 12 but the log ends at seq 10",
        ),
    ],
    ids=["edited", "deleted", "tail-cut"],
)
def test_tampering_by_the_database_owner_is_named(
    postgres: PostgresTLS, tmp_path: Path, tamper: str, problem: str
) -> None:
    name = f"tampered-{secrets.token_hex(4)}"
    audit = _log(postgres, name, _keyring(tmp_path, secrets.token_bytes(32)))
    append_approvals(audit)
    assert audit.verify().ok
    _as_owner(postgres, _TRIGGER_OFF, tamper.format(log=name), _TRIGGER_ON)
    verdict = audit.verify()
    assert (verdict.ok, verdict.problem) == (False, problem)


def _writer(
    dsn: str, password: str, folder: str, master: bytes, worker: int, count: int
) -> None:
    store = PostgresAuditStore(dsn, log="many-writers", password=password)
    audit = AuditLog(
        store, LocalKeyring(Path(folder) / "keyring.json", master), checkpoint_every=50
    )
    for number in range(count):
        audit.append(f"worker-{worker}", "test.append", f"item:{number}", "allowed")
    audit.sign_head()


def test_four_processes_appending_at_once_keep_one_chain(
    postgres: PostgresTLS, tmp_path: Path
) -> None:
    master = secrets.token_bytes(32)
    ring = _keyring(tmp_path, master)
    run_processes(
        _writer,
        [(_dsn(postgres), SECRET, str(tmp_path), master, w, 150) for w in range(4)],
        timeout=300,
    )
    store = PostgresAuditStore(_dsn(postgres), log="many-writers", password=SECRET)
    audit = AuditLog(store, ring, checkpoint_every=50)
    records = list(audit.records())
    assert [r["seq"] for r in records] == list(range(1, 601))
    assert {r["actor"] for r in records} == {f"worker-{w}" for w in range(4)}
    verdict = audit.verify()
    assert (verdict.ok, verdict.records) == (True, 600), verdict.problem
    assert verdict.checkpoints >= 12


def test_threads_sharing_one_log_keep_one_chain(
    postgres: PostgresTLS, tmp_path: Path
) -> None:
    """The key service answers on a pool of threads, all with one ``AuditLog``."""
    audit = _log(postgres, "threads", _keyring(tmp_path, secrets.token_bytes(32)))

    def append(worker: int) -> None:
        for number in range(50):
            audit.append(f"thread-{worker}", "test.append", f"item:{number}", "allowed")

    def sign(_: int) -> None:  # the key service signs the head when idle
        for _ in range(40):
            audit.sign_head()

    with ThreadPoolExecutor(10) as pool:
        running = [pool.submit(append, w) for w in range(8)]
        running += [pool.submit(sign, w) for w in range(2)]
        for task in running:
            task.result()
    records = list(audit.records())
    assert [r["seq"] for r in records] == list(range(1, 401))
    assert len({r["actor"] for r in records}) == 8
    verdict = audit.verify()
    assert (verdict.ok, verdict.records) == (True, 400), verdict.problem


def test_an_unreachable_store_refuses_the_action_in_one_line(
    postgres: PostgresTLS, tmp_path: Path
) -> None:
    ring = _keyring(tmp_path, secrets.token_bytes(32))
    closed = free_port()
    store = PostgresAuditStore(
        _dsn(postgres, port=closed), log="unreachable", password=SECRET
    )
    with pytest.raises(AuditWriteError) as refused:
        AuditLog(store, ring).append("ada", "model.approve", "model:m/1", "allowed")
    message = str(refused.value)
    assert message.startswith(
        f"audit log PostgreSQL 127.0.0.1:{closed}/audit (log unreachable) cannot be written"
    )
    assert "\n" not in message and SECRET not in message
    verdict = AuditLog(store, ring).verify()
    assert not verdict.ok
    assert verdict.problem.startswith(
        f"audit log PostgreSQL 127.0.0.1:{closed}/audit (log unreachable) cannot be read"
    )


class _SigningFails(LocalKeyring):
    def sign(self, message: bytes) -> tuple[int, bytes]:
        raise OSError("the signing key is not available")


def test_records_and_their_checkpoint_commit_together_or_not_at_all(
    postgres: PostgresTLS, tmp_path: Path
) -> None:
    master = secrets.token_bytes(32)
    ring = _keyring(tmp_path, master)
    audit = _log(postgres, "all-or-nothing", ring)
    append_approvals(audit, 4)
    failing = _log(
        postgres, "all-or-nothing", _SigningFails(tmp_path / "keyring.json", master)
    )
    entries: list[Any] = [("model.approve", "model:m/9", "allowed", {})] * 3
    with pytest.raises(AuditWriteError, match="the signing key is not available"):
        failing.append_many("ada", entries)  # seq 5 is due a checkpoint
    verdict = audit.verify()
    assert (verdict.ok, verdict.records) == (True, 4)
    audit.append_many("ada", entries)
    assert [r["seq"] for r in audit.records()] == [1, 2, 3, 4, 5, 6, 7]
    assert audit.verify().ok
