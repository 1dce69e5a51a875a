"""The local keyring: master key protection, wrapping, rotation and signatures."""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

import pytest

from bankplatform.keyservice.local_kms import (
    LocalKeyring,
    create_master_key_file,
    load_master_key,
)
from bankplatform.security.kms import MASTER_KEY_ENV_VAR, KeyManagementError

pytestmark = pytest.mark.unit


@pytest.fixture
def keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalKeyring:
    monkeypatch.delenv(MASTER_KEY_ENV_VAR, raising=False)
    key_file = tmp_path / "master.key"
    assert create_master_key_file(key_file)
    ring = LocalKeyring(tmp_path / "keyring.json", load_master_key(key_file))
    assert ring.initialise()
    return ring


def test_master_key_file_is_private_and_a_shared_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV_VAR, raising=False)
    key_file = tmp_path / "master.key"
    create_master_key_file(key_file)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(load_master_key(key_file)) == 32
    os.chmod(key_file, 0o644)
    with pytest.raises(
        KeyManagementError,
        match=r"readable by group or others \(mode 644\); run chmod 600",
    ):
        load_master_key(key_file)


def test_master_key_from_the_environment_wins_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.token_bytes(32)
    monkeypatch.setenv(MASTER_KEY_ENV_VAR, base64.urlsafe_b64encode(key).decode())
    assert load_master_key(tmp_path / "absent.key") == key
    monkeypatch.setenv(MASTER_KEY_ENV_VAR, "too-short")
    with pytest.raises(KeyManagementError, match=r"is not 32 bytes of base64"):
        load_master_key(tmp_path / "absent.key")
    monkeypatch.delenv(MASTER_KEY_ENV_VAR)
    with pytest.raises(
        KeyManagementError,
        match=r"no master key: set BANKPLATFORM_MASTER_KEY or run `bankplatform keys init`",
    ):
        load_master_key(tmp_path / "absent.key")


def test_wrap_unwrap_binds_the_context(keyring: LocalKeyring) -> None:
    data_key = secrets.token_bytes(32)
    version, wrapped = keyring.wrap(data_key, b"customers_accepted")
    assert version == 1
    assert keyring.unwrap(version, wrapped, b"customers_accepted") == data_key
    with pytest.raises(KeyManagementError, match="does not unwrap with key version 1"):
        keyring.unwrap(version, wrapped, b"accounts_accepted")
    flipped = bytes([wrapped[0], wrapped[1] ^ 1]) + wrapped[2:]
    with pytest.raises(KeyManagementError):
        keyring.unwrap(version, flipped, b"customers_accepted")


def test_rotation_adds_a_primary_and_old_keys_still_unwrap(
    keyring: LocalKeyring,
) -> None:
    data_key = secrets.token_bytes(32)
    old_version, old_wrapped = keyring.wrap(data_key, b"ctx")
    assert keyring.rotate() == 2
    new_version, _ = keyring.wrap(data_key, b"ctx")
    assert (old_version, new_version) == (1, 2)
    assert keyring.unwrap(old_version, old_wrapped, b"ctx") == data_key
    assert [(v.version, v.primary) for v in keyring.status()] == [(1, False), (2, True)]


def test_a_different_master_key_cannot_open_the_keyring(
    keyring: LocalKeyring, tmp_path: Path
) -> None:
    intruder = LocalKeyring(tmp_path / "keyring.json", secrets.token_bytes(32))
    with pytest.raises(
        KeyManagementError, match="the master key does not open the keyring"
    ):
        intruder.wrap(b"x" * 32, b"ctx")


def test_signatures_verify_only_for_the_signed_message(keyring: LocalKeyring) -> None:
    version, signature = keyring.sign(b"head 42")
    assert keyring.verify(version, b"head 42", signature)
    assert not keyring.verify(version, b"head 43", signature)
    assert not keyring.verify(version + 1, b"head 42", signature)


def test_a_keyring_edited_without_the_master_key_is_refused(
    keyring: LocalKeyring, tmp_path: Path
) -> None:
    """Finding 5: a backup operator swaps in their own signing public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    path = tmp_path / "keyring.json"
    content = json.loads(path.read_text())
    theirs = Ed25519PrivateKey.generate().public_key()
    raw = theirs.public_bytes(Encoding.Raw, PublicFormat.Raw)
    content["signing"]["versions"]["1"]["public"] = base64.urlsafe_b64encode(
        raw
    ).decode()
    path.write_text(json.dumps(content))
    with pytest.raises(KeyManagementError, match="its seal does not verify"):
        keyring.verify(1, b"message", b"\0" * 64)
    content = json.loads(path.read_text())
    content["primary"] = 7
    path.write_text(json.dumps(content))
    with pytest.raises(KeyManagementError, match="changed outside the key service"):
        keyring.public_key()


def test_signing_keys_rotate_and_old_signatures_still_verify(
    keyring: LocalKeyring,
) -> None:
    old_version, old_signature = keyring.sign(b"checkpoint")
    assert keyring.rotate_signing_key() == 2
    new_version, new_signature = keyring.sign(b"checkpoint")
    assert (old_version, new_version) == (1, 2)
    assert keyring.verify(1, b"checkpoint", old_signature)
    assert keyring.verify(2, b"checkpoint", new_signature)
    assert not keyring.verify(2, b"checkpoint", old_signature)
    assert not keyring.verify(3, b"checkpoint", new_signature)


def test_a_keyring_serves_only_its_own_env(keyring: LocalKeyring) -> None:
    keyring.check_env("developer")
    with pytest.raises(
        KeyManagementError, match="serves the developer trust domain, not production"
    ):
        keyring.check_env("production")
