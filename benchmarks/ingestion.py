"""Ingestion at 100k customers against the floor: a bare pandas read + write.

The floor reads every raw table with `pd.read_parquet` and writes it back with
`DataFrame.to_parquet`, nothing else; the ingestion run reads the same files through
the catalog's datasets, applies the data contracts and writes accepted rows,
quarantine and report, through Kedro's SequentialRunner. Target: <= 3x the floor.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from bankplatform.contracts.raw import RAW_TABLES
from bankplatform.datasets import RawTableDataset
from bankplatform.pipelines.ingestion import create_pipeline
from bankplatform.synthetic import GeneratorConfig, generate_raw_extract

REPEATS = 3


def _floor(raw: Path, out: Path) -> float:
    started = time.perf_counter()
    for table in RAW_TABLES:
        pd.read_parquet(raw / f"{table}.parquet").to_parquet(out / f"{table}.parquet")
    return time.perf_counter() - started


def _catalog(raw: Path, out: Path) -> DataCatalog:
    datasets: dict[str, object] = {
        "params:ingestion": MemoryDataset({"as_of": "2026-12-31"})
    }
    for table in RAW_TABLES:
        datasets[f"{table}_raw"] = RawTableDataset(
            filepath=str(raw / f"{table}.parquet"), table=table
        )
        datasets[f"{table}_accepted"] = ParquetDataset(
            filepath=str(out / f"{table}.parquet")
        )
        datasets[f"{table}_quarantine"] = ParquetDataset(
            filepath=str(out / "quarantine" / f"{table}.parquet")
        )
    datasets["ingestion_report"] = JSONDataset(
        filepath=str(out / "ingestion_report.json")
    )
    return DataCatalog(datasets=datasets)  # type: ignore[arg-type]


def _ingest(raw: Path, out: Path) -> float:
    catalog = _catalog(raw, out)
    started = time.perf_counter()
    SequentialRunner().run(create_pipeline(), catalog)
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Generate the extract once, then time floor and ingestion alternately."""
    customers = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate_raw_extract(GeneratorConfig(customers=customers, seed=1), raw)
        rows = sum(
            len(pd.read_parquet(raw / f"{t}.parquet", columns=[]).index)
            for t in RAW_TABLES
        )
        floors, runs = [], []
        for attempt in range(REPEATS):
            floor_out = Path(tmp) / f"floor{attempt}"
            run_out = Path(tmp) / f"run{attempt}"
            floor_out.mkdir()
            floors.append(_floor(raw, floor_out))
            runs.append(_ingest(raw, run_out))
    floor, run = statistics.median(floors), statistics.median(runs)
    print(f"  {customers:,} customers, {rows:,} raw rows, median of {REPEATS}")
    print(f"  floor (pandas read + write): {floor:6.2f} s")
    print(f"  ingestion pipeline:          {run:6.2f} s")
    print(f"  ratio ingestion / floor: {run / floor:.2f}x (target <= 3x)")
