"""The package stage, on the validator's side: gather what a bundle holds and have
the key service sign it.

A bundle holds the registered model's files (``model/``), the workspace's
``requirements.lock``, the feature service it was trained on (``feature_service.json``),
the gate report and every evidence file's hash (``evidence/``), a CycloneDX SBOM
(``sbom.cdx.json``) of the pinned packages and the model; the key service adds the
provenance statement and signs (see ``bankplatform.keyservice.bundles``). Built from
the same inputs, a bundle has the same files and so the same digest: approving
re-uses the bundle ``model package`` made.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bankplatform.governance.evidence import GATE_REPORT
from bankplatform.governance.registry import GovernanceError
from bankplatform.lineage.provenance import LOCK_FILE
from bankplatform.lineage.records import lineage_run_of
from bankplatform.security.bundles import MODEL_FOLDER
from bankplatform.training.registry import registered_model_files

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from bankplatform.governance.audit_facts import VersionFacts

SBOM = "sbom.cdx.json"
_BUNDLE_NAMESPACE = uuid.UUID("6f1c3a52-5d0e-4d55-9c39-5b8f8a3b7e11")

# Where a bundle keeps the gate report its approval judged (the cut-off with it).
BUNDLED_GATE_REPORT = "evidence/gate_report.json"


def bundle_files(
    client: MlflowClient, root: Path, model: str, version: int, facts: VersionFacts
) -> dict[str, bytes]:
    """Every file of a version's bundle but the provenance (the key service's).

    Raises:
        GovernanceError: The workspace has no lock file, the version no recorded
            evaluation or feature service, or its gate report is missing.
    """
    lock = root / LOCK_FILE
    if not lock.is_file():
        msg = f"no {LOCK_FILE} in {root}: a bundle pins the environment it runs in"
        raise GovernanceError(msg)
    if not facts.evidence_manifest:
        msg = f"version {version} has no recorded evaluation: nothing to package"
        raise GovernanceError(msg)
    report = root / Path(facts.evidence_manifest).parent / GATE_REPORT
    if not report.is_file():
        msg = f"the gate report {report.relative_to(root)} is missing"
        raise GovernanceError(msg)
    files = {
        f"{MODEL_FOLDER}/{name}": data
        for name, data in registered_model_files(client, model, version).items()
    }
    files["requirements.lock"] = lock.read_bytes()
    files["feature_service.json"] = _json(_feature_service(facts))
    files[BUNDLED_GATE_REPORT] = report.read_bytes()
    files["evidence/hashes.json"] = _json(
        {
            "manifest": facts.evidence_manifest,
            "manifest_sha256": facts.evidence_manifest_sha256,
            "files": facts.evidence_sha256 or {},
        }
    )
    files[SBOM] = sbom(files["requirements.lock"], model, version, facts)
    return files


def training_lineage(client: MlflowClient, facts: VersionFacts) -> dict[str, Any]:
    """What the training run's lineage recorded: input digests, code commit, lock."""
    try:
        experiment = client.get_run(facts.run_id).info.experiment_id
    except Exception:  # a run the store no longer has: no lineage to state
        return {}
    run = lineage_run_of(client, experiment, facts.kedro_run_id)
    if run is None:
        return {}
    tags = run.data.tags
    return {
        "inputs": {
            key.removeprefix("input.").removesuffix(".sha256"): value
            for key, value in sorted(tags.items())
            if key.startswith("input.") and key.endswith(".sha256")
        },
        "git_commit": tags.get("git.commit", ""),
        "git_dirty": tags.get("git.dirty", ""),
        "lock_sha256": tags.get("env.lock_sha256", ""),
    }


def sbom(lock: bytes, model: str, version: int, facts: VersionFacts) -> bytes:
    """A CycloneDX 1.6 SBOM: the model, and every package the lock pins.

    Deterministic for the same lock and version (serial number and timestamp
    derive from them), so the same inputs make the same bundle.
    """
    from cyclonedx.model import HashAlgorithm, HashType  # noqa: PLC0415
    from cyclonedx.model.bom import Bom  # noqa: PLC0415
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
    from cyclonedx.output.json import JsonV1Dot6  # noqa: PLC0415
    from packageurl import PackageURL  # noqa: PLC0415

    subject = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=model,
        version=str(version),
        bom_ref=f"model:{model}/{version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=facts.artefact_sha256)],
    )
    bom = Bom()
    bom.serial_number = uuid.uuid5(
        _BUNDLE_NAMESPACE, f"{model}/{version}/{hashlib.sha256(lock).hexdigest()}"
    )
    bom.metadata.timestamp = (
        datetime.fromisoformat(facts.registered_at)
        if facts.registered_at
        else datetime(1970, 1, 1, tzinfo=UTC)
    )
    bom.metadata.component = subject
    for name, pinned in _pins(lock.decode()):
        component = Component(
            type=ComponentType.LIBRARY,
            name=name,
            version=pinned,
            bom_ref=f"pkg:pypi/{name}@{pinned}",
            purl=PackageURL(type="pypi", name=name, version=pinned),
        )
        bom.components.add(component)
        bom.register_dependency(subject, [component])
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    return text.encode() + b"\n"


def _pins(lock: str) -> list[tuple[str, str]]:
    pins = []
    for line in lock.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith(("#", " ")):
            pins.append((name.lower(), version.split()[0]))
    return sorted(pins)


def _feature_service(facts: VersionFacts) -> dict[str, Any]:
    from bankplatform.feature_repo import FEATURE_SERVICES  # noqa: PLC0415
    from bankplatform.feature_repo.services import service_features  # noqa: PLC0415

    service = FEATURE_SERVICES.get(facts.feature_service)
    if service is None:
        msg = f"the registration names feature service {facts.feature_service or '(none)'!r}, which the workspace does not define"
        raise GovernanceError(msg)
    defined = str(service.tags.get("version", ""))
    if defined != facts.feature_service_version:
        msg = f"feature service {service.name} is version {defined} now; the model was trained on version {facts.feature_service_version}"
        raise GovernanceError(msg)
    return {
        "name": service.name,
        "version": defined,
        "description": service.description,
        "features": service_features(service),
    }


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
