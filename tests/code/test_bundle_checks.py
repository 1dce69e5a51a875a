"""The key service's checks before it signs a bundle, one refusal each: what the
audit log says of the version against what the client sent."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from bankplatform.governance.audit_facts import VersionFacts
from bankplatform.keyservice.bundles import (
    PackageRequest,
    governance_problem,
    provenance,
    request_problem,
)
from bankplatform.security.policy import Principal
from bankplatform.training.registry import artefact_sha256

MODEL_FILES = {"MLmodel": b"flavors: {}\n", "pd_model.py": b"x = 1\n"}
REPORT = b'{"gates": []}\n'


def _artefact(files: dict[str, bytes]) -> str:
    """The registry's own hash of the files, written to a folder (what the training
    service records): the key service's in-memory hash must equal it."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        return artefact_sha256(Path(folder))


EVIDENCE = {
    "data/08_reporting/governance/m/1/gate_report.json": hashlib.sha256(
        REPORT
    ).hexdigest()
}
FACTS = VersionFacts(
    trainer="dana.scientist",
    registered_by="svc-training",
    run_id="r1",
    kedro_run_id="k1",
    artefact_sha256=_artefact(MODEL_FILES),
    gate_status="passed",
    evidence_manifest="data/08_reporting/governance/m/1/evidence_manifest.json",
    evidence_manifest_sha256="e" * 64,
    evidence_sha256=EVIDENCE,
)
VALIDATOR = Principal("victor.validator", frozenset({"model_validator"}), "user")


def _request(**changes: bytes) -> PackageRequest:
    files = {f"model/{k}": v for k, v in MODEL_FILES.items()}
    files.update(
        {
            "requirements.lock": b"xgboost==3.2.0\n",
            "feature_service.json": b"{}",
            "sbom.cdx.json": b"{}",
            "evidence/gate_report.json": REPORT,
            "evidence/hashes.json": json.dumps(
                {
                    "manifest": FACTS.evidence_manifest,
                    "manifest_sha256": FACTS.evidence_manifest_sha256,
                    "files": EVIDENCE,
                }
            ).encode(),
        }
    )
    files.update(changes)
    return PackageRequest("m", 1, files, {"inputs": {"extract": "a" * 64}})


def test_a_sound_request_is_signable_and_its_provenance_is_the_audit_logs() -> None:
    request = _request()
    assert request_problem(request) == ""
    assert governance_problem(request, FACTS, VALIDATOR, "svc-training") == ""
    statement = provenance(request, FACTS, VALIDATOR)
    assert statement["training"] == {
        "trainer": "dana.scientist",
        "registered_by": "svc-training",
        "mlflow_run_id": "r1",
        "kedro_run_id": "k1",
    }
    assert statement["approver"] == "victor.validator"
    assert statement["lineage_as_recorded"]["inputs"] == {"extract": "a" * 64}
    assert statement["environment"]["requirements_lock_sha256"] == (
        hashlib.sha256(b"xgboost==3.2.0\n").hexdigest()
    )


@pytest.mark.parametrize(
    ("facts", "packager", "request_changes", "reason"),
    [
        (
            VersionFacts(),
            VALIDATOR,
            {},
            "the audit log has no registration of m version 1",
        ),
        (
            replace(FACTS, registered_by="dana.scientist"),
            VALIDATOR,
            {},
            "registered by dana.scientist, not the training service (svc-training)",
        ),
        (replace(FACTS, decommissioned=True), VALIDATOR, {}, "is decommissioned"),
        (replace(FACTS, gate_status="failed"), VALIDATOR, {}, "gates are failed"),
        (replace(FACTS, gate_status=""), VALIDATOR, {}, "gates are not evaluated"),
        (
            FACTS,
            Principal("dana.scientist", frozenset({"model_validator"}), "user"),
            {},
            "trained version 1 and may not package it",
        ),
        (
            FACTS,
            Principal(
                "victor.validator",
                frozenset(),
                "service",
                on_behalf_of="dana.scientist",
            ),
            {},
            "may not package it for approval (maker-checker)",
        ),
        (
            FACTS,
            VALIDATOR,
            {"model/pd_model.py": b"x = 1\nimport os\n"},
            "the model files hash to",
        ),
        (
            FACTS,
            VALIDATOR,
            {"model/extra.py": b""},
            "not the trained model",
        ),
        (
            FACTS,
            VALIDATOR,
            {"evidence/hashes.json": b'{"files": {}}'},
            "not those the evaluation recorded",
        ),
        (
            FACTS,
            VALIDATOR,
            {"evidence/gate_report.json": b'{"gates": ["forged"]}'},
            "gate report is not the one the evaluation recorded",
        ),
    ],
)
def test_each_reason_to_refuse_a_signature(
    facts: VersionFacts,
    packager: Principal,
    request_changes: dict[str, bytes],
    reason: str,
) -> None:
    problem = governance_problem(
        _request(**request_changes), facts, packager, "svc-training"
    )
    assert reason in problem


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../escape", "not an acceptable bundle file name"),
        ("/etc/passwd", "not an acceptable bundle file name"),
        ("model/../../x", "not an acceptable bundle file name"),
        ("provenance.json", "not an acceptable bundle file name"),
        (
            "model/__pycache__/pd_model.cpython-311.pyc",
            "not an acceptable bundle file name",
        ),
    ],
)
def test_malformed_requests_are_named(name: str, reason: str) -> None:
    assert reason in request_problem(_request(**{name: b"x"}))
    request = _request()
    del request.files["sbom.cdx.json"]
    assert request_problem(request) == "bundle lacks sbom.cdx.json"
