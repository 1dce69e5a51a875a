"""The audit log: append-only JSONL, hash-chained, with signed checkpoints and a witness.

Each record holds seq, the previous record's hash, UTC time, actor (and on whose
behalf), action, resource, outcome (allowed, denied or failed), details, and its
own hash: the SHA-256 of the line's bytes up to the hash field (the record as
written, with ``}`` in place of ``,"hash":"..."``), so ``verify`` hashes the
stored bytes and never re-serialises. The first record and every
``checkpoint_every``-th are followed by a checkpoint: the chain head signed with
the KMS signing key (its ``key_version`` is the key id) into
``<log>.checkpoints``; the head is also signed when the key service goes idle or
stops (``sign_head``). The latest signed head is copied to **witnesses** outside the
log's folder (a file, and in production the MLflow tracking store).

The records and checkpoints live in an ``AuditStore``
(``audit_store.py``): a file by default, PostgreSQL in production; the chain and
its checks are the same on both.

``verify`` requires: every record intact and chained; checkpoints signed and
strictly increasing; the log covered by them (a non-empty log has at least one,
and no more than ``checkpoint_every`` records follow the last); and every
witness's signed head present in the log. So an edited, deleted, reordered or
forged record, a chain rebuilt with plain SHA-256, deleted checkpoints, and a
cut tail are all named. Records hold pseudonymous references only, so erasing a
customer never breaks the chain. Appends are serialised by the store. A
record that cannot be written raises: the action that needed it must fail. A
malformed line (a crash mid-write, or vandalism) does not stop appends: the
next record chains to the last intact one, and ``verify`` names the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bankplatform.keyservice.audit_store import AuditStore, FileAuditStore
from bankplatform.security.audit import AuditWriteError, Outcome, Verdict
from bankplatform.security.kms import KeyManagementService

GENESIS = "0" * 64
_PREFIX = b'{"seq":'
_PREV = b',"prev_hash":"'
_HASH = b',"hash":"'
_SUFFIX_LENGTH = len(_HASH) + 64 + 2  # ,"hash":"<64 hex>"}


class Witness(Protocol):
    """A copy of the latest signed chain head, kept where the log's writer is not."""

    name: str

    def record(self, checkpoint: dict[str, Any]) -> None: ...
    def read(self) -> dict[str, Any] | None: ...


class FileWitness:
    """The latest signed head in a file (atomic replace), outside the log's folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"witness file {path}"

    def record(self, checkpoint: dict[str, Any]) -> None:
        """Replace the file with ``checkpoint``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(canonical(checkpoint))
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(self.path)

    def read(self) -> dict[str, Any] | None:
        """The recorded head, or ``None`` when the file does not exist."""
        if not self.path.is_file():
            return None
        return _parse_checkpoint(self.path.read_text(encoding="utf-8"))


class CarriedHead:
    """A signed head copied into something the log's writer handed out (a bundle's
    provenance): read only, compared by ``verify``."""

    def __init__(self, name: str, head: dict[str, Any]) -> None:
        self.name = name
        self._head = head

    def record(self, checkpoint: dict[str, Any]) -> None:
        """Nothing: a carried head is never rewritten."""
        del checkpoint

    def read(self) -> dict[str, Any] | None:
        """The head as carried, if it has a checkpoint's shape."""
        return _parse_checkpoint(canonical(self._head).decode())


