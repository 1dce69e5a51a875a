"""The audit log: chain, signed checkpoints, every kind of tampering, many writers."""

from __future__ import annotations

import json
import multiprocessing
import secrets
from collections.abc import Callable
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


def _rewrite(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(change(path.read_text().splitlines())) + "\n")


def _edit_outcome(lines: list[str]) -> list[str]:
    record = json.loads(lines[6])
    record["outcome"] = "denied"
    return [*lines[:6], json.dumps(record), *lines[7:]]


def _forge_head(lines: list[str]) -> list[str]:
    forged = json.loads(lines[0])
    forged["head_hash"] = "f" * 64
    return [json.dumps(forged), *lines[1:]]


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
            "log truncated: a signed checkpoint covers seq 10 but the log ends at seq 8",
        ),
        (
            "audit.jsonl.checkpoints",
            _forge_head,
            "checkpoint at seq 5: signature does not verify (forged or altered)",
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
