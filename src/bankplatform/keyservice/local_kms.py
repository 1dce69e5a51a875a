"""The key holder's local keyring: the embedded default ``KeyManagementService``.

The embedded default keeps key-encryption keys (KEKs) and the audit signing key in
a JSON keyring, each wrapped with AES-256-GCM under a master key that comes from
``$BANKPLATFORM_MASTER_KEY`` (base64) or a file only its owner can read. A cloud
KMS or Vault adapter implements the same interface: ``wrap``/``unwrap`` become the
KMS's encrypt/decrypt of a data key, ``rotate`` creates a new key version, and
``sign``/``public_key`` use an asymmetric KMS key (Ed25519 or ECDSA). Nothing here is
home-made cryptography: AES-GCM and Ed25519 come from ``cryptography``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
)
from filelock import FileLock

from bankplatform.security.kms import (
    MASTER_KEY_ENV_VAR,
    KeyManagementError,
    KeyVersion,
)
from bankplatform.security.settings import SecuritySettings

_NONCE = 12
MASTER_KEY_BYTES = 32
FORMAT = 2
_SEAL_CONTEXT = b"keyring-seal:"
_BUNDLE_CONTEXT = b"bundle-signing"


def load_master_key(key_file: Path) -> bytes:
    """The master key: ``$BANKPLATFORM_MASTER_KEY`` or ``key_file`` (mode 600).

    Args:
        key_file: Where the master key lives when the environment has none.

    Returns:
        32 bytes.

    Raises:
        KeyManagementError: Missing, malformed, or readable by group or others.
    """
    text = os.environ.get(MASTER_KEY_ENV_VAR)
    source = f"${MASTER_KEY_ENV_VAR}"
    if not text:
        if not key_file.is_file():
            msg = f"no master key: set {MASTER_KEY_ENV_VAR} or run `bankplatform keys init` to create {key_file}"
            raise KeyManagementError(msg)
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if mode & 0o077:
            msg = f"master key file {key_file} is readable by group or others (mode {mode:o}); run chmod 600 {key_file}"
            raise KeyManagementError(msg)
        text, source = key_file.read_text().strip(), str(key_file)
    try:
        key = base64.urlsafe_b64decode(text)
    except ValueError:
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        msg = f"master key from {source} is not 32 bytes of base64"
        raise KeyManagementError(msg)
    return key


def create_master_key_file(key_file: Path) -> bool:
    """Create a random master key file readable by its owner only, unless one exists.

    Returns:
        Whether a file was created.
    """
    if key_file.exists():
        return False
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
    return True


class LocalKeyring:
    """The embedded KMS: versioned KEKs and a signing key in a JSON file."""

    def __init__(self, path: Path, master_key: bytes) -> None:
        self._path = path
        self._master = AESGCM(master_key)
        self._lock_path = f"{path}.lock"
        self._signer: tuple[int, Ed25519PrivateKey] | None = None
        self._verifiers: dict[int, Ed25519PublicKey] = {}

    def _lock(self) -> FileLock:
        # A new lock object each time: one inherited across fork (ParallelRunner's
        # workers) refuses to work.
        return FileLock(self._lock_path)

    def initialise(self, env: str = "developer") -> bool:
        """Create the keyring of trust domain ``env`` (``developer`` or ``production``)
        with KEK version 1 and a signing key, unless it exists.

        An existing keyring must open with the master key and belong to ``env``;
        one written by an older release (format 1, unsealed) is sealed in place.
        """
        with self._lock():
            if self._path.exists():
                content = json.loads(self._path.read_text())
                if content.get("format") == 1:
                    self._upgrade(content, env)
                self._read()  # fails if the master key does not open it
                self.check_env(env)
                return False
            content = {
                "format": FORMAT,
                "env": env,
                "primary": 1,
                "keys": {"1": self._new_kek(1)},
                "signing": {"current": 1, "versions": {"1": self._new_signing_key(1)}},
            }
            self._write(content)
            return True

    def check_env(self, env: str) -> None:
        """Refuse to serve a trust domain other than the one the keyring was made for.

        Raises:
            KeyManagementError: The keyring belongs to another trust domain.
        """
        owner = self._read().get("env")
        if owner != env:
            msg = f"keyring {self._path} serves the {owner} trust domain, not {env}: each trust domain has its own keyring (security.keyring and security.trust_domain in conf/<env>/security.yml)"
            raise KeyManagementError(msg)

    def rotate_signing_key(self) -> int:
        """A new signing key version for new tokens and checkpoints; old ones still verify."""
        with self._lock():
            content = self._read()
            versions = content["signing"]["versions"]
            version = max(int(v) for v in versions) + 1
            versions[str(version)] = self._new_signing_key(version)
            content["signing"]["current"] = version
            self._write(content)
        self._signer = None
        self._verifiers.clear()
        return version

    def generate_data_key(self, context: bytes) -> tuple[bytes, int, bytes]:
        """A fresh 256-bit data key, plus its version and wrapped form."""
        data_key = secrets.token_bytes(32)
        version, wrapped = self.wrap(data_key, context)
        return data_key, version, wrapped

    def wrap(self, data_key: bytes, context: bytes) -> tuple[int, bytes]:
        """Wrap a data key with the primary KEK.

        ``context`` and the key version are bound as associated data.
        """
        content = self._read()
        version = int(content["primary"])
        nonce = secrets.token_bytes(_NONCE)
        kek = AESGCM(self._kek(content, version))
        return version, nonce + kek.encrypt(nonce, data_key, _bound(context, version))

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        """Unwrap a data key; a wrong key, context, version or flipped bit raises."""
        kek = AESGCM(self._kek(self._read(), version))
        try:
            return kek.decrypt(
                wrapped[:_NONCE], wrapped[_NONCE:], _bound(context, version)
            )
        except (InvalidTag, ValueError):  # ValueError: a wrapped key cut short
            msg = f"data key does not unwrap with key version {version} (wrong key, dataset or damaged)"
            raise KeyManagementError(msg) from None

    def rotate(self) -> int:
        """Add a KEK version and make it primary; older versions stay for unwrapping."""
        with self._lock():
            content = self._read()
            version = max(int(v) for v in content["keys"]) + 1
            content["keys"][str(version)] = self._new_kek(version)
            content["primary"] = version
            self._write(content)
        return version

    def retire(self, version: int) -> None:
        """Destroy a non-primary KEK version; its record stays for ``status``."""
        with self._lock():
            content = self._read()
            if int(content["primary"]) == version:
                msg = f"key version {version} is primary and cannot be retired"
                raise KeyManagementError(msg)
            entry = content["keys"].get(str(version))
            if entry is None or "wrapped" not in entry:
                return
            del entry["wrapped"]
            entry["retired_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._write(content)

    def status(self) -> list[KeyVersion]:
        """Every KEK version, oldest first, retired ones included."""
        content = self._read()
        return [
            KeyVersion(
                version=int(v),
                created_at=entry["created_at"],
                primary=int(v) == content["primary"],
                retired_at=entry.get("retired_at"),
            )
            for v, entry in sorted(
                content["keys"].items(), key=lambda item: int(item[0])
            )
        ]

    def public_key(self) -> tuple[int, bytes]:
        """The current signing key's version and raw Ed25519 public key."""
        signing = self._read()["signing"]
        version = int(signing["current"])
        return version, base64.urlsafe_b64decode(
            signing["versions"][str(version)]["public"]
        )

    def signing_public_key(self, version: int) -> bytes:
        """The raw public key of signing key ``version`` (a token's ``kid``).

        Raises:
            KeyManagementError: No such version.
        """
        entry = self._read()["signing"]["versions"].get(str(version))
        if entry is None:
            msg = f"signing key version {version} is not in the keyring {self._path}"
            raise KeyManagementError(msg)
        return base64.urlsafe_b64decode(entry["public"])

    def pseudonymisation_key(self) -> bytes:
        """The HMAC key for pseudonymous tokens, created on first use.

        It does not rotate with the KEKs: a new key would break every join on
        tokens made before it.
        """
        with self._lock():
            content = self._read()
            sealed = content.get("pseudonymisation")
            if sealed is None:
                sealed = self._seal(secrets.token_bytes(32), b"pseudonymisation")
                content["pseudonymisation"] = sealed
                self._write(content)
        return self._open(sealed, b"pseudonymisation")

    def bundle_signing_key(self) -> ec.EllipticCurvePrivateKey:
        """The ECDSA P-256 key that signs model bundles, created on first use.

        A key of its own (not the Ed25519 audit and token key): OpenSSF
        model-signing verifies with elliptic-curve keys, and a bundle's signature
        must check with its tools. Sealed under the master key like every key here.
        """
        with self._lock():
            content = self._read()
            entry = content.get("bundle_signing")
            if entry is None:
                key = ec.generate_private_key(ec.SECP256R1())
                entry = {
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "wrapped": self._seal(
                        key.private_bytes(
                            Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
                        ),
                        _BUNDLE_CONTEXT,
                    ),
                }
                content["bundle_signing"] = entry
                self._write(content)
        loaded = load_der_private_key(
            self._open(entry["wrapped"], _BUNDLE_CONTEXT), None
        )
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            msg = f"the keyring {self._path} holds no ECDSA bundle signing key"
            raise KeyManagementError(msg)
        return loaded

    def bundle_public_key(self) -> bytes:
        """The bundle signing key's public half (PEM, SubjectPublicKeyInfo)."""
        return (
            self.bundle_signing_key()
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )

    def sign(self, message: bytes) -> tuple[int, bytes]:
        """Sign with the current Ed25519 signing key; returns its version (the key id)."""
        if self._signer is None:
            signing = self._read()["signing"]
            version = int(signing["current"])
            raw = self._open(
                signing["versions"][str(version)]["wrapped"],
                f"signing:v{version}".encode(),
            )
            self._signer = (version, Ed25519PrivateKey.from_private_bytes(raw))
        version, key = self._signer
        return version, key.sign(message)

    def verify(self, version: int, message: bytes, signature: bytes) -> bool:
        """Check a signature with the public half of signing key ``version``."""
        public = self._verifiers.get(version)
        if public is None:
            entry = self._read()["signing"]["versions"].get(str(version))
            if entry is None:
                return False
            public = Ed25519PublicKey.from_public_bytes(
                base64.urlsafe_b64decode(entry["public"])
            )
            self._verifiers[version] = public
        try:
            public.verify(signature, message)
        except Exception:  # cryptography raises InvalidSignature
            return False
        return True

    def _new_signing_key(self, version: int) -> dict[str, Any]:
        signing = Ed25519PrivateKey.generate()
        raw = signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public = signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wrapped": self._seal(raw, f"signing:v{version}".encode()),
            "public": _b64(public),
        }

    def _upgrade(self, content: dict[str, Any], env: str) -> None:
        """Seal a format-1 keyring (one signing key, no env) as format 2."""
        signing = content["signing"]
        version = str(signing["version"])
        self._open(
            signing["wrapped"], f"signing:v{version}".encode()
        )  # master key check
        content["signing"] = {
            "current": int(version),
            "versions": {
                version: {
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "wrapped": signing["wrapped"],
                    "public": signing["public"],
                }
            },
        }
        content["format"], content["env"] = FORMAT, env
        self._write(content)

    def _new_kek(self, version: int) -> dict[str, Any]:
        return {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wrapped": self._seal(secrets.token_bytes(32), f"kek:v{version}".encode()),
        }

    def _kek(self, content: dict[str, Any], version: int) -> bytes:
        entry = content["keys"].get(str(version))
        if entry is None:
            msg = f"key version {version} is not in the keyring {self._path}"
            raise KeyManagementError(msg)
        if "wrapped" not in entry:
            msg = f"key version {version} was retired on {entry['retired_at']}"
            raise KeyManagementError(msg)
        return self._open(entry["wrapped"], f"kek:v{version}".encode())

    def _seal(self, secret: bytes, context: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE)
        return _b64(nonce + self._master.encrypt(nonce, secret, context))

    def _open(self, sealed: str, context: bytes) -> bytes:
        blob = base64.urlsafe_b64decode(sealed)
        try:
            return self._master.decrypt(blob[:_NONCE], blob[_NONCE:], context)
        except InvalidTag:
            msg = f"the master key does not open the keyring {self._path}"
            raise KeyManagementError(msg) from None

    def _read(self) -> dict[str, Any]:
        """The keyring's content, after checking its seal.

        Every field (key versions, the primary, the signing public keys, the env)
        is sealed under the master key (AES-GCM over the canonical content as
        associated data): a keyring edited without it (a swapped-in public key, a
        changed primary) is refused.
        """
        if not self._path.is_file():
            msg = f"no keyring at {self._path}; run `bankplatform keys init`"
            raise KeyManagementError(msg)
        content: dict[str, Any] = json.loads(self._path.read_text())
        if content.get("format") != FORMAT:
            msg = f"keyring {self._path} is format {content.get('format')}; run `bankplatform keys init` to seal it as format {FORMAT}"
            raise KeyManagementError(msg)
        seal = base64.urlsafe_b64decode(str(content.pop("seal", "")))
        try:
            self._master.decrypt(
                seal[:_NONCE], seal[_NONCE:], _SEAL_CONTEXT + _canonical(content)
            )
        except (InvalidTag, ValueError):
            current = content.get("signing", {}).get("current")
            wrapped = (
                content.get("signing", {}).get("versions", {}).get(str(current), {})
            )
            self._open(wrapped.get("wrapped", ""), f"signing:v{current}".encode())
            msg = f"keyring {self._path} was changed outside the key service (its seal does not verify)"
            raise KeyManagementError(msg) from None
        return content

    def _write(self, content: dict[str, Any]) -> None:
        content = {k: v for k, v in content.items() if k != "seal"}
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._master.encrypt(nonce, b"", _SEAL_CONTEXT + _canonical(content))
        content["seal"] = _b64(nonce + sealed)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            json.dump(content, stream, indent=2)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(self._path)


def open_keyring(settings: SecuritySettings) -> LocalKeyring:
    """The workspace env's local keyring, opened with its master key."""
    return LocalKeyring(settings.keyring, load_master_key(settings.master_key_file))


def _canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def _bound(context: bytes, version: int) -> bytes:
    return context + f"|kek:v{version}".encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()
