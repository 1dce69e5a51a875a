"""The governed lifecycle of a model version: approve, reject, promote, roll back,
decommission.

Maker-checker, bound to the registry: approval needs the ``model_validator`` role,
a validator who is not the person who trained the version, passed gates, and
evidence files that still match their recorded hashes; promotion to ``champion``
needs the ``model_risk_officer`` role. Who trained a version, its gate status and
its evidence hashes, and whether it was decommissioned, are read from the **audit
log** (signed, hash-chained), never from the version's MLflow tags, which anyone with
registry access can edit: the tags are a copy written for MLflow's UI, and no
decision here reads them.

Every outcome is audited, refusals too: exactly one record per attempt, with
the alias changes (``{alias: [from, to]}``) that ``history`` rebuilds from. The
role is checked first (a missing role is never hidden behind a bad argument),
then the model name the person typed, the version and the reason, each refusal
recorded under the version the attempt names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bankplatform.errors import BankplatformError
from bankplatform.governance.audit_facts import (
    DECOMMISSIONED,
    VersionFacts,
    fold_version_facts,
)
from bankplatform.governance.bundles import bundle_files, training_lineage
from bankplatform.governance.evidence import GATE_REPORT, changed_evidence, file_sha256
from bankplatform.governance.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    GovernanceError,
    alias_holder,
    check_model_name,
    check_version,
    get_version,
)
from bankplatform.security.policy import AccessDenied, Action

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from bankplatform.security.policy import Principal
    from bankplatform.security.runtime import WorkspaceSecurity

MAX_REASON = 1_000
# Actions whose records carry alias changes, for `history`.
LIFECYCLE_ACTIONS = (
    "model.approve",
    "model.reject",
    "model.promote",
    "model.rollback",
    "model.decommission",
)


@dataclass(frozen=True)
class Governed:
    """What every lifecycle action works with.

    Attributes:
        client: MLflow client of the env's tracking store.
        security: The env's security (policy and audit log).
        actor: Who acts (from a token, or a developer env's user).
        root: The workspace folder (evidence paths are relative to it).
        model: The workspace's registered model name.
        named: The model name the person typed, checked (and a refusal
            audited) by each attempt; ``None`` when it is ``model`` itself.
    """

    client: MlflowClient
    security: WorkspaceSecurity
    actor: Principal
    root: Path
    model: str
    named: str | None = None


def check_reason(reason: str) -> str:
    """A reason a person typed: 1 to 1,000 printable characters.

    Raises:
        GovernanceError: Empty, too long, or with control characters (NUL...).
    """
    text = reason.strip()
    if not text:
        msg = "a reason is required"
        raise GovernanceError(msg)
    if len(text) > MAX_REASON:
        msg = f"reason too long: {len(text):,} characters, at most {MAX_REASON:,}"
        raise GovernanceError(msg)
    if any(not ch.isprintable() for ch in text):
        msg = "reason contains control characters"
        raise GovernanceError(msg)
    return text


def approve(g: Governed, version: int) -> str:
    """Approve a version: it becomes the ``challenger``.

    Raises:
        AccessDenied: The actor lacks ``approve_model``.
        GovernanceError: Self-approval, failed or missing gates, changed
            evidence, gates judged with other settings than the env's, a
            decommissioned or already approved version.
    """
    version = check_version(version)
    with _Attempt(g, Action.APPROVE_MODEL, "model.approve", version) as attempt:
        facts = attempt.facts
        _refuse_decommissioned(facts)
        _refuse_maker(g, facts, "approve")
        if facts.gate_status != "passed":
            failed = ", ".join(facts.failed_gates) or "none recorded"
            attempt.refuse(
                f"gates {facts.gate_status} for version {version} (failed: {failed}); only a version whose gates passed can be approved"
                if facts.gate_status
                else f"version {version} has no recorded evaluation; run the evaluation pipeline first"
            )
        _refuse_changed_evidence(g, facts)
        _refuse_other_thresholds(g, facts)
        if alias_holder(g.client, g.model, CHALLENGER) == version:
            attempt.refuse(f"version {version} is already the approved challenger")
        if alias_holder(g.client, g.model, CHAMPION) == version:
            attempt.refuse(f"version {version} is already the champion")
        packaged = _packaged(g, version, facts, attempt)
        attempt.details["bundle_digest"] = packaged["digest"]
        attempt.set_alias(CHALLENGER, version)
        attempt.tag(
            approval_status="approved",
            approved_by=g.actor.name,
            bundle_digest=packaged["digest"],
        )
    return (
        f"approved {g.model} version {version}: it is the challenger (promotion needs a model risk officer); "
        f"bundle sha256:{packaged['digest']} ({packaged['bytes']:,} bytes, signed by the key service)"
    )


def package(g: Governed, version: int) -> dict[str, Any]:
    """Build a version's bundle and have the key service check, sign and keep it.

    The same inputs give the same bundle (and digest): approval packages again
    and finds the bundle this made. Packaging approves nothing.

    Returns:
        ``digest``, ``bytes`` and ``files`` of the signed bundle.

    Raises:
        AccessDenied: The actor may not approve models, or the audit log does not
            let the key service sign (both audited by it).
        GovernanceError: Something a bundle holds is missing (audited).
    """
    version = check_version(version)
    try:
        if g.named is not None:
            check_model_name(g.named, g.model)
        facts = version_facts(g.security, g.model, version)
        files = bundle_files(g.client, g.root, g.model, version, facts)
    except GovernanceError as error:
        g.security.audit_log().append(
            action="model.package",
            resource=f"model:{g.model}/{version}",
            outcome="denied",
            details={"reason": str(error)},
        )
        raise
    return g.security.bundles().package(
        g.model, version, files, training_lineage(g.client, facts)
    )


def _packaged(
    g: Governed, version: int, facts: VersionFacts, attempt: _Attempt
) -> dict[str, Any]:
    """The approval's bundle; a refusal of the attempt if it cannot be packaged."""
    try:
        files = bundle_files(g.client, g.root, g.model, version, facts)
        return g.security.bundles().package(
            g.model, version, files, training_lineage(g.client, facts)
        )
    except (AccessDenied, BankplatformError) as error:
        attempt.refuse(f"the bundle could not be packaged: {error}")
        raise  # unreachable: refuse raises


def reject(g: Governed, version: int, reason: str) -> str:
    """Reject a version with a reason; it loses the ``challenger`` alias if it held it.

    Raises:
        AccessDenied: The actor lacks ``reject_model``.
        GovernanceError: The actor trained it, it is the champion or decommissioned.
    """
    version = check_version(version)
    with _Attempt(g, Action.REJECT_MODEL, "model.reject", version) as attempt:
        reason = attempt.reason(reason)
        _refuse_decommissioned(attempt.facts)
        _refuse_maker(g, attempt.facts, "reject")
        if alias_holder(g.client, g.model, CHAMPION) == version:
            attempt.refuse(
                f"version {version} is the champion: roll back or decommission it instead"
            )
        if alias_holder(g.client, g.model, CHALLENGER) == version:
            attempt.set_alias(CHALLENGER, None)
        attempt.tag(
            approval_status="rejected", rejected_by=g.actor.name, reject_reason=reason
        )
    return f"rejected {g.model} version {version}"


def promote(g: Governed, version: int) -> str:
    """Promote the approved challenger to ``champion``; the old champion becomes ``previous``.

    Raises:
        AccessDenied: The actor lacks ``promote_model``.
        GovernanceError: Not the approved challenger, decommissioned, evidence
            changed since approval, or the actor trained it.
    """
    version = check_version(version)
    with _Attempt(g, Action.PROMOTE_MODEL, "model.promote", version) as attempt:
        _refuse_decommissioned(attempt.facts)
        _refuse_maker(g, attempt.facts, "promote")
        if alias_holder(g.client, g.model, CHALLENGER) != version:
            attempt.refuse(
                f"version {version} is not the approved challenger; a validator approves it first"
            )
        _refuse_changed_evidence(g, attempt.facts)
        if not attempt.facts.approved_bundle:
            attempt.refuse(
                f"version {version}'s approval names no bundle (approved before the package stage): a validator rejects and approves it again"
            )
        attempt.details["bundle_digest"] = attempt.facts.approved_bundle
        champion = alias_holder(g.client, g.model, CHAMPION)
        if champion is not None:
            attempt.set_alias(PREVIOUS, champion)
        attempt.set_alias(CHAMPION, version)
        attempt.set_alias(CHALLENGER, None)
        attempt.tag(promoted_by=g.actor.name)
    return f"promoted {g.model} version {version} to champion" + (
        f" (version {champion} is now previous)" if champion is not None else ""
    )


def rollback(g: Governed) -> str:
    """Put the ``previous`` version back as ``champion``.

    Raises:
        AccessDenied: The actor lacks ``rollback_model``.
        GovernanceError: No previous version, or it was decommissioned.
    """
    previous = alias_holder(g.client, g.model, PREVIOUS)
    champion = alias_holder(g.client, g.model, CHAMPION)
    # Audited under the version it would reinstate, else the champion it would
    # end; with neither, under the model itself.
    with _Attempt(
        g, Action.ROLLBACK_MODEL, "model.rollback", previous or champion
    ) as attempt:
        if previous is None:
            attempt.refuse(f"{g.model} has no previous champion to roll back to")
        _refuse_decommissioned(attempt.facts)
        attempt.set_alias(CHAMPION, previous)
        attempt.set_alias(PREVIOUS, None)
        attempt.details["rolled_back_from"] = champion
    return f"rolled back {g.model}: version {previous} is champion again" + (
        f" (version {champion} no longer serves)" if champion is not None else ""
    )


def decommission(g: Governed, version: int, reason: str) -> str:
    """Retire a version for good: every alias naming it is removed, it is tagged
    ``status=decommissioned`` and can never be approved, promoted or served.

    Raises:
        AccessDenied: The actor lacks ``decommission_model``.
        GovernanceError: Already decommissioned.
    """
    version = check_version(version)
    with _Attempt(
        g, Action.DECOMMISSION_MODEL, "model.decommission", version
    ) as attempt:
        reason = attempt.reason(reason)
        _refuse_decommissioned(attempt.facts)
        for alias in (CHALLENGER, CHAMPION, PREVIOUS):
            if alias_holder(g.client, g.model, alias) == version:
                attempt.set_alias(alias, None)
        attempt.tag(
            status=DECOMMISSIONED,
            decommissioned_by=g.actor.name,
            decommission_reason=reason,
        )
    return f"decommissioned {g.model} version {version}: it can never be served again"


def version_facts(
    security: WorkspaceSecurity, model: str, version: int
) -> VersionFacts:
    """Read a version's facts from the audit log (through the key service)."""
    resource = f"model:{model}/{version}"
    return fold_version_facts(security.audit_log().records(resource=resource), resource)


class _Refusal(Exception):
    pass


class _Attempt:
    """One lifecycle attempt, used as ``with _Attempt(...) as attempt``: the role
    is checked on entry; refusals and changes are audited once, on exit, and the
    changes are applied only after their record is written."""

    def __init__(
        self,
        g: Governed,
        action: Action,
        audit_action: str,
        version: int | None,
    ) -> None:
        self.g = g
        self.action = action
        self.audit_action = audit_action
        self.version = version
        self.details: dict[str, Any] = {}
        self.aliases: dict[str, tuple[int | None, int | None]] = {}
        self.tags_to_set: dict[str, str] = {}
        self.facts = VersionFacts()

    def __enter__(self) -> _Attempt:
        g = self.g
        if not g.security.permits(self.action):
            self.record("denied", {"reason": f"lacks {self.action.value}"})
            roles = ", ".join(sorted(g.actor.roles)) or "none"
            msg = f"access denied: {g.actor.name} (roles: {roles}) may not {self.action.value} on {g.model}"
            raise AccessDenied(msg)
        try:
            if g.named is not None:
                check_model_name(g.named, g.model)
            if self.version is not None:
                get_version(g.client, g.model, self.version)  # it is in the registry
        except GovernanceError as error:
            self.record("denied", {"reason": str(error)})
            raise
        if self.version is not None:
            self.facts = version_facts(g.security, g.model, self.version)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any
    ) -> Literal[False]:
        if isinstance(error, _Refusal | GovernanceError):
            self.record("denied", {"reason": str(error)})
            raise GovernanceError(str(error)) from None
        if error is not None:
            return False
        changes = {a: list(pair) for a, pair in self.aliases.items()}
        self.record("allowed", {"aliases": changes})
        try:
            self.apply()
        except Exception as failure:
            self.record("failed", {"aliases": changes, "error": type(failure).__name__})
            msg = f"the registry refused the change ({type(failure).__name__}); the audit log records the attempt as failed"
            raise GovernanceError(msg) from None
        return False

    def refuse(self, reason: str) -> None:
        raise _Refusal(reason)

    def reason(self, typed: str) -> str:
        """The person's reason, checked (``check_reason``) and recorded."""
        text = check_reason(typed)
        self.details["reason"] = text
        return text

    def set_alias(self, alias: str, version: int | None) -> None:
        before = alias_holder(self.g.client, self.g.model, alias)
        self.aliases[alias] = (before, version)

    def tag(self, **tags: str) -> None:
        self.tags_to_set.update(tags)

    def record(self, outcome: str, extra: dict[str, Any]) -> None:
        model = self.g.model
        self.g.security.audit_log().append(
            action=self.audit_action,
            resource=f"model:{model}"
            if self.version is None
            else f"model:{model}/{self.version}",
            outcome=outcome,  # type: ignore[arg-type]
            details={"roles": sorted(self.g.actor.roles), **self.details, **extra},
        )

    def apply(self) -> None:
        client, model = self.g.client, self.g.model
        for alias, (_, version) in self.aliases.items():
            if version is None:
                client.delete_registered_model_alias(model, alias)
            else:
                client.set_registered_model_alias(model, alias, str(version))
        if self.version is None:
            return
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        for key, value in {**self.tags_to_set, "last_lifecycle_at": stamp}.items():
            client.set_model_version_tag(model, str(self.version), key, value)


