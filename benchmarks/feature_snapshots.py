"""Customer snapshot features: time and memory, chunked against unchunked.

The same synthetic primary tables (100k customers, ~8M transactions) go through
`build_customer_snapshots` with 10k-customer chunks and in one chunk, each in its
own process; printed: wall time, peak RSS, and the working memory above the
loaded inputs. Chunks bound the working memory; the inputs themselves stay
loaded (the pipeline reads whole tables).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from bankplatform.features.customer_features import build_customer_snapshots

CHANNELS = ["pos", "ecommerce", "atm", "salary", "direct_debit", "late_fee"]


def _tables(customers: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    tokens = np.array([f"cus_{i:032x}" for i in range(customers)])
    customer_table = pd.DataFrame(
        {
            "customer_token": tokens,
            "income": rng.normal(40_000, 9_000, customers),
            "employment_status": rng.choice(["employed", "retired"], customers),
            "tenure_months": rng.integers(0, 400, customers),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_token": [f"acc_{i:032x}" for i in range(customers * 2)],
            "customer_token": np.repeat(tokens, 2),
            "product": np.tile(["current_account", "credit_card"], customers),
            "credit_limit": np.tile([np.nan, 2_000.0], customers),
        }
    )
    rows = customers * 80
    transactions = pd.DataFrame(
        {
            "account_token": accounts["account_token"].to_numpy()[
                rng.integers(0, len(accounts), rows)
            ],
            "booked_at": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 730 * 86_400, rows), unit="s"),
            "amount": rng.normal(-40, 300, rows).round(2),
            "channel": rng.choice(CHANNELS, rows),
            "mcc": rng.choice(["5411", "7995", "5812"], rows),
            "balance_after": rng.normal(1_000, 2_000, rows).round(2),
        }
    )
    return customer_table, accounts, transactions


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(customers: int, chunk: int) -> dict[str, float]:
    tables = _tables(customers)
    loaded = _peak_mib()
    started = time.perf_counter()
    snapshots = build_customer_snapshots(*tables, chunk_customers=chunk)
    return {
        "seconds": time.perf_counter() - started,
        "loaded_mib": loaded,
        "peak_mib": _peak_mib(),
        "rows": float(len(snapshots)),
        "transactions": float(len(tables[2])),
    }


def main(quick: bool = False) -> None:
    """Run each chunk size in a fresh process and compare."""
    customers = 10_000 if quick else 100_000
    results = {}
    for chunk in (customers // 10, customers):
        done = subprocess.run(
            [sys.executable, __file__, str(customers), str(chunk)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[chunk] = json.loads(done.stdout.strip().splitlines()[-1])
    small, whole = results[customers // 10], results[customers]
    print(
        f"  {customers:,} customers, {whole['transactions']:,.0f} transactions -> {whole['rows']:,.0f} snapshot rows"
    )
    for label, chunk, found in (
        ("chunks of", customers // 10, small),
        ("one chunk of", customers, whole),
    ):
        working = found["peak_mib"] - found["loaded_mib"]
        print(
            f"  {label} {chunk:,}: {found['seconds']:.1f} s, peak RSS {found['peak_mib']:,.0f} MiB "
            f"(inputs {found['loaded_mib']:,.0f} MiB, working {working:,.0f} MiB)"
        )
    ratio = (whole["peak_mib"] - whole["loaded_mib"]) / max(
        small["peak_mib"] - small["loaded_mib"], 1
    )
    print(
        f"  working memory, one chunk / chunked: {ratio:.1f}x; time chunked / one chunk: {small['seconds'] / whole['seconds']:.2f}x"
    )


if __name__ == "__main__":
    print(json.dumps(_measure(int(sys.argv[1]), int(sys.argv[2]))))
