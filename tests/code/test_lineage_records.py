"""Lineage building blocks: parameter flattening and the fingerprint cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bankplatform.errors import BankplatformError
from bankplatform.lineage.fingerprint import FingerprintCache
from bankplatform.lineage.records import (
    KEDRO_RUN_TAG,
    MAX_PARAM_LENGTH,
    flatten_parameters,
    lineage_run_of,
)

pytestmark = pytest.mark.unit


def test_nested_parameters_flatten_and_long_values_are_cut() -> None:
    flat = flatten_parameters(
        {
            "training": {"rounds": 50, "monotone": {"income": -1}},
            "note": "x" * 7000,
            "empty": {},
        }
    )
    assert flat["training.rounds"] == "50"
    assert flat["training.monotone.income"] == "-1"
    assert flat["empty"] == "{}"
    assert len(flat["note"]) == MAX_PARAM_LENGTH
    assert flat["note"].endswith("…[truncated]")


def test_file_fingerprint_is_its_sha256_and_is_cached_by_size_and_mtime(
    tmp_path: Path,
) -> None:
    data = tmp_path / "table.parquet"
    data.write_bytes(b"a" * 1000)
    cache = FingerprintCache(tmp_path / "cache.json")
    first = cache.fingerprint(data)
    assert first is not None
    assert first.sha256 == hashlib.sha256(b"a" * 1000).hexdigest()
    assert first.digest == first.sha256[:36]
    cache.save()
    # Same size and mtime: the cached digest is reused without reading the file.
    stat = data.stat()
    data.write_bytes(b"b" * 1000)
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    reloaded = FingerprintCache(tmp_path / "cache.json")
    assert reloaded.fingerprint(data) == first
    # A rewrite that changes the mtime is read again.
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = reloaded.fingerprint(data)
    assert changed is not None
    assert changed.sha256 == hashlib.sha256(b"b" * 1000).hexdigest()


def test_folder_fingerprint_covers_names_and_contents(tmp_path: Path) -> None:
    folder = tmp_path / "partitioned"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"1")
    (folder / "b.parquet").write_bytes(b"2")
    cache = FingerprintCache(tmp_path / "cache.json")
    before = cache.fingerprint(folder)
    (folder / "b.parquet").rename(folder / "c.parquet")
    after = cache.fingerprint(folder)
    assert before is not None and after is not None
    assert (before.files, before.size) == (2, 2)
    assert before.sha256 != after.sha256
    assert cache.fingerprint(tmp_path / "missing.parquet") is None


def test_a_training_set_carries_its_feature_service_into_the_tags(
    tmp_path: Path,
) -> None:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro_datasets.pandas import ParquetDataset

    from bankplatform.lineage.records import input_records

    training = tmp_path / "training_set.parquet"
    training.write_bytes(b"parquet bytes")
    service = {
        "name": "credit_default_v1",
        "version": 1,
        "features": ["txn_30d_count", "utilisation"],
    }
    catalog = DataCatalog(
        datasets={
            "training_set": ParquetDataset(
                filepath=str(training), metadata={"feature_service": service}
            ),
            "scratch": MemoryDataset(),
        }
    )
    records, tags = input_records(
        ["training_set", "scratch", "params:training"],
        catalog,
        FingerprintCache(tmp_path / "c.json"),
    )
    assert [r.name for r in records] == ["training_set"]
    assert records[0].digest == hashlib.sha256(b"parquet bytes").hexdigest()[:36]
    assert tags["feast.feature_service"] == "credit_default_v1"
    assert tags["feast.feature_service_version"] == "1"
    assert tags["feast.features"] == "txn_30d_count,utilisation"
    assert tags["feast.training_set"] == "training_set"


def test_the_training_lineage_is_the_one_run_that_claims_the_kedro_run(
    tmp_path: Path,
) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("credit_default_pd")
    kedro_run = "2026-12-06T08.52.44.123Z"
    lineage = client.create_run(experiment, tags={KEDRO_RUN_TAG: kedro_run})
    client.create_run(experiment, tags={KEDRO_RUN_TAG: "2026-12-07T00.00.00.000Z"})
    found = lineage_run_of(client, experiment, kedro_run)
    assert found is not None
    assert found.info.run_id == lineage.info.run_id
    assert lineage_run_of(client, experiment, "") is None
    # A second run claiming the same Kedro run (a tag anyone with tracking access
    # can set) leaves no single lineage to show or re-hash.
    client.create_run(experiment, tags={KEDRO_RUN_TAG: kedro_run})
    assert lineage_run_of(client, experiment, kedro_run) is None
    with pytest.raises(BankplatformError, match="not a Kedro run id: \"x' or '1'='1\""):
        lineage_run_of(client, experiment, "x' or '1'='1")