def _refuse_decommissioned(facts: VersionFacts) -> None:
    if facts.decommissioned:
        msg = "the version is decommissioned: it can never be approved, promoted or served again"
        raise _Refusal(msg)


def _refuse_maker(g: Governed, facts: VersionFacts, verb: str) -> None:
    if not facts.trainer:
        msg = (
            "the audit log has no registration record for this version: who trained it is unknown, so nobody may "
            + verb
            + " it"
        )
        raise _Refusal(msg)
    if facts.trainer in {g.actor.name, g.actor.on_behalf_of}:
        msg = f"{g.actor.name} trained this version and may not {verb} it (maker-checker: a second person must)"
        raise _Refusal(msg)


def _refuse_changed_evidence(g: Governed, facts: VersionFacts) -> None:
    manifest = g.root / facts.evidence_manifest
    if not manifest.is_file():
        msg = f"evidence manifest {facts.evidence_manifest or '(none)'} is missing"
        raise _Refusal(msg)
    if file_sha256(manifest) != facts.evidence_manifest_sha256:
        msg = (
            f"evidence manifest {facts.evidence_manifest} was changed after evaluation"
        )
        raise _Refusal(msg)
    recorded = facts.evidence_sha256 or json.loads(manifest.read_text())["sha256"]
    problems = changed_evidence(g.root, recorded)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        msg = f"evidence {problems[0]}{more}: re-run the evaluation"
        raise _Refusal(msg)


