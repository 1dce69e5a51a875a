"""Audit log: append rate (1 and 4 processes) and `verify` over 1M records.

Appends are durable (fsync per record under a file lock), so their rate is the
disk's fsync rate. `verify` hashes every record's stored bytes (no JSON parsing), checks
the chain and the signed checkpoints; its floor is a plain sha256 over the file.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bankplatform.keyservice.audit_log import (
    GENESIS,
    AuditLog,
    canonical,
    encode_record,
)
from bankplatform.keyservice.local_kms import LocalKeyring

REPEATS = 3


def _append(folder: str, master: bytes, worker: int, count: int) -> None:
    audit = AuditLog(
        Path(folder) / "audit.jsonl",
        LocalKeyring(Path(folder) / "keyring.json", master),
    )
    for number in range(count):
        audit.append(f"worker-{worker}", "bench.append", f"item:{number}", "allowed")
    audit.sign_head()


def _append_rate(
    folder: Path, master: bytes, processes: int, per_process: int
) -> float:
    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    workers = [
        context.Process(target=_append, args=(str(folder), master, w, per_process))
        for w in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return processes * per_process / (time.perf_counter() - started)


def _write_chain(path: Path, ring: LocalKeyring, count: int) -> None:
    """A valid 1M-record log written in one go (appending with fsync would take hours)."""
    prev, now = GENESIS, datetime.now(UTC).isoformat(timespec="microseconds")
    checkpoints = []
    with path.open("wb") as stream:
        for seq in range(1, count + 1):
            record = {
                "seq": seq,
                "prev_hash": prev,
                "time": now,
                "actor": "svc-ingestion",
                "on_behalf_of": "ada",
                "action": "dataset.load",
                "resource": f"dataset:customers_accepted/{seq}",
                "outcome": "allowed",
                "details": {"rows": seq % 1000},
            }
            stream.write(encode_record(record) + b"\n")
            prev = record["hash"]
            if seq % 100 == 0 or seq == 1:
                body = {"seq": seq, "head_hash": prev, "signed_at": now}
                version, signature = ring.sign(canonical(body))
                checkpoints.append(
                    canonical(
                        {**body, "key_version": version, "signature": signature.hex()}
                    )
                )
    path.with_name(path.name + ".checkpoints").write_bytes(
        b"\n".join(checkpoints) + b"\n"
    )


def _sha256_file(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Print append rates and the verify / sha256 ratio."""
    per_process, records = (100, 50_000) if quick else (500, 1_000_000)
    master = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ring = LocalKeyring(folder / "keyring.json", master)
        ring.initialise()
        (folder / "one").mkdir()
        (folder / "four").mkdir()
        (folder / "one" / "keyring.json").write_bytes(
            (folder / "keyring.json").read_bytes()
        )
        (folder / "four" / "keyring.json").write_bytes(
            (folder / "keyring.json").read_bytes()
        )
        single = _append_rate(folder / "one", master, 1, 4 * per_process)
        multi = _append_rate(folder / "four", master, 4, per_process)
        print(
            f"  append, 1 process:   {single:8,.0f} records/s ({4 * per_process} records, fsync each)"
        )
        print(
            f"  append, 4 processes: {multi:8,.0f} records/s ({4 * per_process} records, one lock)"
        )
        log = folder / "big" / "audit.jsonl"
        log.parent.mkdir()
        _write_chain(log, ring, records)
        audit = AuditLog(log, ring)
        verify_times, floor_times = [], []
        for _ in range(REPEATS):
            floor_times.append(_sha256_file(log))
            started = time.perf_counter()
            verdict = audit.verify()
            verify_times.append(time.perf_counter() - started)
        assert verdict.ok, verdict.problem  # noqa: S101 - a benchmark of a broken log means nothing
        size = log.stat().st_size / 2**20
    verify, floor = statistics.median(verify_times), statistics.median(floor_times)
    print(
        f"  verify {records:,} records ({size:,.0f} MiB, {verdict.checkpoints:,} checkpoints): {verify:6.2f} s"
    )
    print(
        f"  floor, sha256 over the file: {floor:6.2f} s; ratio verify / floor: {verify / floor:.1f}x"
    )
