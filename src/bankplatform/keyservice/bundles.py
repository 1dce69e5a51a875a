"""The package stage on the key holder's side: check a bundle against the audit
log, write its provenance, sign it and keep it in the store only this service
writes.

A client (the validator's ``model approve`` or ``model package``) sends the files;
nothing it says is taken on trust. The model's files must hash to the artefact hash
the **training service** recorded at registration; the gate report and the evidence
hashes must be those the evaluation recorded; the version must have passed its
gates, not be decommissioned, and the packager must not be its trainer. The
provenance statement is written here from the audit log (trainer, runs, approver);
the lineage the client read from the training run (input digests, code commit) is
copied into it under that name. The signature is OpenSSF model-signing's, made with
an ECDSA P-256 key sealed in the keyring (its public API takes a PEM file: the key is
handed to it encrypted under a one-time password, in a 0600 file removed at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)

from bankplatform.security.bundles import (
    MODEL_FOLDER,
    PROVENANCE,
    SIGNATURE,
    files_sha256,
    pack,
    statement,
)

if TYPE_CHECKING:
    from bankplatform.governance.audit_facts import VersionFacts
    from bankplatform.keyservice.local_kms import LocalKeyring
    from bankplatform.security.policy import Principal

PROVENANCE_FORMAT = "bankplatform.provenance/v1"
GATE_REPORT_FILE = "evidence/gate_report.json"
EVIDENCE_HASHES_FILE = "evidence/hashes.json"
REQUIRED_FILES = (
    f"{MODEL_FOLDER}/MLmodel",
    "requirements.lock",
    "feature_service.json",
    "sbom.cdx.json",
    GATE_REPORT_FILE,
    EVIDENCE_HASHES_FILE,
)
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_FILES = 200
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}"
_FILE = re.compile(rf"^{_PART}(/{_PART}){{0,6}}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_META = "packaged.json"
_BUNDLE = "bundle"  # beside packaged.json: what is archived and sent


@dataclass(frozen=True)
class PackageRequest:
    """What a client sends to be packaged.

    Attributes:
        model: Registered model name.
        version: Its version.
        files: Bundle-relative path -> content (the provenance is the service's).
        lineage: What the training run's lineage recorded (``inputs``: name ->
            sha256; ``git_commit``; ``git_dirty``; ``lock_sha256``), copied as stated.
    """

    model: str
    version: int
    files: dict[str, bytes]
    lineage: dict[str, Any]

    @property
    def resource(self) -> str:
        return f"model:{self.model}/{self.version}"

    @property
    def folder_name(self) -> str:
        return f"{self.model}-v{self.version}"


def request_problem(request: PackageRequest) -> str:
    """What makes a request malformed (names, sizes, missing parts); empty if none."""
    if len(request.files) > MAX_FILES:
        return f"{len(request.files)} files: a bundle has at most {MAX_FILES}"
    for name in sorted(request.files):
        parts = name.split("/")
        if (
            not _FILE.match(name)
            or ".." in parts
            or "__pycache__" in parts
            or name.endswith(".pyc")
            or name == PROVENANCE
        ):
            return f"not an acceptable bundle file name: {name[:80]!r}"
    size = sum(len(content) for content in request.files.values())
    if size > MAX_BUNDLE_BYTES:
        return f"bundle of {size:,} bytes: at most {MAX_BUNDLE_BYTES:,}"
    missing = [name for name in REQUIRED_FILES if name not in request.files]
    if missing:
        return f"bundle lacks {', '.join(missing)}"
    return ""


def governance_problem(
    request: PackageRequest,
    facts: VersionFacts,
    packager: Principal,
    training_service: str,
) -> str:
    """Why the audit log does not let this bundle be signed; empty if it does."""
    version = request.version
    found = files_sha256(_model_files(request))
    checks = [
        (
            not facts.registered_by,
            f"the audit log has no registration of {request.model} version {version}",
        ),
        (
            bool(training_service) and facts.registered_by != training_service,
            f"version {version} was registered by {facts.registered_by}, not the training service ({training_service})",
        ),
        (
            facts.decommissioned,
            f"version {version} is decommissioned: it is never packaged again",
        ),
        (
            facts.gate_status != "passed",
            f"version {version}'s gates are {facts.gate_status or 'not evaluated'}: only a version whose gates passed is packaged",
        ),
        (
            facts.trainer in {packager.name, packager.on_behalf_of},
            f"{packager.name} trained version {version} and may not package it for approval (maker-checker)",
        ),
        (
            found != facts.artefact_sha256,
            f"the model files hash to {found[:12]}..., the registration recorded {facts.artefact_sha256[:12] or 'nothing'}...: not the trained model",
        ),
    ]
    for failed, problem in checks:
        if failed:
            return problem
    return _evidence_problem(request, facts)


def _evidence_problem(request: PackageRequest, facts: VersionFacts) -> str:
    try:
        stated = json.loads(request.files[EVIDENCE_HASHES_FILE])
    except ValueError:
        return f"{EVIDENCE_HASHES_FILE} is not JSON"
    recorded = facts.evidence_sha256 or {}
    if stated != {
        "manifest": facts.evidence_manifest,
        "manifest_sha256": facts.evidence_manifest_sha256,
        "files": recorded,
    }:
        return "the bundle's evidence hashes are not those the evaluation recorded"
    report = hashlib.sha256(request.files[GATE_REPORT_FILE]).hexdigest()
    if report not in recorded.values():
        return "the bundle's gate report is not the one the evaluation recorded"
    return ""


def provenance(
    request: PackageRequest,
    facts: VersionFacts,
    packager: Principal,
    audit_head: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance statement: the audit log's facts, the lineage as stated, and
    the audit log's signed head at packaging (a witness that travels with the
    bundle: ``audit verify`` fails on a log shorter than any bundle's head)."""
    lineage = request.lineage
    return {
        "format": PROVENANCE_FORMAT,
        "model": {
            "name": request.model,
            "version": request.version,
            "artefact_sha256": facts.artefact_sha256,
        },
        "training": {
            "trainer": facts.trainer,
            "registered_by": facts.registered_by,
            "mlflow_run_id": facts.run_id,
            "kedro_run_id": facts.kedro_run_id,
        },
        "lineage_as_recorded": {
            "inputs": dict(lineage.get("inputs") or {}),
            "git_commit": str(lineage.get("git_commit", "")),
            "git_dirty": str(lineage.get("git_dirty", "")),
            "training_lock_sha256": str(lineage.get("lock_sha256", "")),
        },
        "environment": {
            "requirements_lock_sha256": hashlib.sha256(
                request.files["requirements.lock"]
            ).hexdigest(),
        },
        "gates": {
            "status": facts.gate_status,
            "evidence_manifest": facts.evidence_manifest,
            "evidence_manifest_sha256": facts.evidence_manifest_sha256,
        },
        "approver": packager.name,
        "audit_head": audit_head or {},
    }


