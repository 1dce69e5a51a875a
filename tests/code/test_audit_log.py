"""The audit log: chain, signed checkpoints, every kind of tampering, many writers."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from bankplatform.keyservice.audit_log import (
    GENESIS,
    AuditLog,
    FileWitness,
    MlflowWitness,
    encode_record,
)
from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.security.audit import AuditWriteError
from tests.helpers import append_approvals, run_processes

pytestmark = pytest.mark.unit


def _keyring(folder: Path, master: bytes) -> LocalKeyring:
    ring = LocalKeyring(folder / "keyring.json", master)
    ring.initialise()
    return ring


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(
        tmp_path / "audit.jsonl",
        _keyring(tmp_path, secrets.token_bytes(32)),
        checkpoint_every=5,
    )
    append_approvals(audit)
    return audit


def _rewrite(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(change(path.read_text().splitlines())) + "\n")


def _edit_outcome(lines: list[str]) -> list[str]:
    edited = lines[6].replace('"outcome":"allowed"', '"outcome":"denied"')
    assert edited != lines[6]
    return [*lines[:6], edited, *lines[7:]]


def _forge_head(lines: list[str]) -> list[str]:
    forged = json.loads(lines[0])
    forged["head_hash"] = "f" * 64
    return [json.dumps(forged), *lines[1:]]


def test_an_intact_log_verifies_with_its_checkpoints(log: AuditLog) -> None:
    verdict = log.verify()
    assert (verdict.ok, verdict.records, verdict.checkpoints) == (
        True,
        12,
        4,
    )  # at 1, 5, 10 and when the head is signed at 12
    records = list(log.records())
    assert [r["seq"] for r in records] == list(range(1, 13))
    assert records[1]["prev_hash"] == records[0]["hash"]


@pytest.mark.parametrize(
    ("file", "change", "problem"),
    [
        (
            "audit.jsonl",
            _edit_outcome,
            "record seq 7: content does not match its hash (edited)",
        ),
        (
            "audit.jsonl",
            lambda lines: lines[:3] + lines[4:],
            "record at line 4: seq 5, expected 4 (a record was deleted or reordered)",
        ),
        (
            "audit.jsonl",
            lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]],
            "record at line 3: seq 4, expected 3 (a record was deleted or reordered)",
        ),
        (
            "audit.jsonl",
            lambda lines: lines[:8],
            "log truncated: a signed checkpoint covers seq 12 but the log ends at seq 8",
        ),
        (
            "audit.jsonl.checkpoints",
            _forge_head,
            "checkpoint at seq 1: signature does not verify (forged or altered)",
        ),
    ],
    ids=["edited", "deleted", "reordered", "truncated", "forged-checkpoint"],
)
def test_tampering_is_named(
    log: AuditLog,
    tmp_path: Path,
    file: str,
    change: Callable[[list[str]], list[str]],
    problem: str,
) -> None:
    _rewrite(tmp_path / file, change)
    assert log.verify().problem == problem


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[]",
        '{"seq": 5}',
        '{"seq": "x", "key_version": 1, "signature": "zz", "head_hash": "", "signed_at": ""}',
    ],
    ids=["text", "a-list", "missing-fields", "bad-types"],
)
def test_a_malformed_checkpoint_is_a_verdict_not_a_crash(
    log: AuditLog, tmp_path: Path, line: str
) -> None:
    _rewrite(
        tmp_path / "audit.jsonl.checkpoints", lambda lines: [lines[0], line, *lines[1:]]
    )
    verdict = log.verify()
    assert (verdict.ok, verdict.checkpoints, verdict.problem) == (
        False,
        1,
        "checkpoint line 2: not a signed checkpoint",
    )


def _forged_lines(
    actor: str, count: int, first: int = 1, prev: str = GENESIS
) -> list[str]:
    """A chain rebuilt with plain SHA-256, as an insider without the key would."""
    lines = []
    for seq in range(first, first + count):
        record = {
            "seq": seq,
            "prev_hash": prev,
            "time": "2026-01-01T00:00:00+00:00",
            "actor": actor,
            "on_behalf_of": None,
            "action": "keys.rotate",
            "resource": "keyring",
            "outcome": "allowed",
            "details": {},
        }
        lines.append(encode_record(record).decode())
        prev = record["hash"]
    return lines


def test_a_rewritten_chain_does_not_match_its_signed_checkpoint(tmp_path: Path) -> None:
    ring = _keyring(tmp_path, secrets.token_bytes(32))
    audit = AuditLog(tmp_path / "audit.jsonl", ring, checkpoint_every=3)
    for number in range(3):
        audit.append("ada", "keys.rotate", "keyring", "allowed", {"n": number})
    (tmp_path / "audit.jsonl").write_text("\n".join(_forged_lines("mallory", 3)) + "\n")
    assert audit.verify().problem == "record seq 1: differs from its signed checkpoint"


def test_a_rebuilt_chain_with_its_checkpoints_deleted_is_not_intact(
    log: AuditLog, tmp_path: Path
) -> None:
    (tmp_path / "audit.jsonl").write_text(
        "\n".join(_forged_lines("mallory", 12)) + "\n"
    )
    (tmp_path / "audit.jsonl.checkpoints").unlink()
    verdict = log.verify()
    assert (verdict.ok, verdict.records, verdict.problem) == (
        False,
        12,
        "no signed checkpoint covers the 12 record(s) (checkpoints deleted or the log forged)",
    )


def test_records_appended_without_the_key_past_the_interval_are_named(
    log: AuditLog, tmp_path: Path
) -> None:
    head = list(log.records())[-1]["hash"]
    forged = _forged_lines("mallory", 6, first=13, prev=head)
    with (tmp_path / "audit.jsonl").open("a") as stream:
        stream.write("\n".join(forged) + "\n")
    assert log.verify().problem == (
        "records 13-18 follow the last signed checkpoint (seq 12), more than the "
        "interval of 5 (checkpoints deleted or records appended without the key)"
    )


def test_checkpoints_must_increase(log: AuditLog, tmp_path: Path) -> None:
    _rewrite(tmp_path / "audit.jsonl.checkpoints", lambda lines: [*lines, lines[1]])
    assert log.verify().problem == "checkpoint line 5: seq 5 does not follow seq 12"


def test_the_witness_catches_a_cut_tail_with_its_checkpoints(tmp_path: Path) -> None:
    ring = _keyring(tmp_path, secrets.token_bytes(32))
    witness = FileWitness(tmp_path / "elsewhere" / "audit-head.json")
    audit = AuditLog(tmp_path / "audit.jsonl", ring, 5, (witness,))
    for number in range(12):
        audit.append("ada", "model.approve", f"model:m/{number}", "allowed")
    audit.sign_head()
    assert audit.verify().ok
    assert json.loads(witness.path.read_text())["seq"] == 12
    # Cut records 11-12 and the checkpoint that covered them.
    _rewrite(tmp_path / "audit.jsonl", lambda lines: lines[:10])
    _rewrite(tmp_path / "audit.jsonl.checkpoints", lambda lines: lines[:-1])
    assert audit.verify().problem == (
        f"log truncated or wiped: witness file {witness.path} holds seq 12 but the log ends at seq 10"
    )
    witness.path.unlink()
    assert (
        audit.verify().problem
        == f"witness file {witness.path}: missing (the log has 10 records)"
    )


def test_a_malformed_last_line_does_not_stop_appends(
    log: AuditLog, tmp_path: Path
) -> None:
    with (tmp_path / "audit.jsonl").open("a") as stream:
        stream.write('{"seq": 13, "half a rec\n')
    record = log.append("ada", "model.approve", "model:m/1", "allowed")
    assert (record["seq"], record["prev_hash"]) == (13, list(log.records())[11]["hash"])
    assert log.verify().problem == "line 13: not an audit record"


def test_a_write_failure_raises(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log's folder should be")
    audit = AuditLog(
        blocked / "audit.jsonl", _keyring(tmp_path, secrets.token_bytes(32))
    )
    with pytest.raises(
        AuditWriteError, match=r"audit log .*not-a-folder/audit.jsonl cannot be written"
    ):
        audit.append("ada", "pipeline.run.start", "pipeline:ingestion", "allowed")


def _writer(folder: str, master: bytes, worker: int, count: int) -> None:
    audit = AuditLog(
        Path(folder) / "audit.jsonl",
        LocalKeyring(Path(folder) / "keyring.json", master),
        checkpoint_every=100,
    )
    for number in range(count):
        audit.append(f"worker-{worker}", "test.append", f"item:{number}", "allowed")
    audit.sign_head()


@pytest.mark.slow
def test_four_processes_appending_500_each_keep_one_valid_chain(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    _keyring(tmp_path, master)
    run_processes(
        _writer, [(str(tmp_path), master, w, 500) for w in range(4)], timeout=600
    )
    audit = AuditLog(
        tmp_path / "audit.jsonl", LocalKeyring(tmp_path / "keyring.json", master)
    )
    records = list(audit.records())
    assert [r["seq"] for r in records] == list(range(1, 2001))
    assert {r["actor"] for r in records} == {f"worker-{w}" for w in range(4)}
    verdict = audit.verify()
    assert verdict.ok, verdict.problem
    assert verdict.records == 2000
    assert verdict.checkpoints >= 20


def test_the_mlflow_witness_catches_a_log_cut_with_its_file_witness(
    tmp_path: Path,
) -> None:
    ring = _keyring(tmp_path, secrets.token_bytes(32))
    in_mlflow = MlflowWitness(f"sqlite:///{tmp_path / 'mlflow.db'}")
    in_file = FileWitness(tmp_path / "elsewhere" / "audit-head.json")
    audit = AuditLog(tmp_path / "audit.jsonl", ring, 5, (in_file, in_mlflow))
    for number in range(7):
        audit.append("ada", "model.approve", f"model:m/{number}", "allowed")
    audit.sign_head()
    assert audit.verify().ok
    assert MlflowWitness(f"sqlite:///{tmp_path / 'mlflow.db'}").read()["seq"] == 7  # type: ignore[index]
    # An insider cuts the last records, their checkpoints and the file witness.
    _rewrite(tmp_path / "audit.jsonl", lambda lines: lines[:4])
    _rewrite(tmp_path / "audit.jsonl.checkpoints", lambda lines: lines[:1])
    in_file.path.unlink()
    witnessed_only_in_mlflow = AuditLog(tmp_path / "audit.jsonl", ring, 5, (in_mlflow,))
    assert witnessed_only_in_mlflow.verify().problem == (
        f"log truncated or wiped: {in_mlflow.name} holds seq 7 but the log ends at seq 4"
    )
