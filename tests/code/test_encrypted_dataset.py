"""EncryptedParquetDataset and the envelope format: every damage is a DatasetError
that names the dataset and the reason, never garbage data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from bankplatform.datasets import EncryptedParquetDataset
from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.security.envelope import (
    FORMAT_VERSION,
    MAGIC,
    EncryptingWriter,
    EnvelopeError,
    decrypt,
    read_header,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "customer_token": pd.array(
                [f"cus_{i:032x}" for i in range(5_000)], dtype="string[pyarrow]"
            ),
            "income": rng.normal(40_000, 9_000, 5_000),
            "tenure_months": rng.integers(0, 400, 5_000),
        }
    )


def _dataset(
    path: Path, keyring: LocalKeyring, name: str = "customers_primary"
) -> EncryptedParquetDataset:
    return EncryptedParquetDataset(
        filepath=str(path), dataset=name, key_service=keyring
    )


def _write_small_segments(
    path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> int:
    """Encrypt ``frame`` in 4 KiB segments; returns where the payload starts."""
    with EncryptingWriter(
        path, "customers_primary", keyring, segment_size=4096
    ) as sink:
        frame.to_parquet(sink)
    with path.open("rb") as stream:
        read_header(stream)
        return stream.tell()


def _load_error(dataset: EncryptedParquetDataset) -> str:
    with pytest.raises(DatasetError) as caught:
        dataset.load()
    return str(caught.value)


def test_round_trip_keeps_values_and_nothing_is_readable_at_rest(
    tmp_path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> None:
    path = tmp_path / "customers.parquet.enc"
    _dataset(path, keyring).save(frame)
    pd.testing.assert_frame_equal(_dataset(path, keyring).load(), frame)
    blob = path.read_bytes()
    assert blob[:6] == MAGIC + bytes([FORMAT_VERSION])
    assert b"cus_" not in blob and b"PAR1" not in blob
    with path.open("rb") as stream:
        header = read_header(stream)
    assert (header.dataset, header.key_version) == ("customers_primary", 1)
    # A fresh data key per file: the same table saved twice differs everywhere.
    _dataset(tmp_path / "again.enc", keyring).save(frame)
    with (tmp_path / "again.enc").open("rb") as stream:
        assert read_header(stream).wrapped_key != header.wrapped_key


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (7, "damaged header"),  # inside the header's JSON length
        (40, "cannot decrypt: "),  # inside the header JSON: header or key damaged
        (-1, "fails authentication (truncated file or damaged last segment)"),
        ("payload", "segment 0 fails authentication (damaged)"),
    ],
)
def test_a_flipped_bit_anywhere_is_refused(
    tmp_path: Path,
    keyring: LocalKeyring,
    frame: pd.DataFrame,
    where: int | str,
    reason: str,
) -> None:
    path = tmp_path / "t.enc"
    payload_start = _write_small_segments(path, keyring, frame)
    blob = bytearray(path.read_bytes())
    position = payload_start + 100 if where == "payload" else int(where)
    blob[position] ^= 0x01
    path.write_bytes(bytes(blob))
    message = _load_error(_dataset(path, keyring))
    assert message.startswith(f"customers_primary: {path}: cannot decrypt: ")
    assert reason in message


def test_every_single_bit_flip_in_a_small_file_is_refused(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    path = tmp_path / "t.enc"
    with EncryptingWriter(path, "d", keyring, segment_size=64) as sink:
        sink.write(bytes(range(200)))
    blob = path.read_bytes()
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x80
        with pytest.raises(EnvelopeError):
            decrypt(bytes(damaged), "d", keyring)
    assert decrypt(blob, "d", keyring) == bytes(range(200))


def test_truncated_empty_and_swapped_files_are_refused(
    tmp_path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> None:
    path = tmp_path / "t.enc"
    start = _write_small_segments(path, keyring, frame)
    blob = path.read_bytes()
    dataset = _dataset(path, keyring)
    # Cut at a segment boundary: every remaining segment authenticates, but the
    # last one lacks the last-segment flag.
    path.write_bytes(blob[: start + 2 * (4096 + 16)])
    assert "truncated file" in _load_error(dataset)
    path.write_bytes(blob[: len(blob) // 2])
    assert "fails authentication" in _load_error(dataset)
    path.write_bytes(blob[:8])
    assert _load_error(dataset).endswith(
        "cannot decrypt: not a bankplatform encrypted file (bad magic)"
    )
    path.write_bytes(b"")
    assert _load_error(dataset).endswith("cannot decrypt: empty file")
    path.write_bytes(blob)
    other = _dataset(tmp_path / "accounts.enc", keyring, "accounts_primary")
    other.save(frame)
    (tmp_path / "accounts.enc").replace(path)
    assert _load_error(dataset).endswith(
        "cannot decrypt: file belongs to dataset 'accounts_primary', not 'customers_primary'"
    )


def test_a_header_relabelled_to_another_dataset_still_fails(
    tmp_path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> None:
    path = tmp_path / "t.enc"
    _dataset(path, keyring, "accounts_primary").save(frame)
    blob = path.read_bytes()
    # Same length, so the header stays well-formed: only the binding stops it.
    relabelled = blob.replace(b'"accounts_primary"', b'"customers_primar"')
    path.write_bytes(relabelled)
    message = _load_error(_dataset(path, keyring, "customers_primar"))
    assert "data key does not unwrap with key version 1" in message


def test_a_wrong_key_is_refused(
    tmp_path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> None:
    path = tmp_path / "t.enc"
    _dataset(path, keyring).save(frame)
    stranger = LocalKeyring(tmp_path / "other.json", os.urandom(32))
    stranger.initialise()
    assert "data key does not unwrap with key version 1" in _load_error(
        _dataset(path, stranger)
    )


def test_a_failed_save_keeps_the_previous_file(
    tmp_path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> None:
    path = tmp_path / "t.enc"
    dataset = _dataset(path, keyring)
    dataset.save(frame)
    before = path.read_bytes()
    unserialisable = pd.DataFrame({"x": [object()]})
    with pytest.raises(DatasetError):
        dataset.save(unserialisable)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
    pd.testing.assert_frame_equal(dataset.load(), frame)


def test_versioned_like_kedros_own(
    tmp_path: Path, keyring: LocalKeyring, frame: pd.DataFrame
) -> None:
    path = tmp_path / "model_input.parquet.enc"

    def versioned(load: str | None, save: str | None) -> EncryptedParquetDataset:
        return EncryptedParquetDataset(
            filepath=str(path),
            dataset="model_input",
            version=Version(load, save),
            key_service=keyring,
        )

    versioned(None, "2026-11-29T10.00.00.000Z").save(frame.head(10))
    versioned(None, "2026-11-29T11.00.00.000Z").save(frame.head(20))
    assert len(versioned(None, None).load()) == 20  # latest
    assert len(versioned("2026-11-29T10.00.00.000Z", None).load()) == 10  # pinned
    assert sorted(p.name for p in path.iterdir()) == [
        "2026-11-29T10.00.00.000Z",
        "2026-11-29T11.00.00.000Z",
    ]
