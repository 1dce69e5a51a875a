"""The audit log: append-only JSONL, hash-chained, with signed checkpoints.

Each record holds seq, UTC time, actor (and on whose behalf), action, resource,
outcome (allowed, denied or failed), details, the previous record's hash and its
own hash over canonical JSON. Every ``checkpoint_every`` records, and when a
process that wrote closes the log, the chain head is signed with the KMS signing
key into ``<log>.checkpoints``; so an edited, deleted, reordered or forged record,
and truncation below a checkpoint, are all detected by ``verify``. Records hold
pseudonymous references only, so erasing a customer never breaks the chain.
Appends from several processes are serialised with a file lock. A record that
cannot be written raises: the action that needed it must fail.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from bankplatform.errors import BankplatformError
from bankplatform.security.kms import KeyManagementService

GENESIS = "0" * 64
Outcome = Literal["allowed", "denied", "failed"]


class AuditWriteError(BankplatformError):
    """An audit record could not be written; the audited action must not proceed."""


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``ok``, the records checked and the first problem."""

    ok: bool
    records: int
    checkpoints: int
    problem: str = ""


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes a record's hash is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


class AuditLog:
    """Appends to and verifies one audit log file."""

    def __init__(
        self, path: Path, kms: KeyManagementService, checkpoint_every: int = 100
    ) -> None:
        self._path = path
        self._checkpoints = path.with_name(path.name + ".checkpoints")
        self._kms = kms
        self._every = checkpoint_every
        self._lock_path = f"{path}.lock"
        self._wrote = False

    def append(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: Outcome,
        details: dict[str, Any] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Append one record (and a checkpoint when one is due).

        Returns:
            The record as written.

        Raises:
            AuditWriteError: The log could not be written.
        """
        try:
            with self._lock():
                seq, prev_hash = self._head()
                record: dict[str, Any] = {
                    "seq": seq + 1,
                    "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "actor": actor,
                    "on_behalf_of": on_behalf_of,
                    "action": action,
                    "resource": resource,
                    "outcome": outcome,
                    "details": details or {},
                    "prev_hash": prev_hash,
                }
                record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
                _append_line(self._path, canonical(record))
                self._wrote = True
                if record["seq"] % self._every == 0:
                    self._checkpoint(record["seq"], record["hash"])
        except OSError as error:
            msg = (
                f"audit log {self._path} cannot be written ({error.strerror or error})"
            )
            raise AuditWriteError(msg) from None
        return record

    def _lock(self) -> FileLock:
        # A new lock object each time: one inherited across fork (ParallelRunner's
        # workers) refuses to work.
        return FileLock(self._lock_path)

    def close(self) -> None:
        """Sign the chain head if this process wrote since the last checkpoint."""
        if not self._wrote:
            return
        with self._lock():
            seq, head = self._head()
            if seq and self._last_checkpoint_seq() != seq:
                self._checkpoint(seq, head)
        self._wrote = False

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first."""
        if not self._path.is_file():
            return
        with self._path.open(encoding="utf-8") as stream:
            for line in stream:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> Verdict:
        """Check the whole chain and every checkpoint; stop at the first problem."""
        expected, prev, count, hashes = 1, GENESIS, 0, {}
        if self._path.is_file():
            with self._path.open(encoding="utf-8") as stream:
                for number, line in enumerate(stream, start=1):
                    record, problem = _check_record(line, number, expected, prev)
                    if problem:
                        return Verdict(False, count, 0, problem)
                    prev, expected, count = record["hash"], expected + 1, count + 1
                    hashes[record["seq"]] = record["hash"]
        checkpoints = 0
        lines = self._checkpoint_lines()
        for number, line in enumerate(lines, start=1):
            checkpoint = _parse_checkpoint(line)
            if checkpoint is None:
                problem = f"checkpoint line {number}: not a signed checkpoint"
                return Verdict(False, count, checkpoints, problem)
            problem = self._check_checkpoint(checkpoint, hashes, count)
            if problem:
                return Verdict(False, count, checkpoints, problem)
            checkpoints += 1
        return Verdict(True, count, checkpoints)

    def _head(self) -> tuple[int, str]:
        last = _last_line(self._path)
        if last is None:
            return 0, GENESIS
        record = json.loads(last)
        return int(record["seq"]), str(record["hash"])

    def _checkpoint(self, seq: int, head_hash: str) -> None:
        body = {
            "seq": seq,
            "head_hash": head_hash,
            "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        version, signature = self._kms.sign(canonical(body))
        _append_line(
            self._checkpoints,
            canonical({**body, "key_version": version, "signature": signature.hex()}),
        )

    def _last_checkpoint_seq(self) -> int:
        last = _last_line(self._checkpoints)
        return int(json.loads(last)["seq"]) if last else 0

    def _checkpoint_lines(self) -> list[str]:
        if not self._checkpoints.is_file():
            return []
        return [
            line for line in self._checkpoints.read_text().splitlines() if line.strip()
        ]

    def _check_checkpoint(
        self, checkpoint: dict[str, Any], hashes: dict[int, str], count: int
    ) -> str:
        body = {k: checkpoint[k] for k in ("seq", "head_hash", "signed_at")}
        seq = int(checkpoint["seq"])
        if not self._kms.verify(
            int(checkpoint["key_version"]),
            canonical(body),
            bytes.fromhex(checkpoint["signature"]),
        ):
            return f"checkpoint at seq {seq}: signature does not verify (forged or altered)"
        if seq > count:
            return f"log truncated: a signed checkpoint covers seq {seq} but the log ends at seq {count}"
        if hashes.get(seq) != checkpoint["head_hash"]:
            return f"record seq {seq}: differs from its signed checkpoint"
        return ""


def _parse_checkpoint(line: str) -> dict[str, Any] | None:
    """A checkpoint line with the fields and types verification needs, else ``None``."""
    try:
        checkpoint = json.loads(line)
        int(checkpoint["seq"])
        int(checkpoint["key_version"])
        bytes.fromhex(checkpoint["signature"])
        str(checkpoint["head_hash"]), str(checkpoint["signed_at"])
    except (ValueError, KeyError, TypeError):
        return None
    return checkpoint if isinstance(checkpoint, dict) else None


def _check_record(
    line: str, number: int, expected: int, prev: str
) -> tuple[dict[str, Any], str]:
    try:
        record = json.loads(line)
        stated = record.pop("hash")
    except (ValueError, KeyError, AttributeError):
        return {}, f"line {number}: not an audit record"
    if record.get("seq") != expected:
        return (
            record,
            f"record at line {number}: seq {record.get('seq')}, expected {expected} (a record was deleted or reordered)",
        )
    if record.get("prev_hash") != prev:
        return (
            record,
            f"record seq {expected}: prev_hash does not match the record before it (deleted or reordered)",
        )
    if hashlib.sha256(canonical(record)).hexdigest() != stated:
        return (
            record,
            f"record seq {expected}: content does not match its hash (edited)",
        )
    record["hash"] = stated
    return record, ""


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, line + b"\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _last_line(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with path.open("rb") as stream:
        stream.seek(0, os.SEEK_END)
        position = stream.tell()
        block = b""
        # Two newlines guarantee one whole line, whether or not the file ends in one.
        while position > 0 and block.count(b"\n") < 2:  # noqa: PLR2004
            step = min(4096, position)
            position -= step
            stream.seek(position)
            block = stream.read(step) + block
    lines = [line for line in block.splitlines() if line.strip()]
    return lines[-1].decode() if lines else None
