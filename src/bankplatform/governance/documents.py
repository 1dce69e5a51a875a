"""The model card and the EU AI Act Annex IV pack of a model version.

Both are generated only from tracked metadata: the workspace manifest
(``.kedro.yml``), the registry (version, tags, the candidate's MLflow run), the
Kedro run's lineage (input datasets and their digests), the gate report of the
version's evidence folder (checked against the hash the audit log holds), and
the audit log (registration, evaluation, approvals). Where only a person can
write a section (the declaration of conformity), the text says so plainly.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bankplatform.governance.audit_facts import VersionFacts, tag_disagreements
from bankplatform.governance.document_view import GateReport, templates
from bankplatform.governance.evidence import GATE_REPORT, evidence_folder, file_sha256
from bankplatform.governance.inventory import version_status
from bankplatform.governance.lifecycle import LIFECYCLE_ACTIONS, version_facts
from bankplatform.governance.registry import (
    GovernanceError,
    current_aliases,
    get_version,
    tags_of,
)
from bankplatform.lineage.records import lineage_run_of

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from bankplatform.manifest import WorkspaceManifest
    from bankplatform.security.runtime import WorkspaceSecurity

TO_BE_WRITTEN = "**TO BE WRITTEN BY A PERSON:**"
PACK_FOLDER = "annex_iv"


@dataclass
class CardFacts:
    """Everything the card and the pack say, gathered once from the records."""

    manifest: WorkspaceManifest
    version: int
    tags: dict[str, Any]
    aliases: list[str]
    run: dict[str, Any]
    lineage: dict[str, Any]
    report: dict[str, Any]
    evidence_folder: Path
    recorded: VersionFacts = field(default_factory=VersionFacts)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    monitoring_plan: dict[str, Any] = field(default_factory=dict)
    monitoring_runs: list[dict[str, Any]] = field(default_factory=list)


def gather_facts(
    client: MlflowClient,
    security: WorkspaceSecurity,
    manifest: WorkspaceManifest,
    root: Path,
    version: int,
    monitoring_plan: dict[str, Any],
) -> CardFacts:
    """Collect a version's facts; ``monitoring_plan`` is the env's validated
    monitoring settings (the plan Art 72 asks for).

    Raises:
        GovernanceError: No such version, no evaluation on record, or a gate
            report that differs from the one the evaluation recorded.
    """
    name = manifest.model_name
    model_version = get_version(client, name, version)
    tags = tags_of(model_version)
    folder = evidence_folder(root, name, version)
    facts = version_facts(security, name, version)
    report_path = folder / GATE_REPORT
    recorded = (facts.evidence_sha256 or {}).get(str(report_path.relative_to(root)))
    if not report_path.is_file() or recorded is None:
        msg = f"version {version} has no recorded evaluation; run the evaluation pipeline first"
        raise GovernanceError(msg)
    if file_sha256(report_path) != recorded:
        msg = f"{report_path.relative_to(root)} was changed after evaluation"
        raise GovernanceError(msg)
    if not facts.run_id:  # the registration's word, never the editable run_id tag
        msg = f"version {version} has no registration record naming its run"
        raise GovernanceError(msg)
    run = client.get_run(facts.run_id)
    return CardFacts(
        manifest=manifest,
        version=version,
        tags=tags,
        aliases=sorted(
            a for a, v in current_aliases(client, name).items() if v == version
        ),
        run={
            "run_id": run.info.run_id,
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "tags": dict(run.data.tags),
        },
        lineage=_lineage(client, run.info.experiment_id, facts.kedro_run_id),
        report=json.loads(report_path.read_text()),
        evidence_folder=folder,
        recorded=facts,
        lifecycle=version_lifecycle(
            security.audit_log().records(resource=f"model:{name}"), name, version
        ),
        monitoring_plan=monitoring_plan,
        monitoring_runs=[
            r
            for r in security.audit_log().records(resource=f"monitoring:{name}/")
            if r.get("action") == "monitoring.verdict"
            and (r.get("details") or {}).get("model_version") == version
        ],
    )


def version_lifecycle(
    records: Iterable[dict[str, Any]], model: str, version: int
) -> list[dict[str, Any]]:
    """The model's lifecycle records that concern ``version``: those made on it
    (refusals too) and the changes made on another version that moved one of its
    aliases (a rollback to the previous version ends this one's tenure as champion;
    a promotion of the next one makes it previous)."""
    resource = f"model:{model}/{version}"
    prefix = f"model:{model}/"
    mine = []
    for record in records:
        if record.get("resource") == resource:
            mine.append(record)
        elif (
            str(record.get("resource", "")).startswith(prefix)
            and record.get("action") in LIFECYCLE_ACTIONS
            and record.get("outcome") == "allowed"
            and any(
                version in pair
                for pair in (
                    (record.get("details") or {}).get("aliases") or {}
                ).values()
            )
        ):
            mine.append(record)
    return mine


def model_card(facts: CardFacts) -> str:
    """The model card as Markdown (``templates/model_card.md.j2``)."""
    return _render("model_card.md.j2", facts)


def annex_iv(facts: CardFacts, history: list[str]) -> str:
    """The Annex IV technical documentation (all 9 sections) as Markdown
    (``templates/annex_iv.md.j2``)."""
    return _render("annex_iv.md.j2", facts, history=history)


def _render(template: str, facts: CardFacts, **more: Any) -> str:
    """A document over the version's facts and its gate report, typed.

    Raises:
        GovernanceError: The gate report lacks a figure the documents state.
    """
    try:
        report = GateReport.model_validate(facts.report)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = f"the gate report of version {facts.version} cannot be documented: {where}: {first['msg']}"
        raise GovernanceError(msg) from None
    features = list(report.measurements.stability.features)
    return (
        templates()
        .get_template(template)
        .render(
            m=facts.manifest,
            facts=facts,
            report=report,
            status=version_status(facts.recorded, tuple(facts.aliases)),
            disagreements=tag_disagreements(facts.tags, facts.recorded),
            scopes="; ".join(r.value for r in facts.manifest.regulatory_scope),
            monotone=_monotone(facts.run["params"], features),
            limitations=_limitations(report),
            risks=_RISKS,
            to_be_written=TO_BE_WRITTEN,
            **more,
        )
    )


def write_pack(facts: CardFacts, history: list[str], root: Path) -> Path:
    """Write the Annex IV pack: documentation, card (Markdown and HTML), the
    evidence files and a manifest of sha256 sums.

    Returns:
        The pack's folder.
    """
    import mistune  # noqa: PLC0415

    pack = facts.evidence_folder / PACK_FOLDER
    if pack.exists():
        shutil.rmtree(pack)
    (pack / "evidence").mkdir(parents=True)
    card = model_card(facts)
    (pack / "annex_iv.md").write_text(annex_iv(facts, history))
    (pack / "model_card.md").write_text(card)
    (pack / "model_card.html").write_text(card_html(card, mistune.html))
    for path in sorted(facts.evidence_folder.iterdir()):
        if path.is_file():
            shutil.copy2(path, pack / "evidence" / path.name)
    sums = {
        str(path.relative_to(pack)): file_sha256(path)
        for path in sorted(pack.rglob("*"))
        if path.is_file()
    }
    (pack / "manifest.json").write_text(json.dumps({"sha256": sums}, indent=2))
    return pack


def card_html(markdown: str, render: Any) -> str:
    """A self-contained HTML page of the card (no external resource)."""
    body = render(markdown)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Model card</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
        f"</head><body>{body}</body></html>"
    )


_RISKS = {
    "discrimination": "a model too weak to rank applicants",
    "leakage": "a feature that leaks the outcome",
    "calibration": "PDs that are not probabilities",
    "champion_regression": "a new version worse than the one serving",
    "disparate_impact": "unfair decisions against a protected group",
    "equal_opportunity": "good payers of one group declined more often",
    "group_auc_gap": "a model that ranks one group worse",
    "feature_stability": "inputs that shifted since training",
    "score_stability": "scores that shifted since training",
    "monotone": "a score that moves against known risk directions",
    "invariance": "protected attributes influencing the score",
    "minimum_functionality": "obviously wrong decisions",
    "evidence": "validation evidence that could not be produced",
}


def _lineage(
    client: MlflowClient, experiment_id: str, kedro_run: str
) -> dict[str, Any]:
    """The lineage run of the Kedro run the registration named, and its inputs."""
    run = lineage_run_of(client, experiment_id, kedro_run)
    if run is None:
        return {}
    return {
        "run_id": run.info.run_id,
        "inputs": [
            {"name": d.dataset.name, "digest": d.dataset.digest}
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    }


def _limitations(report: GateReport) -> list[str]:
    notes = [
        "Trained on the bank's own applicants of the training window; not validated "
        "for corporate borrowers or for applicants unlike them.",
    ]
    notes += [
        f"Gate `{g.name}` did not pass: {g.detail}."
        for g in report.gates
        if not g.passed
    ]
    return notes


def _monotone(params: dict[str, Any], features: list[str]) -> str:
    """The non-zero monotone constraints the booster was trained with, by name."""
    raw = str(params.get("booster.monotone_constraints", "")).strip("()")
    signs = [int(v) for v in raw.split(",") if v.strip()]
    named = [
        f"{name} {'+' if sign > 0 else '-'}"
        for name, sign in zip(features, signs, strict=False)
        if sign
    ]
    return ", ".join(named) or "none"
