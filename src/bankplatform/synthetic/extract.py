"""Write the synthetic raw extract: five parquet tables, chunk by chunk.

Memory stays bounded at any size because each chunk of customers is drawn,
damaged and appended as one row group, then dropped. Every chunk has its own
random stream derived from (seed, chunk number), so the same seed and size
give identical tables (byte-identical files when not encrypted). With a key
service the tables land envelope-encrypted (``<table>.parquet.enc``, bound to
the catalog entry ``<table>_raw``), as the raw PII layer must be at rest.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bankplatform.contracts.raw import RAW_SCHEMAS, RAW_TABLES
from bankplatform.synthetic.activity import draw_accounts, draw_transactions
from bankplatform.synthetic.config import GeneratorConfig
from bankplatform.synthetic.defects import plant_defects
from bankplatform.synthetic.lending import draw_applications, plan_applications
from bankplatform.synthetic.population import FakerPools, draw_customers

SUMMARY_FILE = "_extract.json"


@dataclass(frozen=True)
class ExtractSummary:
    """What one generation wrote.

    Attributes:
        config: The settings it ran with.
        rows: Rows written per table (defective rows included).
        defects: Rows damaged per table and defect kind.
    """

    config: GeneratorConfig
    rows: dict[str, int]
    defects: dict[str, dict[str, int]]

    def to_json(self) -> str:
        """Serialise for ``_extract.json`` beside the tables."""
        return json.dumps(
            {
                "config": self.config.model_dump(mode="json"),
                "rows": self.rows,
                "defects": self.defects,
            },
            indent=2,
            sort_keys=True,
        )


# Opens a file for writing, encrypted for a dataset: (path, dataset) -> stream.
Sealer = Callable[[Path, str], AbstractContextManager[io.RawIOBase]]


def raw_file_name(table: str, *, encrypted: bool) -> str:
    """The file name of a raw table: ``<table>.parquet`` or ``<table>.parquet.enc``."""
    return f"{table}.parquet.enc" if encrypted else f"{table}.parquet"


def generate_raw_extract(
    config: GeneratorConfig,
    output_dir: Path,
    *,
    progress: bool = False,
    seal: Sealer | None = None,
) -> ExtractSummary:
    """Generate the raw extract into ``output_dir``.

    Files are written under temporary names and renamed only when all five
    are complete, so an interrupted run leaves any earlier extract intact.

    Args:
        config: Size, seed and planted effects.
        output_dir: Folder for the five tables and ``_extract.json``.
        progress: Show a progress bar over customer chunks.
        seal: Opens a table's file encrypted for its dataset (``<table>.parquet.enc``;
            ``security.envelope.sealing_with`` a key service); plain files without.

    Returns:
        Row and defect counts of what was written.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    pools = FakerPools.build(config.seed)
    rows = dict.fromkeys(RAW_TABLES, 0)
    defects: dict[str, dict[str, int]] = {table: {} for table in RAW_TABLES}
    encrypted = seal is not None
    partial = {table: output_dir / f".{table}.parquet.partial" for table in RAW_TABLES}
    with ExitStack() as stack:
        sinks = {
            table: (
                stack.enter_context(seal(partial[table], f"{table}_raw"))
                if seal is not None
                else partial[table]
            )
            for table in RAW_TABLES
        }
        writers = {
            table: stack.enter_context(
                pq.ParquetWriter(sinks[table], RAW_SCHEMAS[table], compression="zstd")
            )
            for table in RAW_TABLES
        }
        for tables in tqdm(
            _chunks(config, pools),
            total=_chunk_count(config),
            disable=not progress,
            unit="chunk",
        ):
            for table, (arrow_table, planted) in tables.items():
                writers[table].write_table(arrow_table)
                rows[table] += arrow_table.num_rows
                for kind, count in planted.items():
                    defects[table][kind] = defects[table].get(kind, 0) + count
    for table in RAW_TABLES:
        os.replace(
            partial[table], output_dir / raw_file_name(table, encrypted=encrypted)
        )
    summary = ExtractSummary(config=config, rows=rows, defects=defects)
    (output_dir / SUMMARY_FILE).write_text(summary.to_json() + "\n")
    return summary


def core_banking_accounts(config: GeneratorConfig) -> pd.DataFrame:
    """The accounts an extract's core banking holds (``account_id``, ``product``,
    ``credit_limit``), drawn again as the extract drew them, without defects:
    what the booking edge books new activity on (it never reads the extract)."""
    pools = FakerPools.build(config.seed)
    frames, next_account = [], 1
    for chunk in range(_chunk_count(config)):
        rng, _, customers, traits = _chunk_people(config, pools, chunk)
        accounts, _ = draw_accounts(
            rng, next_account, customers["customer_id"].to_numpy(), traits, config
        )
        next_account += len(accounts)
        frames.append(accounts[["account_id", "product", "credit_limit"]])
    return pd.concat(frames, ignore_index=True)


def _chunk_people(
    config: GeneratorConfig, pools: FakerPools, chunk: int
) -> tuple[np.random.Generator, Any, pd.DataFrame, Any]:
    """A chunk's random stream (from seed and chunk number), application plan and
    customers: where every table of the chunk starts drawing."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, chunk]))
    first = chunk * config.chunk_customers + 1
    count = min(config.chunk_customers, config.customers - first + 1)
    plan = plan_applications(rng, count, config)
    customers, traits = draw_customers(
        rng, first, count, pools, config, plan.drift_position
    )
    return rng, plan, customers, traits


def _chunk_count(config: GeneratorConfig) -> int:
    return -(-config.customers // config.chunk_customers)


def _chunks(
    config: GeneratorConfig, pools: FakerPools
) -> Iterator[dict[str, tuple[pa.Table, dict[str, int]]]]:
    next_account = next_transaction = next_application = 1
    for chunk in range(_chunk_count(config)):
        rng, plan, customers, traits = _chunk_people(config, pools, chunk)
        ids = customers["customer_id"].to_numpy()
        accounts, book = draw_accounts(rng, next_account, ids, traits, config)
        transactions = draw_transactions(
            rng, next_transaction, traits, book, pools, config
        )
        applications, outcomes = draw_applications(
            rng, next_application, ids, plan, traits, config
        )
        next_account += len(accounts)
        next_transaction += len(transactions)
        next_application += len(applications)
        clean = {
            "customers": customers,
            "accounts": accounts,
            "transactions": transactions,
            "loan_applications": applications,
            "loan_outcomes": outcomes,
        }
        yield {
            table: _to_arrow(
                table, *plant_defects(rng, table, frame, config.dirty_rate, chunk)
            )
            for table, frame in clean.items()
        }


def _to_arrow(
    table: str, frame: object, planted: dict[str, int]
) -> tuple[pa.Table, dict[str, int]]:
    arrow_table = pa.Table.from_pandas(
        frame, schema=RAW_SCHEMAS[table], preserve_index=False
    )
    return arrow_table.replace_schema_metadata(None), planted
