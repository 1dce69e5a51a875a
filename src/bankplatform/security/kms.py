"""Key management's interface: what callers need from a KMS, and its errors.

The key holder's implementation (the local keyring) lives in
``bankplatform.keyservice.local_kms``; a cloud KMS or Vault adapter implements the
same ``KeyManagementService``. Callers only ever see ``DataKeySource``: a data key
for one dataset, new or unwrapped, from the key service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bankplatform.errors import BankplatformError

MASTER_KEY_ENV_VAR = "BANKPLATFORM_MASTER_KEY"


class KeyManagementError(BankplatformError):
    """A key is missing, unreadable or badly protected."""


@dataclass(frozen=True)
class KeyVersion:
    """One key-encryption key version as ``keys status`` shows it."""

    version: int
    created_at: str
    primary: bool
    retired_at: str | None = None


class DataKeySource(Protocol):
    """What encrypting and decrypting one file needs: a data key, new or unwrapped.

    The local keyring and the key service's client both provide it; ``context``
    names the dataset (``envelope.key_context``).
    """

    def generate_data_key(self, context: bytes) -> tuple[bytes, int, bytes]: ...
    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes: ...


class KeyManagementService(Protocol):
    """What bankplatform needs from a KMS.

    An adapter for a cloud KMS or Vault maps: ``generate_data_key`` to the KMS's
    GenerateDataKey (or Vault transit ``datakey``), ``wrap``/``unwrap`` to
    Encrypt/Decrypt with the context as encryption context, ``rotate`` to a new key
    version made primary, ``retire`` to disabling a version, ``sign``/``verify``/
    ``public_key`` to an asymmetric signing key, and ``pseudonymisation_key`` to a
    secret the KMS releases to the ingestion service only (or an HMAC key used
    through the KMS's GenerateMac).
    """

    def generate_data_key(self, context: bytes) -> tuple[bytes, int, bytes]: ...
    def wrap(self, data_key: bytes, context: bytes) -> tuple[int, bytes]: ...
    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes: ...
    def rotate(self) -> int: ...
    def retire(self, version: int) -> None: ...
    def status(self) -> list[KeyVersion]: ...
    def sign(self, message: bytes) -> tuple[int, bytes]: ...
    def verify(self, version: int, message: bytes, signature: bytes) -> bool: ...
    def public_key(self) -> tuple[int, bytes]: ...
    def signing_public_key(self, version: int) -> bytes: ...
    def pseudonymisation_key(self) -> bytes: ...
