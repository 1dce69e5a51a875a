"""Ingestion on a generated extract: every planted defect is held with its reason,
and nothing is dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bankplatform.contracts.raw import RAW_TABLES
from bankplatform.synthetic import ExtractSummary
from bankplatform.synthetic.defects import ORPHAN_IDS, TABLE_DEFECTS
from tests.conftest import read_encrypted, read_raw

pytestmark = [
    pytest.mark.data,
    pytest.mark.integration,
]


def _layer(root: Path, table: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    raw = read_raw(root / "data" / "01_raw", table)
    accepted = read_encrypted(
        root / "data" / "02_intermediate" / f"{table}.parquet.enc", f"{table}_accepted"
    )
    held = read_encrypted(
        root / "data" / "02_intermediate" / "quarantine" / f"{table}.parquet.enc",
        f"{table}_quarantine",
    )
    return raw, accepted, held


@pytest.mark.parametrize("table", RAW_TABLES)
def test_accepted_plus_quarantined_equals_input(
    ingested_workspace: Path, table: str
) -> None:
    raw, accepted, held = _layer(ingested_workspace, table)
    assert len(accepted) + len(held) == len(raw)
    assert sorted(held["_source_row"]) == sorted(set(held["_source_row"]))
    report = json.loads(
        (ingested_workspace / "data/08_reporting/ingestion_report.json").read_text()
    )
    counts = report["tables"][table]
    assert (counts["input"], counts["accepted"], counts["quarantined"]) == (
        len(raw),
        len(accepted),
        len(held),
    )


@pytest.mark.parametrize("table", RAW_TABLES)
def test_each_planted_defect_kind_is_quarantined_with_its_reason(
    ingested_workspace: Path, small_extract: tuple[Path, ExtractSummary], table: str
) -> None:
    _, summary = small_extract
    _, _, held = _layer(ingested_workspace, table)
    rules = held["_reason"].str.findall(r"(\w+)\(").explode().value_counts()
    planted = summary.defects[table]
    for kind in (
        "missing_key",
        "impossible_date",
        "unknown_category",
        "negative_amount",
        "non_numeric_amount",
    ):
        if kind in planted:
            assert rules.get(kind, 0) == planted[kind], kind
    # Both copies of a planted duplicate are held.
    assert rules.get("duplicate_key", 0) == 2 * planted["duplicate_key"]


@pytest.mark.parametrize(
    "table", [t for t, spec in TABLE_DEFECTS.items() if spec.foreign_key]
)
def test_planted_orphans_are_quarantined_as_orphans(
    ingested_workspace: Path, table: str
) -> None:
    raw, accepted, held = _layer(ingested_workspace, table)
    column = TABLE_DEFECTS[table].foreign_key
    assert column is not None
    orphan = raw[column].str.startswith(ORPHAN_IDS[column], na=False)
    assert orphan.sum() >= 1
    assert not accepted[column].str.startswith(ORPHAN_IDS[column]).any()
    held_orphans = held[held[column].str.startswith(ORPHAN_IDS[column], na=False)]
    assert len(held_orphans) == orphan.sum()
    assert (
        held_orphans["_reason"].str.contains(f"orphan_foreign_key\\({column}\\)").all()
    )


def test_no_accepted_row_references_a_held_parent(ingested_workspace: Path) -> None:
    _, customers, _ = _layer(ingested_workspace, "customers")
    _, accounts, _ = _layer(ingested_workspace, "accounts")
    _, transactions, _ = _layer(ingested_workspace, "transactions")
    assert accounts["customer_id"].isin(customers["customer_id"]).all()
    assert transactions["account_id"].isin(accounts["account_id"]).all()
    assert transactions["amount"].dtype == "float64"
    assert customers["customer_id"].is_unique
