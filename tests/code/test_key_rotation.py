"""Key rotation re-wraps every data key without re-encrypting, survives being
interrupted, and retires keys nothing references."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from bankplatform.datasets import EncryptedParquetDataset
from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.keyservice.rotation import files_per_key_version, rotate_keys
from bankplatform.security import envelope
from bankplatform.security.envelope import EncryptingWriter, read_header
from bankplatform.security.kms import KeyManagementError

pytestmark = pytest.mark.unit
TABLES = ("customers", "accounts", "transactions")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    ring = LocalKeyring(tmp_path / "keys" / "keyring.json", os.urandom(32))
    ring.initialise()
    return ring


@pytest.fixture
def data_root(tmp_path: Path, keyring: LocalKeyring) -> Path:
    root = tmp_path / "data"
    for i, table in enumerate(TABLES):
        _dataset(root, table, keyring).save(
            pd.DataFrame({"n": range(i * 100, i * 100 + 50)})
        )
    (root / "08_reporting").mkdir()
    (root / "08_reporting" / "report.json").write_text("{}")  # not encrypted: ignored
    return root


def _dataset(root: Path, table: str, keyring: LocalKeyring) -> EncryptedParquetDataset:
    return EncryptedParquetDataset(
        filepath=str(root / "03_primary" / f"{table}.parquet.enc"),
        dataset=f"{table}_primary",
        key_service=keyring,
    )


def _payloads(root: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted((root / "03_primary").glob("*.enc")):
        with path.open("rb") as stream:
            read_header(stream)
            found[path.name] = stream.read()
    return found


def test_rotation_rewraps_headers_only_and_retires_the_old_key(
    tmp_path: Path, keyring: LocalKeyring, data_root: Path
) -> None:
    marker = tmp_path / "keys" / "keyring.json.rotation"
    before = _payloads(data_root)
    assert files_per_key_version(data_root) == {1: 3}
    result = rotate_keys(keyring, data_root, marker)
    assert (result.primary, result.resumed, len(result.rewrapped), result.retired) == (
        2,
        False,
        3,
        [1],
    )
    assert _payloads(data_root) == before  # no re-encryption
    assert files_per_key_version(data_root) == {2: 3}
    for i, table in enumerate(TABLES):
        assert _dataset(data_root, table, keyring).load()["n"].iloc[0] == i * 100
    versions = {v.version: v for v in keyring.status()}
    assert versions[1].retired_at is not None and versions[2].primary
    with pytest.raises(KeyManagementError, match="key version 1 was retired"):
        keyring.unwrap(1, b"\0" * 60, b"x")
    assert not marker.exists()


def test_an_interrupted_rotation_loses_nothing_and_a_rerun_finishes_it(
    tmp_path: Path, keyring: LocalKeyring, data_root: Path
) -> None:
    marker = tmp_path / "keys" / "keyring.json.rotation"

    def killed_after_first_file(path: Path, old: int, new: int) -> None:
        # What a kill leaves: a half-written temporary beside the next file.
        (path.parent / ".transactions.parquet.enc.rewrap").write_bytes(b"BPENC\x01half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotate_keys(keyring, data_root, marker, on_file=killed_after_first_file)
    assert json.loads(marker.read_text()) == {"primary": 2}
    assert files_per_key_version(data_root) == {1: 2, 2: 1}
    # Meanwhile every file opens (old or new key).
    for table in TABLES:
        assert len(_dataset(data_root, table, keyring).load()) == 50
    result = rotate_keys(keyring, data_root, marker)
    assert (result.primary, result.resumed, len(result.rewrapped), result.retired) == (
        2,
        True,
        2,
        [1],
    )
    assert [v.version for v in keyring.status()] == [1, 2]  # no third key minted
    assert files_per_key_version(data_root) == {2: 3}
    assert not list(data_root.rglob("*.rewrap"))
    for table in TABLES:
        assert len(_dataset(data_root, table, keyring).load()) == 50


def test_a_save_in_progress_keeps_its_key_version_alive(
    tmp_path: Path, keyring: LocalKeyring, data_root: Path
) -> None:
    """Finding 10: a `.partial` being written during rotation used to be skipped and
    its key retired, so the finished file never opened again."""
    target = data_root / "03_primary" / "loans.parquet.enc"
    writer = EncryptingWriter(target, "loans_primary", keyring)  # data key under v1
    frame = pd.DataFrame({"n": range(1000)})
    frame.to_parquet(writer)  # written, not yet closed (renamed into place)
    result = rotate_keys(keyring, data_root, tmp_path / "keys" / "rotation")
    assert (result.primary, result.retired, result.kept_for_saves) == (2, [], [1])
    writer.close()
    loaded = EncryptedParquetDataset(
        filepath=str(target), dataset="loans_primary", key_service=keyring
    ).load()
    assert loaded["n"].tolist() == list(range(1000))
    # The next rotation re-wraps the finished file and retires version 1.
    again = rotate_keys(keyring, data_root, tmp_path / "keys" / "rotation")
    assert (again.primary, again.retired, again.kept_for_saves) == (3, [1, 2], [])


def test_a_rewrap_never_overwrites_a_save_that_landed_meanwhile(
    tmp_path: Path,
    keyring: LocalKeyring,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 10: re-wrap read the old file, a save replaced it, and the re-wrap's
    rename put the old content back."""
    customers = _dataset(data_root, "customers", keyring)
    original = envelope.read_header
    saved: list[bool] = []

    def save_meanwhile(stream):  # type: ignore[no-untyped-def]
        header = original(stream)
        if not saved and header.dataset == "customers_primary":
            saved.append(True)
            customers.save(pd.DataFrame({"n": [-1, -2]}))  # under the new primary
        return header

    monkeypatch.setattr(envelope, "read_header", save_meanwhile)
    rotate_keys(keyring, data_root, tmp_path / "keys" / "rotation")
    monkeypatch.undo()
    assert saved == [True]
    assert customers.load()["n"].tolist() == [-1, -2]
    assert files_per_key_version(data_root) == {2: 3}
