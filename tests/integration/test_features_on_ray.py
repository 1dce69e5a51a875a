"""The snapshots step as Ray Data tasks on a real local Ray, over a real encrypted
file: the same table as the local path, every file opening decided and audited by
the key service for the node's identity, and a refused worker a one-line error."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import ray

from bankplatform.datasets.encrypted_parquet import EncryptedParquetDataset
from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.features.customer_features import (
    BOOKING_COLUMNS,
    Population,
    customer_snapshot_chunks,
)
from bankplatform.features.on_ray import customer_snapshot_chunks_on_ray
from bankplatform.ray_cluster import ray_connection
from bankplatform.security.client import IdentityError, acting_for
from bankplatform.security.runtime import (
    DelegatedCaller,
    WorkspaceSecurity,
    acting_in_run,
)
from tests.code.test_customer_features import busy_book

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHUNK = 37
ROW_GROUPS = 7


@pytest.fixture(scope="module")
def local_ray() -> Iterator[dict[str, float]]:
    ray.shutdown()  # the Ray of this process's in-memory runs (worker_ray), if any
    with ray_connection(2) as resources:
        yield resources
    assert not ray.is_initialized()


@pytest.fixture
def transactions(
    workspace_security: WorkspaceSecurity, tmp_path: Path
) -> tuple[pd.DataFrame, pd.DataFrame, ParquetBatches]:
    """The busy book's transactions saved encrypted in seven row groups."""
    customers, accounts, book = busy_book()
    dataset = EncryptedParquetDataset(
        filepath=str(tmp_path / "transactions.parquet.enc"),
        dataset="transactions_primary",
        lazy=True,
    )
    with acting_in_run("ingestion"):
        step = -(-len(book) // ROW_GROUPS)
        dataset.save(book.iloc[i : i + step] for i in range(0, len(book), step))
    with acting_in_run("features"):
        table = dataset.load()
    assert isinstance(table, ParquetBatches)
    assert table.metadata().num_row_groups == ROW_GROUPS
    return customers, accounts, table


def _unwraps(security: WorkspaceSecurity) -> list[dict[str, object]]:
    with acting_for(""):
        return [
            r
            for r in security.audit_log().records(
                resource="dataset:transactions_primary"
            )
            if r["action"] == "read_confidential"
        ]


def test_ray_data_computes_the_same_table_as_the_local_path(
    local_ray: dict[str, float],
    workspace_security: WorkspaceSecurity,
    transactions: tuple[pd.DataFrame, pd.DataFrame, ParquetBatches],
    capfd: pytest.CaptureFixture[str],
) -> None:
    customers, accounts, table = transactions
    with acting_in_run("features"):
        local = pd.concat(
            customer_snapshot_chunks(
                customers, accounts, table.batches(BOOKING_COLUMNS), CHUNK
            ),
            ignore_index=True,
        )
        before = len(_unwraps(workspace_security))
        caller = DelegatedCaller.of_this_process()
        on_ray = pd.concat(
            customer_snapshot_chunks_on_ray(
                Population.of(customers, accounts, CHUNK), table, caller
            ),
            ignore_index=True,
        )
    # Ray Data's progress and execution lines stay in Ray's log files.
    assert "Starting execution" not in capfd.readouterr().err
    # The same table once written (Ray's blocks are Arrow, so text comes back as
    # Arrow-backed strings where the local path has objects: compare what is written).
    written = [pa.Table.from_pandas(f, preserve_index=False) for f in (on_ray, local)]
    pd.testing.assert_frame_equal(
        *(table.to_pandas(ignore_metadata=True) for table in written)
    )
    assert written[0].equals(written[1])
    assert len(local) == 500 * 14
    # The customer without bookings is in the table, all zero (a placeholder's chunk).
    idle = on_ray[on_ray["customer_token"] == customers["customer_token"].iloc[0]]
    assert len(idle) == 14 and (idle["txn_count_90d"] == 0).all()
    # One key request for the footer on the driver and one per read task (a row
    # group each), each as the node's service identity on behalf of the developer
    # who started it, each allowed.
    opened = _unwraps(workspace_security)[before:]
    assert len(opened) == 1 + ROW_GROUPS
    assert {(r["actor"], r["on_behalf_of"], r["outcome"]) for r in opened} == {
        ("svc-features", "local-developer", "allowed")
    }


def test_a_worker_the_key_service_refuses_fails_the_step_in_one_line(
    local_ray: dict[str, float],
    workspace_security: WorkspaceSecurity,
    transactions: tuple[pd.DataFrame, pd.DataFrame, ParquetBatches],
    capfd: pytest.CaptureFixture[str],
) -> None:
    customers, accounts, table = transactions
    with acting_in_run("features"):
        caller = DelegatedCaller.of_this_process()
    forged = dataclasses.replace(caller, token="not-a-signed-token")  # noqa: S106
    assert "not-a-signed-token" not in repr(forged)
    with pytest.raises(IdentityError) as refused:
        list(
            customer_snapshot_chunks_on_ray(
                Population.of(customers, accounts, CHUNK), table, forged
            )
        )
    # The service's refusal as the local path would say it, not Ray's traceback.
    assert type(refused.value) is IdentityError
    assert str(refused.value).startswith("token rejected: ")
    assert "\n" not in str(refused.value)
    assert "Traceback" not in capfd.readouterr().err
