"""Encrypted parquet against plain parquet on the same 1M-row table.

Both write with zstd and read back into pandas with Arrow-backed strings (the
plain side with the same Arrow-to-pandas mapping; a bare `pd.read_parquet` builds
Python strings, 3-4x slower here, and would flatter the encrypted side). The
encrypted dataset adds the
envelope (a fresh data key wrapped by the keyring, AES-256-GCM in 1 MiB segments)
and its atomic rename. Saves and loads alternate, medians of 9. Target: <= 1.3x.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bankplatform.datasets import EncryptedParquetDataset
from bankplatform.keyservice.local_kms import LocalKeyring

REPEATS = 9
_TEXT = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
}


def _table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "transaction_id": pd.array(
                [f"T{i:011d}" for i in range(rows)], dtype="string[pyarrow]"
            ),
            "account_token": pd.array(
                [f"acc_{i:032x}" for i in rng.integers(0, rows // 40, rows)],
                dtype="string[pyarrow]",
            ),
            "booked_at": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 3 * 365 * 86_400, rows), unit="s"),
            "amount": rng.normal(0, 150, rows).round(2),
            "channel": pd.array(
                rng.choice(["pos", "ecommerce", "atm", "salary", "direct_debit"], rows),
                dtype="string[pyarrow]",
            ),
            "balance_after": rng.normal(1_500, 2_000, rows).round(2),
        }
    )


def _timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Time plain and encrypted save and load alternately on the same frame."""
    rows = 100_000 if quick else 1_000_000
    frame = _table(rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keyring = LocalKeyring(folder / "keyring.json", os.urandom(32))
        keyring.initialise()
        plain_path = folder / "plain.parquet"
        encrypted = EncryptedParquetDataset(
            filepath=str(folder / "sealed.parquet.enc"),
            dataset="transactions_primary",
            key_service=keyring,
        )
        times: dict[str, list[float]] = {k: [] for k in ("ps", "es", "pl", "el")}
        for _ in range(REPEATS):
            times["ps"].append(
                _timed(
                    lambda: frame.to_parquet(
                        plain_path, compression="zstd", index=False
                    )
                )
            )
            times["es"].append(_timed(lambda: encrypted.save(frame)))
            times["pl"].append(
                _timed(
                    lambda: pq.read_table(plain_path).to_pandas(types_mapper=_TEXT.get)
                )
            )
            times["el"].append(_timed(encrypted.load))
        size = plain_path.stat().st_size
    median = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"  {rows:,} rows x {frame.shape[1]} columns, {size / 2**20:.1f} MiB parquet, median of {REPEATS}"
    )
    print(
        f"  save: plain {median['ps']:.3f} s, encrypted {median['es']:.3f} s: {median['es'] / median['ps']:.2f}x"
    )
    print(
        f"  load: plain {median['pl']:.3f} s, encrypted {median['el']:.3f} s: {median['el'] / median['pl']:.2f}x"
    )
    both = (median["es"] + median["el"]) / (median["ps"] + median["pl"])
    print(f"  ratio save+load encrypted / plain: {both:.2f}x (target <= 1.3x)")
