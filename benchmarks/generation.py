"""Synthetic extract generation: rate and peak memory at 100k and 1M customers.

Each size runs in its own process so its peak RSS is its own. Bounded memory
means the 1M run peaks near the 100k run (ratio close to 1), while time grows
linearly (ratio close to 10).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, sys
from pathlib import Path
from bankplatform.synthetic import GeneratorConfig, generate_raw_extract
summary = generate_raw_extract(GeneratorConfig(customers=int(sys.argv[1]), seed=1), Path(sys.argv[2]))
print(json.dumps(summary.rows))
"""


def _generate(customers: int, folder: Path) -> tuple[float, float, dict[str, int]]:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(customers), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"generation of {customers} customers failed")
    return seconds, usage.ru_maxrss / 1024, json.loads(stdout)


def main(quick: bool = False) -> None:
    """Generate at two sizes and print rate, peak RSS and their ratios."""
    sizes = (10_000, 100_000) if quick else (100_000, 1_000_000)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for customers in sizes:
            seconds, peak_mib, rows = _generate(customers, Path(tmp) / str(customers))
            total = sum(rows.values())
            results[customers] = (seconds, peak_mib)
            print(
                f"  {customers:>9,} customers: {total:>12,} rows in {seconds:6.1f} s "
                f"({total / seconds:>10,.0f} rows/s), {rows['transactions']:,} transactions, "
                f"peak RSS {peak_mib:,.0f} MiB"
            )
    small, large = sizes
    print(
        f"  ratio {large // small}x customers: time x{results[large][0] / results[small][0]:.2f}, "
        f"peak RSS x{results[large][1] / results[small][1]:.2f} (bounded memory: close to 1)"
    )
