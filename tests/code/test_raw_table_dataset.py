"""RawTableDataset: a corrupt raw file fails in one line that names the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io.core import DatasetError

from bankplatform.contracts.raw import RAW_SCHEMAS
from bankplatform.datasets import RawTableDataset
from bankplatform.security.client import acting_for
from bankplatform.security.policy import AccessDenied
from bankplatform.security.runtime import acting_in_run

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("workspace_security")]


def _outcomes(
    path: Path, schema: pa.Schema | None = None, **columns: list[object]
) -> Path:
    data = {
        "application_id": ["L000000001"],
        "defaulted": [1],
        "observed_at": [pd.Timestamp("2025-06-01")],
        **columns,
    }
    pq.write_table(pa.table(data, schema=schema or RAW_SCHEMAS["loan_outcomes"]), path)
    return path


@pytest.fixture(params=[False, True], ids=["whole", "lazy"])
def lazy(request: pytest.FixtureRequest) -> bool:
    """Loaded whole, or lazily (the footer checked, the rows read in batches)."""
    return bool(request.param)


def _load_error(path: Path, lazy: bool) -> str:
    with pytest.raises(DatasetError) as error, acting_in_run("ingestion"):
        RawTableDataset(filepath=str(path), table="loan_outcomes", lazy=lazy).load()
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_loads_the_table_with_arrow_text(tmp_path: Path, lazy: bool) -> None:
    path = _outcomes(tmp_path / "loan_outcomes.parquet")
    with acting_in_run("ingestion"):
        loaded = RawTableDataset(
            filepath=str(path), table="loan_outcomes", lazy=lazy
        ).load()
        frame = loaded.read() if lazy else loaded
    assert frame["application_id"].dtype == pd.StringDtype("pyarrow")
    assert frame["defaulted"].tolist() == [1]


def test_not_parquet(tmp_path: Path, lazy: bool) -> None:
    path = tmp_path / "loan_outcomes.parquet"
    path.write_text("application_id,defaulted\nL1,1\n")
    assert "not a readable parquet file" in _load_error(path, lazy)


def test_missing_file(tmp_path: Path, lazy: bool) -> None:
    assert "not found" in _load_error(tmp_path / "loan_outcomes.parquet", lazy)


def test_missing_column(tmp_path: Path, lazy: bool) -> None:
    path = tmp_path / "loan_outcomes.parquet"
    pq.write_table(
        pa.table(
            {"application_id": ["L000000001"], "defaulted": pa.array([1], pa.int8())}
        ),
        path,
    )
    assert _load_error(path, lazy).endswith("lacks column(s) observed_at")


def test_unexpected_column(tmp_path: Path, lazy: bool) -> None:
    schema = RAW_SCHEMAS["loan_outcomes"].append(pa.field("national_id", pa.string()))
    path = _outcomes(
        tmp_path / "loan_outcomes.parquet", schema, national_id=["AB123456C"]
    )
    assert _load_error(path, lazy).endswith("has unexpected column(s) national_id")


def test_wrong_type(tmp_path: Path, lazy: bool) -> None:
    schema = RAW_SCHEMAS["loan_outcomes"].set(1, pa.field("defaulted", pa.string()))
    path = _outcomes(tmp_path / "loan_outcomes.parquet", schema, defaulted=["yes"])
    assert _load_error(path, lazy).endswith(
        "column defaulted of raw table loan_outcomes is string, expected int8"
    )


def test_the_pipeline_cannot_write_the_raw_extract(tmp_path: Path) -> None:
    dataset = RawTableDataset(
        filepath=str(tmp_path / "x.parquet"), table="loan_outcomes"
    )
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(pd.DataFrame({"application_id": ["L000000001"]}))
    assert not (tmp_path / "x.parquet").exists()


def test_unknown_table_is_refused() -> None:
    with pytest.raises(DatasetError, match="unknown raw table 'loans'"):
        RawTableDataset(filepath="data/01_raw/loans.parquet", table="loans")


def test_outside_the_ingestion_service_a_raw_table_is_refused_without_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1: no catalog metadata, no check, used to mean raw PII for anyone.
    The key service decides from its own catalog entry (``loan_outcomes_raw``: pii)."""
    path = _outcomes(tmp_path / "loan_outcomes.parquet")
    dataset = RawTableDataset(filepath=str(path), table="loan_outcomes")
    with pytest.raises(
        DatasetError, match="may not read_pii on dataset:loan_outcomes_raw"
    ):
        dataset.load()
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    # The pipeline header alone grants nothing: a run credential is needed ...
    with (
        pytest.raises(
            DatasetError,
            match="acting as the ingestion pipeline's service needs the run credential",
        ),
        acting_for("ingestion"),
    ):
        dataset.load()
    # ... and the key service grants one only to whoever may run the pipeline.
    with pytest.raises(
        AccessDenied, match="dana.scientist .* may not run pipeline ingestion"
    ):
        with acting_in_run("ingestion"):
            dataset.load()
