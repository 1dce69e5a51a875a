"""Signed model bundles as their readers see them: unpack, verify offline, read.

A bundle is what the package stage makes of an approved model version: a folder
``<model>-v<version>/`` (the model's files, the pinned requirements, the feature
service, the gate report and evidence hashes, a CycloneDX SBOM, a provenance
statement) and beside it ``model.sig``: OpenSSF model-signing's format, a Sigstore
bundle holding a DSSE envelope over an in-toto statement whose predicate lists the
sha256 of every file and whose subject digest is **the bundle's digest**. Only the
key service signs (ECDSA P-256, a key sealed in its keyring); anyone with its
public key verifies, here or with ``model_signing verify key``, offline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bankplatform.errors import BankplatformError

SIGNATURE = "model.sig"
PUBLIC_KEY = "bundle-signing.pub"
MODEL_FOLDER = "model"
PROVENANCE = "provenance.json"
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


class BundleRefused(BankplatformError):
    """A bundle that is not what was signed and approved; the message says why."""


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every file matches the key service's signature.

    Attributes:
        digest: The signed statement's subject digest (sha256, hex): the bundle's
            identity in the audit log's approval and promotion records.
        folder: The bundle's content folder (``<model>-v<version>``).
        files: Relative path -> sha256 of each signed file.
    """

    digest: str
    folder: Path
    files: dict[str, str]

    @property
    def model_folder(self) -> Path:
        """The MLflow model inside the bundle."""
        return self.folder / MODEL_FOLDER

    def provenance(self) -> dict[str, Any]:
        """The provenance statement the key service wrote into the bundle."""
        content: dict[str, Any] = json.loads(
            (self.folder / PROVENANCE).read_text(encoding="utf-8")
        )
        return content


def statement(signature_file: Path) -> dict[str, Any]:
    """The in-toto statement a signature carries (not verified: see ``verify_bundle``).

    Raises:
        BundleRefused: Not a model-signing signature.
    """
    try:
        envelope = json.loads(signature_file.read_text(encoding="utf-8"))[
            "dsseEnvelope"
        ]
        content: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
        content["subject"][0]["digest"]["sha256"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        msg = f"{signature_file.name} is not a model-signing signature"
        raise BundleRefused(msg) from None
    return content


def verify_bundle(root: Path, public_key_pem: bytes) -> VerifiedBundle:
    """Check a bundle folder (one content folder and ``model.sig``) offline.

    Raises:
        BundleRefused: Not signed by the key whose public half is given, or a file
            added, removed or changed since signing (each with its own reason).
    """
    import model_signing.verifying  # noqa: PLC0415 - 1 s of imports, for verifiers only

    signature = root / SIGNATURE
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not signature.is_file() or len(folders) != 1:
        msg = f"not a bundle: {root.name} holds {len(folders)} folders and {'a' if signature.is_file() else 'no'} {SIGNATURE}"
        raise BundleRefused(msg)
    signed = statement(signature)
    with tempfile.TemporaryDirectory(prefix="bankplatform-verify-") as scratch:
        key_file = Path(scratch) / PUBLIC_KEY
        key_file.write_bytes(public_key_pem)
        try:
            model_signing.verifying.Config().use_elliptic_key_verifier(  # type: ignore[no-untyped-call]
                public_key=key_file
            ).verify(folders[0], signature)
        except ValueError as error:
            raise BundleRefused(_why(str(error))) from None
        except (
            Exception
        ) as error:  # a malformed key or envelope, in the library's words
            msg = f"the bundle's signature cannot be checked ({type(error).__name__}: {str(error)[:200]})"
            raise BundleRefused(msg) from None
    resources = signed["predicate"].get("resources", [])
    return VerifiedBundle(
        digest=str(signed["subject"][0]["digest"]["sha256"]),
        folder=folders[0],
        files={str(r["name"]): str(r["digest"]) for r in resources},
    )


def unpack(archive: bytes, destination: Path) -> Path:
    """Extract a bundle archive (as the key service sends it) under ``destination``.

    Raises:
        BundleRefused: Not a tar archive, too big, or with links or paths that leave
            the folder.
    """
    if len(archive) > MAX_ARCHIVE_BYTES:
        msg = f"bundle archive of {len(archive):,} bytes: at most {MAX_ARCHIVE_BYTES:,}"
        raise BundleRefused(msg)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            if any(not (m.isfile() or m.isdir()) for m in tar.getmembers()):
                raise BundleRefused("bundle archive holds links or devices")
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as error:
        msg = f"not a bundle archive ({type(error).__name__}: {str(error)[:200]})"
        raise BundleRefused(msg) from None
    return destination


def pack(root: Path) -> bytes:
    """A bundle folder as an uncompressed tar (names relative to ``root``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return buffer.getvalue()


def files_sha256(files: Mapping[str, bytes]) -> str:
    """One hash over a model's files (relative POSIX path and content of each), in
    path order: the artefact hash the training service records at registration,
    recomputed over the files of a folder (``training.registry.artefact_sha256``) or
    as the key service receives them."""
    digest = hashlib.sha256()
    for name in sorted(files, key=lambda n: PurePosixPath(n).parts):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def _why(library_message: str) -> str:
    """model-signing's verification error, in one line."""
    text = " ".join(library_message.split())
    if "Signature mismatch" in text:
        return f"the bundle's files differ from what was signed: {text.removeprefix('Signature mismatch: ')[:300]}"
    if "signature" in text.lower() and "verif" in text.lower():
        return (
            f"the bundle is not signed by the key service's bundle key ({text[:200]})"
        )
    return f"the bundle's signature does not hold: {text[:300]}"
