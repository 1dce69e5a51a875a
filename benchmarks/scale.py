"""A million customers on one machine: ingestion, features and training in bounded memory.

For each size (100k and 1M customers; `--quick`: 2k and 20k) a fresh workspace
generates its extract, then runs `kedro run --pipelines ingestion`, `features`
and `training`, each in its own process: wall time and peak RSS of each.
Baseline, measured in the same run on the same files: a bare pyarrow read of the
tables the features pipeline reads (the encrypted primary customers, accounts and
transactions, decrypted whole and read with `pq.read_table`), in its own process.
Printed: time and peak RSS per step and size, features / bare read at each size,
and 1M / 100k for time (linear growth = about the ratio of transactions).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = ("ingestion", "features", "training")


def _workspace(folder: Path, customers: int) -> dict[str, float]:
    for name in ("pyproject.toml", ".kedro.yml", ".telemetry", "requirements.lock"):
        shutil.copy(REPO / name, folder / name)
    shutil.copytree(
        REPO / "conf", folder / "conf", ignore=shutil.ignore_patterns("local")
    )
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    _run(folder, ["bankplatform", "keys", "init"])
    generated = _run(
        folder, ["bankplatform", "data", "generate", "--customers", str(customers)]
    )
    summary = json.loads((folder / "data/01_raw/_extract.json").read_text())
    return {"generate_s": generated[0], "transactions": summary["rows"]["transactions"]}


def _run(
    folder: Path, args: list[str], environment: dict[str, str] | None = None
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command in its own process."""
    env = {
        **(environment or os.environ),
        "PYTHONOPTIMIZE": "1",
        "KEDRO_DISABLE_TELEMETRY": "true",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(BIN / args[0]), *args[1:]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, float(done.stdout.strip().splitlines()[-1])


def _bare_read() -> None:
    """Decrypt and read the features pipeline's three inputs whole (the floor)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bankplatform.security.envelope import decrypt
    from bankplatform.security.runtime import active_key_service
    from bankplatform.workspace import open_workspace

    open_workspace(None)
    keys = active_key_service()
    tables = []
    for table in ("customers", "accounts", "transactions"):
        path = Path("data/03_primary") / f"{table}.parquet.enc"
        plain = decrypt(path.read_bytes(), f"{table}_primary", keys)
        tables.append(pq.read_table(pa.BufferReader(plain)))
        del plain
    print(sum(t.num_rows for t in tables), file=sys.stderr)


def _size(customers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        found = _workspace(folder, customers)
        for step in STEPS:
            seconds, peak = _run(folder, ["kedro", "run", "--pipelines", step])
            found[f"{step}_s"], found[f"{step}_mib"] = seconds, peak
        seconds, peak = _run(folder, ["python", __file__, "--bare-read"])
        found["bare_s"], found["bare_mib"] = seconds, peak
        return found


def main(quick: bool = False) -> None:
    """Run both sizes and print the ratios."""
    sizes = (2_000, 20_000) if quick else (100_000, 1_000_000)
    results = {size: _size(size) for size in sizes}
    for size, found in results.items():
        print(
            f"  {size:,} customers ({found['transactions']:,.0f} transactions; "
            f"generated in {found['generate_s']:.0f} s)"
        )
        for step in (*STEPS, "bare"):
            label = "bare read of the features' inputs" if step == "bare" else step
            print(
                f"    {label:<36}{found[f'{step}_s']:>8.1f} s{found[f'{step}_mib']:>10,.0f} MiB peak RSS"
            )
        print(
            f"    features / bare read: time {found['features_s'] / found['bare_s']:.1f}x, "
            f"peak RSS {found['features_mib'] / found['bare_mib']:.2f}x"
        )
    small, large = (results[s] for s in sizes)
    growth = large["transactions"] / small["transactions"]
    print(f"  {sizes[1]:,} / {sizes[0]:,}: transactions {growth:.1f}x")
    for step in STEPS:
        print(
            f"    {step:<12} time {large[f'{step}_s'] / small[f'{step}_s']:.1f}x, "
            f"peak RSS {large[f'{step}_mib'] / small[f'{step}_mib']:.1f}x "
            f"({large[f'{step}_mib'] / 1024:.2f} GiB at {sizes[1]:,}; target <= 8 GiB)"
        )


def _measure(command: list[str]) -> None:
    """Run ``command`` and print its peak RSS in MiB (the largest child's)."""
    import resource

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        _measure(sys.argv[2:])
    elif sys.argv[1:2] == ["--bare-read"]:
        _bare_read()
    else:
        main(quick="--quick" in sys.argv)