class BundleStore:
    """Signed bundles, one folder per digest, in a folder only the key service writes."""

    def __init__(self, folder: Path, keyring: LocalKeyring) -> None:
        self.folder = folder
        self._keyring = keyring

    def write(
        self, request: PackageRequest, statement_of_provenance: dict[str, Any]
    ) -> dict[str, Any]:
        """Write, sign and keep a checked bundle; the same content keeps one folder.

        Returns:
            ``digest``, ``bytes``, ``files`` and the ``signature`` file's content.
        """
        import model_signing.signing  # noqa: PLC0415 - its imports take a second

        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.folder / f".staging-{secrets.token_hex(8)}"
        signed = staging / _BUNDLE
        content = signed / request.folder_name
        try:
            for name, data in {
                **request.files,
                PROVENANCE: _json(statement_of_provenance),
            }.items():
                target = content / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            key_file, password = self._sealed_key_file(staging)
            try:
                # model-signing 1.1.1 annotates the password as str; PEM decryption
                # in `cryptography` takes bytes (a str fails).
                model_signing.signing.Config().use_elliptic_key_signer(  # type: ignore[no-untyped-call]
                    private_key=key_file,
                    password=password,  # type: ignore[arg-type]
                ).sign(content, signed / SIGNATURE)
            finally:
                key_file.unlink(missing_ok=True)
            digest = statement(signed / SIGNATURE)["subject"][0]["digest"]["sha256"]
            final = self.folder / digest
            if final.exists():
                shutil.rmtree(staging)  # the same files, signed before: one bundle
            else:
                (staging / _META).write_bytes(
                    _json({"resource": request.resource, "digest": digest})
                )
                staging.rename(final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return {
            "digest": digest,
            "bytes": _size(final / _BUNDLE / request.folder_name),
            "files": len(request.files) + 1,
        }

    def carried_heads(self) -> list[tuple[str, dict[str, Any]]]:
        """The audit heads the stored bundles carry, named by bundle."""
        found = []
        for path in sorted(self.folder.glob(f"*/{_BUNDLE}/*/{PROVENANCE}")):
            try:
                head = json.loads(path.read_text()).get("audit_head") or {}
            except (OSError, ValueError, AttributeError):
                continue
            if head:
                found.append((f"bundle {path.parents[2].name[:12]}...", head))
        return found

    def resource_of(self, digest: str) -> str:
        """The ``model:<name>/<version>`` a stored bundle was packaged for; empty if none."""
        if not _DIGEST.match(digest):
            return ""
        try:
            meta = json.loads((self.folder / digest / _META).read_text())
        except (OSError, ValueError):
            return ""
        return str(meta.get("resource", ""))

    def archive(self, digest: str) -> bytes:
        """A stored bundle (content folder and signature) as a tar, or empty if none."""
        if not self.resource_of(digest):
            return b""
        return pack(self.folder / digest / _BUNDLE)

    def _sealed_key_file(self, staging: Path) -> tuple[Path, bytes]:
        password = secrets.token_urlsafe(32).encode()
        pem = self._keyring.bundle_signing_key().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
        )
        path = staging / "signing-key.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pem)
        return path, password


def _model_files(request: PackageRequest) -> dict[str, bytes]:
    prefix = f"{MODEL_FOLDER}/"
    return {
        name.removeprefix(prefix): data
        for name, data in request.files.items()
        if name.startswith(prefix)
    }


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


__all__ = [
    "BundleStore",
    "PackageRequest",
    "governance_problem",
    "provenance",
    "request_problem",
]
