"""What the audit log says about a model version: who trained it and as which
identity, from which runs, its gate verdict and evidence, its approval and whether
it was decommissioned.

The audit log is the record: signed, hash-chained, written by the key service for
the identity it proved. The registry's tags say the same things for MLflow's UI,
but anyone with registry access can edit them, so no decision reads them; where a
tag says otherwise, ``tag_disagreements`` names it for the people reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REGISTER = "model.register"
EVALUATE = "model.evaluate"
APPROVE = "model.approve"
PROMOTE = "model.promote"
REJECT = "model.reject"
DECOMMISSION = "model.decommission"
DECOMMISSIONED = "decommissioned"


@dataclass
class VersionFacts:
    """What the audit log says about a version (the registry's tags may be edited).

    Attributes:
        trainer: Who started the training that registered it.
        registered_by: The identity that recorded the registration (the training
            service).
        run_id: The MLflow run that logged it, as the registration recorded it.
        kedro_run_id: The Kedro run that trained it (its lineage run), as the
            registration recorded it.
        artefact_sha256: The hash of its model files, as the registration recorded it.
        registered_at: When the registration was recorded (ISO 8601, UTC).
        feature_service: The feature service it was trained on, and its version.
        gate_status: The latest evaluation's verdict, empty if never evaluated.
        evaluated_seq: That evaluation record's place in the log.
        failed_gates: Gates that failed in that evaluation.
        evidence_manifest: Relative path of the evidence manifest.
        evidence_manifest_sha256: Its hash at evaluation.
        evidence_sha256: Every evidence file's hash at evaluation.
        approval: ``approved`` or ``rejected``, the latest of the two; empty if neither.
        decommissioned: A decommission of it was recorded (for good: the registry's
            ``status`` tag only mirrors it for MLflow's UI).
        approved_bundle: The digest of the signed bundle the latest approval names.
        promoted_bundle: The digest the latest promotion of it names.
        approver: Who recorded that approval.
    """

    trainer: str = ""
    registered_by: str = ""
    run_id: str = ""
    kedro_run_id: str = ""
    artefact_sha256: str = ""
    registered_at: str = ""
    feature_service: str = ""
    feature_service_version: str = ""
    gate_status: str = ""
    evaluated_seq: int = 0
    failed_gates: tuple[str, ...] = ()
    evidence_manifest: str = ""
    evidence_manifest_sha256: str = ""
    evidence_sha256: dict[str, str] | None = None
    approval: str = ""
    decommissioned: bool = False
    approved_bundle: str = ""
    promoted_bundle: str = ""
    approver: str = ""


def fold_version_facts(
    records: Iterable[Mapping[str, Any]], resource: str
) -> VersionFacts:
    """Fold the allowed records of ``resource`` (``model:<name>/<version>``), oldest
    first, into its facts."""
    facts = VersionFacts()
    for record in records:
        if record.get("resource") != resource or record.get("outcome") != "allowed":
            continue
        details = record.get("details") or {}
        action = record.get("action")
        if action == REGISTER:
            facts.trainer = str(details.get("trainer", ""))
            facts.registered_by = str(record.get("actor", ""))
            facts.run_id = str(details.get("run_id", ""))
            facts.kedro_run_id = str(details.get("kedro_run_id", ""))
            facts.artefact_sha256 = str(details.get("artefact_sha256", ""))
            facts.registered_at = str(record.get("time", ""))
            facts.feature_service = str(details.get("feature_service", ""))
            facts.feature_service_version = str(
                details.get("feature_service_version", "")
            )
        elif action == EVALUATE:
            facts.gate_status = str(details.get("gate_status", ""))
            facts.evaluated_seq = int(record.get("seq", 0) or 0)
            facts.failed_gates = tuple(details.get("failed_gates", ()))
            facts.evidence_manifest = str(details.get("evidence_manifest", ""))
            facts.evidence_manifest_sha256 = str(
                details.get("evidence_manifest_sha256", "")
            )
            facts.evidence_sha256 = dict(details.get("evidence_sha256") or {})
        elif action == APPROVE:
            facts.approval = "approved"
            facts.approver = str(record.get("actor", ""))
            facts.approved_bundle = str(details.get("bundle_digest", ""))
        elif action == REJECT:
            facts.approval = "rejected"
            facts.approved_bundle = ""
        elif action == PROMOTE:
            facts.promoted_bundle = str(details.get("bundle_digest", ""))
        elif action == DECOMMISSION:
            facts.decommissioned = True
    return facts


def tag_disagreements(tags: Mapping[str, Any], facts: VersionFacts) -> list[str]:
    """Each registry tag that says otherwise than the audit log, in words
    (``trainer tag says 'x', the audit log 'y'``); a missing tag is no disagreement."""
    recorded = {
        "trainer": facts.trainer,
        "gate_status": facts.gate_status,
        "approval_status": facts.approval,
        "status": DECOMMISSIONED if facts.decommissioned else "",
    }
    found = []
    for tag, says in recorded.items():
        value = str(tags.get(tag, ""))
        if tag == "gate_status" and value == "pending" and not says:
            continue  # registered, not evaluated yet: the tag's own word for nothing
        if tag in tags and value != says:
            found.append(
                f"{tag} tag says {value!r}, the audit log {says or 'nothing'!r}"
            )
    return found