class MlflowWitness:
    """The latest signed head as a tag of a dedicated run in the MLflow tracking
    store (experiment ``bankplatform-audit-witness``, run ``audit-witness``): a
    store the audit log's host does not write in production."""

    EXPERIMENT = "bankplatform-audit-witness"
    TAG = "audit.signed_head"

    def __init__(self, tracking_uri: str) -> None:
        # Fail fast: a checkpoint waits for this write (the next one retries).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        self.name = f"witness run in {tracking_uri}"
        self._uri = tracking_uri
        self._run_id: str | None = None

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 - only when configured

        local = (
            self._uri.removeprefix("sqlite:///")
            if self._uri.startswith("sqlite:///")
            else ""
        )
        if local and not os.access(
            local if os.path.exists(local) else os.path.dirname(local) or ".",
            os.R_OK | os.W_OK,
        ):
            # MLflow would retry opening it for minutes; this OS user cannot.
            msg = f"{self.name}: not writable by this OS user"
            raise PermissionError(msg)
        return MlflowClient(tracking_uri=self._uri)

    def _run(self, create: bool) -> str | None:
        if self._run_id is None:
            client = self._client()
            experiment = client.get_experiment_by_name(self.EXPERIMENT)
            if experiment is None:
                if not create:
                    return None
                experiment_id = client.create_experiment(self.EXPERIMENT)
            else:
                experiment_id = experiment.experiment_id
            found = client.search_runs(
                [experiment_id], "tags.mlflow.runName = 'audit-witness'", max_results=1
            )
            if found:
                self._run_id = found[0].info.run_id
            elif create:
                self._run_id = client.create_run(
                    experiment_id, run_name="audit-witness"
                ).info.run_id
                # A holder of tags, not a run in progress: finished at once.
                client.set_terminated(self._run_id)
        return self._run_id

    def record(self, checkpoint: dict[str, Any]) -> None:
        """Set the run's tag to ``checkpoint``."""
        run_id = self._run(create=True)
        self._client().set_tag(run_id, self.TAG, canonical(checkpoint).decode())

    def read(self) -> dict[str, Any] | None:
        """The recorded head, or ``None`` when the run or its tag does not exist."""
        run_id = self._run(create=False)
        if run_id is None:
            return None
        value = self._client().get_run(run_id).data.tags.get(self.TAG)
        return None if value is None else _parse_checkpoint(value)


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a checkpoint is signed over."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def encode_record(record: dict[str, Any]) -> bytes:
    """One record's line (without newline): fields in order, hash of the bytes last.

    ``record`` must start with ``seq`` and ``prev_hash``; its hash is added.
    """
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(body).hexdigest()
    record["hash"] = digest
    return body[:-1] + _HASH + digest.encode() + b'"}'


