"""The audit log: chain, signed checkpoints, every kind of tampering, many writers."""

from __future__ import annotations

import json
import multiprocessing
import secrets
from pathlib import Path

import pytest

from bankplatform.security.audit import AuditLog, AuditWriteError
from bankplatform.security.kms import LocalKeyring

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
    for number in range(12):
        audit.append(
            "ada",
            "model.approve",
            f"model:credit_default_pd/{number}",
            "allowed",
            {"n": number},
        )
    audit.close()
    return audit


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_intact_log_verifies_with_its_checkpoints(log: AuditLog) -> None:
    verdict = log.verify()
    assert (verdict.ok, verdict.records, verdict.checkpoints) == (
        True,
        12,
        3,
    )  # at 5, 10 and on close at 12
    records = list(log.records())
    assert [r["seq"] for r in records] == list(range(1, 13))
    assert records[1]["prev_hash"] == records[0]["hash"]


def test_an_edited_record_is_named(log: AuditLog, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _lines(path)
    record = json.loads(lines[6])
    record["outcome"] = "denied"
    lines[6] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    assert (
        log.verify().problem == "record seq 7: content does not match its hash (edited)"
    )


def test_a_deleted_record_is_named(log: AuditLog, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _lines(path)
    del lines[3]
    path.write_text("\n".join(lines) + "\n")
    assert (
        log.verify().problem
        == "record at line 4: seq 5, expected 4 (a record was deleted or reordered)"
    )


def test_reordered_records_are_named(log: AuditLog, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _lines(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_text("\n".join(lines) + "\n")
    assert (
        log.verify().problem
        == "record at line 3: seq 4, expected 3 (a record was deleted or reordered)"
    )


def test_truncation_after_a_checkpoint_is_detected(
    log: AuditLog, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(_lines(path)[:8]) + "\n")
    assert (
        log.verify().problem
        == "log truncated: a signed checkpoint covers seq 10 but the log ends at seq 8"
    )


def test_a_forged_checkpoint_is_detected(log: AuditLog, tmp_path: Path) -> None:
    checkpoints = tmp_path / "audit.jsonl.checkpoints"
    lines = _lines(checkpoints)
    forged = json.loads(lines[0])
    forged["head_hash"] = "f" * 64
    lines[0] = json.dumps(forged)
    checkpoints.write_text("\n".join(lines) + "\n")
    assert (
        log.verify().problem
        == "checkpoint at seq 5: signature does not verify (forged or altered)"
    )


def test_a_rewritten_chain_does_not_match_its_signed_checkpoint(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    ring = _keyring(tmp_path, master)
    audit = AuditLog(tmp_path / "audit.jsonl", ring, checkpoint_every=3)
    for number in range(3):
        audit.append("ada", "keys.rotate", "keyring", "allowed", {"n": number})
    # Someone rebuilds a valid-looking chain with other content.
    (tmp_path / "audit.jsonl").unlink()
    forger = AuditLog(tmp_path / "audit.jsonl", ring, checkpoint_every=1000)
    for number in range(3):
        forger.append("mallory", "keys.rotate", "keyring", "allowed", {"n": number})
    assert (
        AuditLog(tmp_path / "audit.jsonl", ring).verify().problem
        == "record seq 3: differs from its signed checkpoint"
    )


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
    audit.close()


@pytest.mark.slow
def test_four_processes_appending_500_each_keep_one_valid_chain(tmp_path: Path) -> None:
    master = secrets.token_bytes(32)
    _keyring(tmp_path, master)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_writer, args=(str(tmp_path), master, w, 500))
        for w in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=600)
        assert process.exitcode == 0
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
