"""The key and audit service: what the trust boundary costs.

1. An encrypted 1M-row table saved and loaded through the service (one data-key
   round trip per file over the Unix socket) against the same dataset with the
   keyring in-process, and against plain parquet. Target: service <= 1.3x plain.
2. Token verification: requests that each verify a bearer token in the service
   (``whoami``), against ``TokenService.verify`` in-process.
3. Audit appends through the service (fsync per record) against ``AuditLog.append``
   in-process.

The service is the real one (``python -m bankplatform.keyservice``), started on
demand by the client in a throw-away workspace. Medians of repeated runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from bankplatform.datasets import EncryptedParquetDataset
from bankplatform.keyservice.audit_log import AuditLog
from bankplatform.keyservice.local_kms import (
    LocalKeyring,
    create_master_key_file,
    load_master_key,
)
from bankplatform.keyservice.tokens import TokenService
from bankplatform.project import env_config_loader
from bankplatform.security import runtime
from bankplatform.security.runtime import acting_in_run
from bankplatform.security.settings import load_access_policy
from encrypted_parquet import _TEXT, _table, _timed

REPEATS = 7
REPO = Path(__file__).resolve().parents[1]


def _workspace(folder: Path) -> Path:
    root = folder / "ws"
    root.mkdir()
    for name in ("pyproject.toml", ".kedro.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(
        REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local")
    )
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    keys = root / ".bankplatform"
    create_master_key_file(keys / "master.key")
    LocalKeyring(
        keys / "keyring.json", load_master_key(keys / "master.key")
    ).initialise()
    return root


def _rate(action: object, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        action()  # type: ignore[operator]
    return count / (time.perf_counter() - started)


def main(quick: bool = False) -> None:
    """Print the three comparisons."""
    rows, calls = (100_000, 200) if quick else (1_000_000, 2_000)
    frame = _table(rows)
    os.environ.pop("BANKPLATFORM_TOKEN", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = _workspace(Path(tmp))
        security = runtime.open_security(env_config_loader(root, "test"), root, "test")
        runtime.activate(security)
        security.starter()  # starts the service; not timed
        keyring = LocalKeyring(
            root / ".bankplatform" / "keyring.json",
            load_master_key(root / ".bankplatform" / "master.key"),
        )
        path = root / "data" / "05_model_input" / "training_set.parquet.enc"
        through = EncryptedParquetDataset(filepath=str(path), dataset="training_set")
        inside = EncryptedParquetDataset(
            filepath=str(path), dataset="training_set", key_service=keyring
        )
        plain = root / "plain.parquet"
        times: dict[str, list[float]] = {k: [] for k in ("plain", "inside", "service")}
        with acting_in_run(
            "features"
        ):  # training_set is the features service's to write
            for _ in range(REPEATS):
                times["plain"].append(
                    _timed(
                        lambda: frame.to_parquet(plain, compression="zstd", index=False)
                    )
                    + _timed(
                        lambda: pq.read_table(plain).to_pandas(types_mapper=_TEXT.get)
                    )
                )
                times["inside"].append(
                    _timed(lambda: inside.save(frame)) + _timed(inside.load)
                )
                times["service"].append(
                    _timed(lambda: through.save(frame)) + _timed(through.load)
                )
        median = {k: statistics.median(v) for k, v in times.items()}
        print(f"  {rows:,} rows, save+load, median of {REPEATS}:")
        print(
            f"    plain {median['plain']:.3f} s, keyring in-process {median['inside']:.3f} s, "
            f"through the key service {median['service']:.3f} s"
        )
        print(
            f"    ratio service / plain: {median['service'] / median['plain']:.2f}x (target <= 1.3x); "
            f"service / in-process: {median['service'] / median['inside']:.2f}x"
        )
        # Token verification: every request to the service verifies its token.
        policy = load_access_policy(env_config_loader(root, "test"))
        tokens = TokenService(
            keyring,
            policy,
            root / ".bankplatform" / "revoked_tokens.json",
            "bankplatform",
            "bankplatform",
        )
        token, _ = tokens.issue("audrey.auditor", ["auditor"], timedelta(minutes=30))
        local_verify = _rate(lambda: tokens.verify(token), calls)
        os.environ["BANKPLATFORM_TOKEN"] = token
        service = security.service()
        try:
            remote_verify = _rate(lambda: service.call("GET", "/v1/whoami"), calls)
            # Audit appends through the service, actor from the token.
            log = security.audit_log()
            remote_append = _rate(
                lambda: log.append("bench.append", "bench:1", "allowed"), calls // 4
            )
        finally:
            os.environ.pop("BANKPLATFORM_TOKEN", None)
        inside_log = AuditLog(Path(tmp) / "inside" / "audit.jsonl", keyring)
        local_append = _rate(
            lambda: inside_log.append("x", "bench.append", "bench:1", "allowed"),
            calls // 4,
        )
        print(
            f"  token verification: {remote_verify:,.0f}/s through the service "
            f"(one authenticated request each), {local_verify:,.0f}/s in-process: "
            f"{local_verify / remote_verify:.1f}x"
        )
        print(
            f"  audit append (fsync each): {remote_append:,.0f}/s through the service, "
            f"{local_append:,.0f}/s in-process: {local_append / remote_append:.1f}x"
        )