class AuditLog:
    """Appends to and verifies one audit log (a file, or an ``AuditStore``)."""

    def __init__(
        self,
        store: Path | AuditStore,
        kms: KeyManagementService,
        checkpoint_every: int = 100,
        witnesses: tuple[Witness, ...] = (),
    ) -> None:
        self._store: AuditStore = (
            FileAuditStore(store) if isinstance(store, Path) else store
        )
        self._kms = kms
        self._every = checkpoint_every
        self._witnesses = witnesses

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
        return self.append_many(
            actor, [(action, resource, outcome, details or {})], on_behalf_of
        )[0]

    def append_many(
        self,
        actor: str,
        entries: list[tuple[str, str, Outcome, dict[str, Any]]],
        on_behalf_of: str | None = None,
    ) -> list[dict[str, Any]]:
        """Append several records of one actor with one write and one fsync.

        A busy service (a scoring service audits every request) sends its
        records in batches: one lock, one ``fsync``, checkpoints where due.

        Args:
            actor: Who acted (the caller's proven identity).
            entries: ``(action, resource, outcome, details)`` per record.
            on_behalf_of: Who started the actor, for a service.

        Returns:
            The records as written.

        Raises:
            AuditWriteError: The log could not be written (none of them was).
        """
        written: list[dict[str, Any]] = []
        try:
            with self._store.transaction():
                seq, prev_hash = self._head()
                lines: list[tuple[int, bytes]] = []
                due: list[tuple[int, str]] = []
                for action, resource, outcome, details in entries:
                    seq += 1
                    record: dict[str, Any] = {
                        "seq": seq,
                        "prev_hash": prev_hash,
                        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                        "actor": actor,
                        "on_behalf_of": on_behalf_of,
                        "action": action,
                        "resource": resource,
                        "outcome": outcome,
                        "details": details or {},
                    }
                    lines.append((seq, encode_record(record)))
                    prev_hash = record["hash"]
                    written.append(record)
                    if seq % self._every == 0 or seq == 1:
                        due.append((seq, prev_hash))
                if lines:
                    self._store.append_records(lines)
                for checkpoint_seq, head in due:
                    self._checkpoint(checkpoint_seq, head)
        except OSError as error:
            msg = f"audit log {self._store.name} cannot be written ({error.strerror or error})"
            raise AuditWriteError(msg) from None
        return written

    def sign_head(self) -> None:
        """Checkpoint the chain head unless the last checkpoint already covers it."""
        with self._store.transaction():
            seq, head = self._head()
            if seq and self._last_checkpoint_seq() != seq:
                self._checkpoint(seq, head)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable record, oldest first (a malformed line is skipped)."""
        for block in self._store.record_blocks():
            for line in block:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        yield record

    def checkpoint_covering(self, seq: int) -> dict[str, Any] | None:
        """The first signed checkpoint at or after record ``seq`` (the head is signed
        now if none is): what a bundle carries as a witness of the log. The same
        ``seq`` gives the same checkpoint for good (checkpoints are only appended)."""
        self.sign_head()
        for line in self._checkpoint_lines():
            checkpoint = _parse_checkpoint(line)
            if checkpoint is not None and int(checkpoint["seq"]) >= seq:
                return checkpoint
        return None

    def verify(self, carried: Sequence[Witness] = ()) -> Verdict:
        """Check the chain, its checkpoints and witnesses (the configured ones and
        ``carried``: heads copied elsewhere, a bundle's); stop at the first problem."""
        try:
            checkpoints, problem = self._ordered_checkpoints()
            if problem:
                return Verdict(False, 0, len(checkpoints), problem)
            heads = {int(c["seq"]): str(c["head_hash"]) for c in checkpoints}
            # The signatures are checked on a second thread while this one walks
            # the chain (the Ed25519 checks release the GIL): a forged or altered
            # checkpoint is still reported before anything the chain finds.
            with ThreadPoolExecutor(1, thread_name_prefix="audit-signatures") as pool:
                signatures = pool.submit(self._unsigned, checkpoints)
                count, problem = _verify_chain(self._store.record_blocks(), heads)
                forged = signatures.result()
            if forged:
                return Verdict(False, 0, len(checkpoints), forged)
        except OSError as error:
            problem = f"audit log {self._store.name} cannot be read ({error.strerror or error})"
            return Verdict(False, 0, 0, problem)
        if problem:
            return Verdict(False, count, len(checkpoints), problem)
        problem = self._coverage(checkpoints, count) or self._witnessed(
            heads, count, (*self._witnesses, *carried)
        )
        return Verdict(not problem, count, len(checkpoints), problem)

    def _unsigned(self, checkpoints: list[dict[str, Any]]) -> str:
        """The first checkpoint whose signature does not verify, in words ("" if none)."""
        for checkpoint in checkpoints:
            if not self._signed(checkpoint):
                return f"checkpoint at seq {checkpoint['seq']}: signature does not verify (forged or altered)"
        return ""

    def _ordered_checkpoints(self) -> tuple[list[dict[str, Any]], str]:
        """The checkpoint lines, parsed and in seq order (signatures: ``_unsigned``)."""
        found: list[dict[str, Any]] = []
        for number, line in enumerate(self._checkpoint_lines(), start=1):
            checkpoint = _parse_checkpoint(line)
            if checkpoint is None:
                return found, f"checkpoint line {number}: not a signed checkpoint"
            if found and int(checkpoint["seq"]) <= int(found[-1]["seq"]):
                return (
                    found,
                    f"checkpoint line {number}: seq {checkpoint['seq']} does not follow seq {found[-1]['seq']}",
                )
            found.append(checkpoint)
        return found, ""

    def _signed(self, checkpoint: dict[str, Any]) -> bool:
        body = {k: checkpoint[k] for k in ("seq", "head_hash", "signed_at")}
        return self._kms.verify(
            int(checkpoint["key_version"]),
            canonical(body),
            bytes.fromhex(checkpoint["signature"]),
        )

    def _coverage(self, checkpoints: list[dict[str, Any]], count: int) -> str:
        last = int(checkpoints[-1]["seq"]) if checkpoints else 0
        if last > count:
            return f"log truncated: a signed checkpoint covers seq {last} but the log ends at seq {count}"
        if count and not checkpoints:
            return f"no signed checkpoint covers the {count} record(s) (checkpoints deleted or the log forged)"
        if count - last > self._every:
            return (
                f"records {last + 1}-{count} follow the last signed checkpoint (seq {last}), "
                f"more than the interval of {self._every} (checkpoints deleted or records appended without the key)"
            )
        return ""

    def _witnessed(
        self, heads: dict[int, str], count: int, witnesses: Sequence[Witness]
    ) -> str:
        for witness in witnesses:
            try:
                head = witness.read()
            except Exception as error:  # a store down or not ours to read
                return f"{witness.name}: cannot be read ({type(error).__name__}: {str(error)[:200]})"
            if head is None:
                if count:
                    return f"{witness.name}: missing (the log has {count} records)"
                continue
            if not self._signed(head):
                return f"{witness.name}: signature does not verify (forged or altered)"
            seq = int(head["seq"])
            if seq > count:
                return f"log truncated or wiped: {witness.name} holds seq {seq} but the log ends at seq {count}"
            if heads.get(seq) != head["head_hash"]:
                return f"{witness.name}: its signed head at seq {seq} is not among the log's checkpoints (checkpoints removed or replaced)"
        return ""

    def _head(self) -> tuple[int, str]:
        last = self._store.last_record()
        if last is None:
            return 0, GENESIS
        return int(last["seq"]), str(last["hash"])

    def _checkpoint(self, seq: int, head_hash: str) -> None:
        body = {
            "seq": seq,
            "head_hash": head_hash,
            "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        version, signature = self._kms.sign(canonical(body))
        checkpoint = {**body, "key_version": version, "signature": signature.hex()}
        self._store.append_checkpoint(canonical(checkpoint))
        for witness in self._witnesses:
            # The log and its checkpoints are the record; a witness that cannot
            # be written now is written at the next checkpoint (verify accepts an
            # older witnessed head that is still in the log).
            try:
                witness.record(checkpoint)
            except Exception as error:
                print(
                    f"audit witness {witness.name} not written: {type(error).__name__}",
                    file=sys.stderr,
                )

    def _last_checkpoint_seq(self) -> int:
        lines = self._checkpoint_lines()
        checkpoint = _parse_checkpoint(lines[-1]) if lines else None
        return int(checkpoint["seq"]) if checkpoint else 0

    def _checkpoint_lines(self) -> list[str]:
        return self._store.checkpoint_lines()


def _verify_chain(
    blocks: Iterable[list[bytes]], heads: dict[int, str]
) -> tuple[int, str]:
    """Check every line's hash, seq and link, and the signed heads on the way.

    Works on the stored bytes only (no JSON parsing): the hash field is the last
    75 bytes, seq and prev_hash the first fields. The loop is written out for
    speed (``audit verify`` over 1M records is benchmarked against plain SHA-256).

    Returns:
        The records checked and the first problem ("" when none).
    """
    expected, prev, number = 1, GENESIS.encode(), 0
    sha256, prefix, hash_field = hashlib.sha256, _PREFIX, _HASH
    start, cut = len(_PREFIX), -_SUFFIX_LENGTH
    marks = {seq: head.encode() for seq, head in heads.items()}
    for lines in blocks:
        for line in lines:
            number += 1
            link = line.find(_PREV, start, start + 24)
            stated = line[-66:-2]
            if (
                link < 0
                or line[start:link] != b"%d" % expected
                or line[link + 14 : link + 78] != prev
                or sha256(line[:cut] + b"}").hexdigest().encode() != stated
                or line[cut : cut + 9] != hash_field
                or not line.startswith(prefix)
            ):
                return expected - 1, _line_problem(line, number, expected, prev)
            if expected in marks and marks[expected] != stated:
                return (
                    expected,
                    f"record seq {expected}: differs from its signed checkpoint",
                )
            prev = stated
            expected += 1
    return expected - 1, ""


def _line_problem(line: bytes, number: int, expected: int, prev: bytes) -> str:
    """Why a line failed ``_verify_chain``'s test, in words."""
    start = len(_PREFIX)
    link = line.find(_PREV, start, start + 24)
    if (
        not line.startswith(_PREFIX)
        or link < 0
        or line[-_SUFFIX_LENGTH : -_SUFFIX_LENGTH + len(_HASH)] != _HASH
        or not line.endswith(b'"}')
    ):
        return f"line {number}: not an audit record"
    seq = line[start:link]
    if seq != str(expected).encode():
        return f"record at line {number}: seq {seq.decode(errors='replace')}, expected {expected} (a record was deleted or reordered)"
    link += len(_PREV)
    if line[link : link + 64] != prev:
        return f"record seq {expected}: prev_hash does not match the record before it (deleted or reordered)"
    return f"record seq {expected}: content does not match its hash (edited)"


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
