"""The audit log's vocabulary for callers: outcomes, the verdict of a check, the
error that stops an action whose record could not be written. The log itself, its chain, checkpoints,
stores and witnesses belong to the key holder (``bankplatform.keyservice.audit_log``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from bankplatform.errors import BankplatformError

Outcome = Literal["allowed", "denied", "failed"]
# The detail of a scoring request's audit record that binds its decision-log line.
DECISION_SHA256 = "decision_sha256"


def decision_line_sha256(line: bytes) -> str:
    """The sha256 of one decision-log line (without its line ending): what the
    request's audit record carries, so an edited line no longer matches it."""
    return hashlib.sha256(line.rstrip(b"\r\n")).hexdigest()


class AuditWriteError(BankplatformError):
    """An audit record could not be written; the audited action must not proceed."""


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``ok``, the records checked and the first problem."""

    ok: bool
    records: int
    checkpoints: int
    problem: str = ""
