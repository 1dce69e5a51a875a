"""Ingestion at 100k customers against the floor: a bare pandas read + write.

The floor reads every raw table (plain parquet) with `pd.read_parquet` and writes it
back with `DataFrame.to_parquet`, nothing else; the ingestion run reads the same
tables envelope-encrypted, as the catalog does, applies the data contracts, writes
accepted rows and quarantine encrypted, pseudonymises into the encrypted primary
layer and writes the report, through Kedro's SequentialRunner. Data keys and
pseudonymous tokens come from the key service (started in a throw-away workspace),
as in the product. Target: <= 3x.
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

from bankplatform.contracts.raw import RAW_TABLES
from bankplatform.datasets import (
    EncryptedParquetDataset,
    PseudonymiserDataset,
    RawTableDataset,
)
from bankplatform.keyservice.local_kms import LocalKeyring, load_master_key
from bankplatform.pipelines.ingestion import create_pipeline
from bankplatform.project import env_config_loader
from bankplatform.security import runtime
from bankplatform.security.envelope import EncryptingWriter
from bankplatform.security.runtime import acting_in_run
from bankplatform.synthetic import GeneratorConfig, generate_raw_extract
from key_service import _workspace

REPEATS = 3


def _floor(raw: Path, out: Path) -> float:
    started = time.perf_counter()
    for table in RAW_TABLES:
        pd.read_parquet(raw / f"{table}.parquet").to_parquet(out / f"{table}.parquet")
    return time.perf_counter() - started


def _encrypt_extract(raw: Path, keyring: LocalKeyring) -> None:
    for table in RAW_TABLES:
        with EncryptingWriter(
            raw / f"{table}.parquet.enc", f"{table}_raw", keyring
        ) as sink:
            sink.write((raw / f"{table}.parquet").read_bytes())


def _catalog(raw: Path, out: Path) -> DataCatalog:
    datasets: dict[str, object] = {
        "params:ingestion": MemoryDataset({"as_of": "2026-12-31"}),
        "pseudonymiser": PseudonymiserDataset(),
    }
    for table in RAW_TABLES:
        datasets[f"{table}_raw"] = RawTableDataset(
            filepath=str(raw / f"{table}.parquet.enc"),
            table=table,
            encrypted=True,
        )
        for layer, folder in (
            ("accepted", out),
            ("quarantine", out / "quarantine"),
            ("primary", out / "primary"),
        ):
            datasets[f"{table}_{layer}"] = EncryptedParquetDataset(
                filepath=str(folder / f"{table}.parquet.enc"),
                dataset=f"{table}_{layer}",
            )
    datasets["ingestion_report"] = JSONDataset(
        filepath=str(out / "ingestion_report.json")
    )
    return DataCatalog(datasets=datasets)  # type: ignore[arg-type]


def _ingest(raw: Path, out: Path) -> float:
    catalog = _catalog(raw, out)
    started = time.perf_counter()
    with acting_in_run("ingestion"):
        SequentialRunner().run(create_pipeline(), catalog)
    return time.perf_counter() - started


def main(quick: bool = False) -> None:
    """Generate the extract once, then time floor and ingestion alternately."""
    customers = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate_raw_extract(GeneratorConfig(customers=customers, seed=1), raw)
        root = _workspace(Path(tmp))
        keys = root / ".bankplatform"
        keyring = LocalKeyring(
            keys / "keyring.json", load_master_key(keys / "master.key")
        )
        _encrypt_extract(raw, keyring)  # what the source system delivers; not timed
        security = runtime.open_security(env_config_loader(root, "test"), root, "test")
        runtime.activate(security)
        security.starter()  # starts the key service; not timed
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