def _refuse_other_thresholds(g: Governed, facts: VersionFacts) -> None:
    """The gates must have been judged by the approver's env's own settings.

    The settings a run used come from that run's config, which its starter
    controls (a git-ignored ``conf/local/governance.yml`` could lower a
    threshold); the approver resolves the env's settings independently, and any
    difference refuses the approval.
    """
    from bankplatform.governance.settings import GovernanceSettings  # noqa: PLC0415
    from bankplatform.project import env_config_loader  # noqa: PLC0415

    report_path = Path(facts.evidence_manifest).parent / GATE_REPORT
    used = json.loads((g.root / report_path).read_text())["settings"]
    expected = GovernanceSettings.model_validate(
        env_config_loader(g.root, g.security.env)["parameters"]["governance"]
    ).model_dump(mode="json")
    differences = sorted(_differences(used, expected))
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        msg = (
            f"the gates were judged with settings that differ from env {g.security.env}'s "
            f"governance.yml: {differences[0]}{more}; re-run the evaluation under them"
        )
        raise _Refusal(msg)


def _differences(used: Any, expected: Any, path: str = "") -> list[str]:
    if isinstance(used, dict) and isinstance(expected, dict):
        found: list[str] = []
        for key in sorted(set(used) | set(expected)):
            found += _differences(
                used.get(key), expected.get(key), f"{path}.{key}".strip(".")
            )
        return found
    return [] if used == expected else [f"{path} {used} instead of {expected}"]
