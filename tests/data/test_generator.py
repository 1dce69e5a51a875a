"""The synthetic extract itself: determinism, layout, PII shapes and planted knobs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bankplatform.contracts.raw import RAW_SCHEMAS, RAW_TABLES
from bankplatform.security.envelope import decrypt, sealing_with
from bankplatform.synthetic import ExtractSummary, GeneratorConfig, generate_raw_extract
from bankplatform.synthetic.extract import SUMMARY_FILE
from tests.conftest import read_raw, shared_keyring

pytestmark = pytest.mark.data


def _digests(folder: Path) -> dict[str, str]:
    return {
        table: hashlib.sha256((folder / f"{table}.parquet").read_bytes()).hexdigest()
        for table in RAW_TABLES
    }


def test_same_seed_and_size_give_byte_identical_files(tmp_path: Path) -> None:
    config = GeneratorConfig(customers=300, seed=11, chunk_customers=128)
    generate_raw_extract(config, tmp_path / "a")
    generate_raw_extract(config, tmp_path / "b")
    generate_raw_extract(config.model_copy(update={"seed": 12}), tmp_path / "c")
    first, second, other = (_digests(tmp_path / n) for n in "abc")
    assert first == second
    assert all(first[table] != other[table] for table in RAW_TABLES)


def test_encrypted_extract_holds_the_same_bytes_as_the_plain_one(
    tmp_path: Path,
) -> None:
    config = GeneratorConfig(customers=300, seed=11, chunk_customers=128)
    generate_raw_extract(config, tmp_path / "plain")
    generate_raw_extract(
        config, tmp_path / "sealed", seal=sealing_with(shared_keyring())
    )
    for table in RAW_TABLES:
        sealed = (tmp_path / "sealed" / f"{table}.parquet.enc").read_bytes()
        plain = (tmp_path / "plain" / f"{table}.parquet").read_bytes()
        assert sealed[:5] == b"BPENC"
        assert plain not in sealed  # nothing readable at rest
        assert decrypt(sealed, f"{table}_raw", shared_keyring()) == plain


def test_files_have_the_extract_layout(
    small_extract: tuple[Path, ExtractSummary],
) -> None:
    folder, summary = small_extract
    for table in RAW_TABLES:
        sealed = (folder / f"{table}.parquet.enc").read_bytes()
        parquet = pq.ParquetFile(
            pa.BufferReader(decrypt(sealed, f"{table}_raw", shared_keyring()))
        )
        assert parquet.schema_arrow == RAW_SCHEMAS[table]
        assert parquet.metadata.num_rows == summary.rows[table]
    written = json.loads((folder / SUMMARY_FILE).read_text())
    assert written["rows"] == summary.rows
    assert written["config"]["customers"] == 1_000


def test_sizes_scale_with_customers(small_extract: tuple[Path, ExtractSummary]) -> None:
    _, summary = small_extract
    # 1k customers plus planted duplicates; each has a current account, most a card.
    assert 1_000 < summary.rows["customers"] <= 1_030
    assert 1.9 < summary.rows["accounts"] / 1_000 < 2.4
    assert 60 < summary.rows["transactions"] / 1_000 < 120
    assert 0.4 < summary.rows["loan_applications"] / 1_000 < 0.65


def test_every_defect_kind_is_planted_in_every_table(
    small_extract: tuple[Path, ExtractSummary],
) -> None:
    _, summary = small_extract
    assert set(summary.defects["transactions"]) == {
        "missing_key",
        "duplicate_key",
        "impossible_date",
        "unknown_category",
        "non_numeric_amount",
        "orphan_foreign_key",
    }
    assert all(
        count >= 1 for kinds in summary.defects.values() for count in kinds.values()
    )


def test_pii_fields_look_real_but_are_fake(
    small_extract: tuple[Path, ExtractSummary],
) -> None:
    folder, _ = small_extract
    customers = read_raw(folder, "customers").dropna(subset=["customer_id"])
    assert customers["national_id"].str.fullmatch(r"[A-Z]{2}\d{6}[A-D]").all()
    # Ofcom's range reserved for drama: no real person's number.
    assert customers["phone"].str.fullmatch(r"07700 900\d{3}").all()
    assert customers["email"].str.fullmatch(r"[a-z.\-]+\d+@[a-z.]+").all()
    assert customers["name"].str.count(" ").ge(1).all()
    assert set(customers["gender"]) == {"F", "M"}


def _default_rates(folder: Path) -> pd.DataFrame:
    customers = pd.read_parquet(folder / "customers.parquet")
    applications = pd.read_parquet(folder / "loan_applications.parquet")
    outcomes = pd.read_parquet(folder / "loan_outcomes.parquet")
    return applications.merge(outcomes, on="application_id").merge(
        customers[["customer_id", "gender", "income"]], on="customer_id"
    )


def test_group_bias_knob_raises_default_and_lowers_income_of_the_group(
    tmp_path: Path,
) -> None:
    base = GeneratorConfig(customers=6_000, seed=5, dirty_rate=0.0)
    generate_raw_extract(base, tmp_path / "fair")
    generate_raw_extract(
        base.model_copy(update={"group_bias": 1.5}), tmp_path / "biased"
    )
    fair, biased = (
        _default_rates(tmp_path / "fair"),
        _default_rates(tmp_path / "biased"),
    )
    fair_gap = fair.groupby("gender")["defaulted"].mean().diff().iloc[-1]
    biased_gap = biased.groupby("gender")["defaulted"].mean().diff().iloc[-1]
    # diff = M - F: the planted bias makes F default more.
    assert abs(fair_gap) < 0.03
    assert biased_gap < -0.08
    income = biased.groupby("gender")["income"].median()
    assert income["F"] < 0.8 * income["M"]


def test_drift_knob_makes_later_applicants_riskier(tmp_path: Path) -> None:
    config = GeneratorConfig(customers=6_000, seed=5, dirty_rate=0.0, drift=1.5)
    generate_raw_extract(config, tmp_path / "drift")
    frame = _default_rates(tmp_path / "drift").sort_values("applied_at")
    halves = np.array_split(frame["defaulted"].to_numpy(), 2)
    assert halves[1].mean() > halves[0].mean() + 0.05
