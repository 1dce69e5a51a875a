"""Tables read and written a batch at a time: the decrypting reader opens any segment
alone and refuses every damage a whole-file load refuses; batched saves are atomic."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from kedro.io.core import DatasetError

from bankplatform.datasets import EncryptedParquetDataset
from bankplatform.datasets.classified_parquet import ClassifiedParquetDataset
from bankplatform.datasets.table_batches import ParquetBatches
from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.security.envelope import (
    DecryptingReader,
    EncryptingWriter,
    EnvelopeError,
    decrypt,
    read_header,
)

pytestmark = pytest.mark.unit


def _frames(count: int, rows: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng(5)
    return [
        pd.DataFrame(
            {
                "account_token": pd.array(
                    [f"acc_{part}_{i:06d}" for i in range(rows)],
                    dtype="string[pyarrow]",
                ),
                "amount": rng.normal(0, 100, rows),
                "channel": pd.array(
                    rng.choice(["pos", "atm"], rows), dtype="string[pyarrow]"
                ),
            }
        )
        for part in range(count)
    ]


def _encrypted(
    path: Path, keyring: LocalKeyring, **kwargs: object
) -> EncryptedParquetDataset:
    return EncryptedParquetDataset(
        filepath=str(path),
        dataset="transactions_primary",
        key_service=keyring,
        **kwargs,
    )


def test_any_range_reads_the_same_bytes_as_a_whole_decrypt(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    path = tmp_path / "t.enc"
    plain = os.urandom(10_000)
    with EncryptingWriter(path, "d", keyring, segment_size=256) as sink:
        sink.write(plain)
    assert decrypt(path.read_bytes(), "d", keyring) == plain
    rng = np.random.default_rng(2)
    with DecryptingReader(path, "d", keyring) as reader:
        assert reader.size == len(plain)
        assert reader.seek(0, io.SEEK_END) == len(plain)
        assert reader.read(10) == b""
        for _ in range(200):
            start = int(rng.integers(0, len(plain)))
            length = int(rng.integers(0, 1_000))
            reader.seek(start)
            assert reader.read(length) == plain[start : start + length]
            assert reader.tell() == min(start + length, len(plain))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_damaged_segment_is_refused_where_it_is_read(
    tmp_path: Path, keyring: LocalKeyring, where: str
) -> None:
    path = tmp_path / "t.enc"
    with EncryptingWriter(path, "d", keyring, segment_size=256) as sink:
        sink.write(bytes(range(256)) * 8)  # 8 segments, the last one flagged
    with path.open("rb") as stream:
        read_header(stream)
        start = stream.tell()
    stored = 256 + 16
    offset = {"first": 3, "middle": 4 * stored + 3, "last": 7 * stored + 3}[where]
    blob = bytearray(path.read_bytes())
    blob[start + offset] ^= 0x01
    path.write_bytes(bytes(blob))
    with DecryptingReader(path, "d", keyring) as reader:
        if where != "first":
            assert reader.read(256) == bytes(range(256))  # an intact segment opens
        reader.seek({"first": 0, "middle": 4 * 256, "last": 8 * 256 - 1}[where])
        with pytest.raises(EnvelopeError, match="fails authentication"):
            reader.read(2)


def test_truncated_extended_and_foreign_files_are_refused_when_opened(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    path = tmp_path / "t.enc"
    dataset = _encrypted(path, keyring)
    dataset.save(iter(_frames(3, 100_000)))  # several 1 MiB segments
    lazy = _encrypted(path, keyring, lazy=True)
    blob = path.read_bytes()
    with path.open("rb") as stream:
        read_header(stream)
        start = stream.tell()
    # Cut at a segment boundary: the new last segment lacks the last flag.
    for damaged in (blob[: start + (1 << 20) + 16], blob + b"\x00" * 40):
        path.write_bytes(damaged)
        with pytest.raises(
            DatasetError, match="transactions_primary: cannot open: segment"
        ):
            lazy.load().num_rows()
    path.write_bytes(blob)
    stranger = LocalKeyring(tmp_path / "other.json", os.urandom(32))
    stranger.initialise()
    with pytest.raises(DatasetError, match="does not unwrap"):
        _encrypted(path, stranger, lazy=True).load().schema()
    with pytest.raises(DatasetError, match="belongs to dataset 'transactions_primary'"):
        EncryptedParquetDataset(
            filepath=str(path),
            dataset="accounts_primary",
            key_service=keyring,
            lazy=True,
        ).load().schema()


def test_batches_in_order_with_the_columns_asked_for(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    path = tmp_path / "t.enc"
    frames = _frames(4, 30_000)
    _encrypted(path, keyring).save(iter(frames))
    whole = pd.concat(frames, ignore_index=True)
    # One row group per saved frame, and the eager load reads the same table.
    with DecryptingReader(path, "transactions_primary", keyring) as reader:
        assert pq.ParquetFile(reader).metadata.num_row_groups == 4
    pd.testing.assert_frame_equal(_encrypted(path, keyring).load(), whole)
    table = _encrypted(path, keyring, lazy=True).load()
    assert isinstance(table, ParquetBatches)
    assert table.num_rows() == 120_000
    batches = list(table.batches(["amount", "account_token"], rows=7_000))
    assert [len(b) for b in batches][:5] == [7_000] * 5
    assert sum(len(b) for b in batches) == 120_000
    assert list(batches[0].columns) == ["amount", "account_token"]
    pd.testing.assert_frame_equal(
        pd.concat(batches, ignore_index=True), whole[["amount", "account_token"]]
    )
    pd.testing.assert_frame_equal(table.read(), whole)
    with pytest.raises(DatasetError, match="transactions_primary: no column balance"):
        next(table.batches(["balance"]))


def test_row_groups_and_a_column_range_read_from_the_footer(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    """What the Ray read tasks rely on: any row groups alone, and a column's range
    from the statistics; a file without them is a one-line refusal."""
    path = tmp_path / "t.enc"
    frames = _frames(4, 30_000)
    _encrypted(path, keyring).save(iter(frames))
    table = _encrypted(path, keyring, lazy=True).load()
    assert isinstance(table, ParquetBatches)
    footer = table.metadata()
    assert [footer.row_group(i).num_rows for i in range(4)] == [30_000] * 4
    alone = pd.concat(table.batches(["amount"], row_groups=[1, 3]), ignore_index=True)
    expected = pd.concat([frames[1], frames[3]], ignore_index=True)[["amount"]]
    pd.testing.assert_frame_equal(alone, expected)
    whole = pd.concat(frames, ignore_index=True)["amount"]
    assert table.column_range("amount", footer) == (whole.min(), whole.max())
    assert table.column_range("account_token") == ("acc_0_000000", "acc_3_029999")
    with pytest.raises(DatasetError, match="transactions_primary: no column balance"):
        table.column_range("balance")
    bare = tmp_path / "bare.parquet"
    frames[0].to_parquet(bare, write_statistics=False)
    plain = ParquetBatches("bare", lambda: bare.open("rb"))
    with pytest.raises(DatasetError) as refused:
        plain.column_range("amount")
    assert str(refused.value) == "bare: row group 0 has no statistics of amount"


def test_an_empty_table_still_gives_one_frame_with_its_columns(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    path = tmp_path / "t.enc"
    _encrypted(path, keyring).save(iter([_frames(1, 5)[0].head(0)]))
    (only,) = list(_encrypted(path, keyring, lazy=True).load().batches(["amount"]))
    assert list(only.columns) == ["amount"] and len(only) == 0
    with pytest.raises(DatasetError, match="no rows, so no range of amount"):
        _encrypted(path, keyring, lazy=True).load().column_range("amount")


def test_a_failed_batched_save_keeps_the_previous_table(
    tmp_path: Path, keyring: LocalKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The key service's decision on the plain feature table is tested with the
    # service itself (test_key_service); here each use is recorded.
    decisions: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "bankplatform.datasets.classified_parquet.guard_dataset",
        lambda name, operation: decisions.append((name, operation)),
    )
    frames = _frames(2, 100)
    plain = tmp_path / "features.parquet"
    encrypted = tmp_path / "t.enc"
    saved = [
        _encrypted(encrypted, keyring),
        ClassifiedParquetDataset(filepath=str(plain), dataset="customer_features"),
    ]
    for dataset in saved:
        dataset.save(iter(frames))

    def broken() -> object:
        yield frames[0]
        yield frames[1].rename(columns={"amount": "value"})

    def failing() -> object:
        yield frames[0]
        raise RuntimeError("the node failed half-way")

    for dataset in saved:
        with pytest.raises(DatasetError, match="does not fit the table's schema"):
            dataset.save(broken())
        with pytest.raises(DatasetError, match="the node failed half-way"):
            dataset.save(failing())
        with pytest.raises(DatasetError, match="no batch to write"):
            dataset.save(iter([]))
    pd.testing.assert_frame_equal(
        _encrypted(encrypted, keyring).load(), pd.concat(frames, ignore_index=True)
    )
    lazy = ClassifiedParquetDataset(
        filepath=str(plain), dataset="customer_features", lazy=True
    ).load()
    pd.testing.assert_frame_equal(lazy.read(), pd.concat(frames, ignore_index=True))
    assert decisions == [("customer_features", "write")] * 4 + [
        ("customer_features", "read")
    ]
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
