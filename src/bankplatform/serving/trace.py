"""Reconstruct a logged decision and walk its chain back to the raw extract.

``decision show`` re-scores the logged inputs with the logged version
(``rescore_link``).
``decision trace`` answers an examiner's "why was this applicant declined, by
which approved model, trained on what", re-checking every hash on the way,
offline (the decision log, the registry's files, the signed audit log and the
workspace's files; no scoring service needed):

decision (log line, its input hash, its audit record) -> the signed bundle that
decided it (its digest in the log line equal to the one the approval and the
promotion name, its signature verified, its model files hashing to the registered
artefact hash) -> approval and promotion records -> evidence notebooks (hashes at
evaluation) -> training run -> feature service -> input datasets of the run
that trained it (re-hashed) -> the raw extract.

Each link is reported as passed or broken with the reason; the first broken
link makes the command exit non-zero.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException

from bankplatform.errors import BankplatformError
from bankplatform.governance.evidence import changed_evidence
from bankplatform.lineage.fingerprint import FingerprintCache
from bankplatform.lineage.records import lineage_run_of
from bankplatform.security.audit import DECISION_SHA256
from bankplatform.security.bundles import BundleRefused, unpack, verify_bundle
from bankplatform.serving.models import Servable, load_served, version_facts
from bankplatform.serving.records import decision_lines
from bankplatform.serving.scoring import input_sha256, score_application
from bankplatform.training.registry import artefact_sha256

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from bankplatform.serving.models import BundleSource

RESCORE_TOLERANCE = 1e-9
RAW_LAYER = "01_raw"
LINE_SHA256 = "line_sha256"  # the logged line's hash, computed when read


class DecisionUnknown(BankplatformError):
    """No decision with that request id in the decision log."""


@dataclass(frozen=True)
class Link:
    """One link of the chain: what was checked and whether it holds."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class TraceInputs:
    """What a trace reads: the workspace, its registry and its audit records."""

    root: Path
    decision_log: Path
    registry: MlflowClient
    model_name: str
    audit_records: list[dict[str, Any]]
    bundles: BundleSource


def logged_decision(
    folder: Path, request_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The decision record of a request (with its line's sha256 as ``line_sha256``)
    and what followed it (overrides, appeals).

    Raises:
        DecisionUnknown: No decision with that id (or no log at all).
    """
    if not folder.is_dir():
        msg = f"no decision log at {folder}"
        raise DecisionUnknown(msg)
    decision, later = None, []
    for path in sorted(folder.glob("decisions-*.jsonl")):
        for digest, record in decision_lines(path):
            if record.get("request_id") != request_id:
                continue
            if record.get("type") == "decision":
                decision = {**record, LINE_SHA256: digest}
            else:
                later.append(record)
    if decision is None:
        msg = f"no decision with request id {request_id} in {folder}"
        raise DecisionUnknown(msg)
    return decision, later


def trace(decision: dict[str, Any], inputs: TraceInputs) -> list[Link]:
    """Every link from a decision back to the raw extract, each re-checked."""
    links = [_decision_link(decision, inputs)]
    model = decision.get("model")
    if not model:
        links.append(
            Link(
                "model",
                False,
                "no model decided it (halted, or the champion failed and it was referred)",
            )
        )
        return links
    version = int(model["version"])
    facts = version_facts(inputs.audit_records, inputs.model_name, version)
    links.append(_bundle_link(decision, facts.artefact_sha256, inputs))
    links.append(rescore_link(decision, inputs))
    links.extend(_governance_links(decision, version, inputs))
    links.append(_evidence_link(version, inputs))
    run = _training_link(model, facts.run_id, inputs)
    links.append(run[0])
    if run[1] is not None:
        links.extend(_data_links(run[1], facts.kedro_run_id, inputs))
    return links


def _allowed(
    inputs: TraceInputs, resource: str, actions: tuple[str, ...], before: str = "~"
) -> list[dict[str, Any]]:
    """Allowed audit records of ``actions`` on ``resource``, written before ``before``
    (an ISO time; "~" sorts after every time)."""
    return [
        r
        for r in inputs.audit_records
        if r.get("resource") == resource
        and r.get("action") in actions
        and r.get("outcome") == "allowed"
        and str(r.get("time", "")) <= before
    ]


def _decision_link(decision: dict[str, Any], inputs: TraceInputs) -> Link:
    request_id = decision["request_id"]
    features = decision.get("features")
    if features is not None and input_sha256(features) != decision.get("input_sha256"):
        return Link(
            "decision",
            False,
            "the logged inputs do not hash to the logged input_sha256 (edited?)",
        )
    audited = [
        r
        for r in inputs.audit_records
        if r.get("action") == "scoring.request"
        and (r.get("details") or {}).get("request_id") == request_id
    ]
    if not audited:
        return Link(
            "decision",
            False,
            f"no audit record of request {request_id}: the decision log line is not in the signed log",
        )
    details = audited[-1].get("details") or {}
    if details.get(DECISION_SHA256) != decision.get(LINE_SHA256):
        return Link(
            "decision",
            False,
            "the decision log line is not the one audited (its sha256 differs from the audit record's): edited after the decision",
        )
    if details.get("model_version") != decision.get("model_version") or details.get(
        "decision"
    ) != decision.get("decision"):
        return Link(
            "decision",
            False,
            f"the audit log says version {details.get('model_version')} decided {details.get('decision')}, the decision log says version {decision.get('model_version')} decided {decision.get('decision')}",
        )
    return Link(
        "decision",
        True,
        f"{decision['decision']} at PD {decision.get('score')} (cut-off {decision.get('cut_off')}, refer band up to {decision.get('refer_up_to', decision.get('cut_off'))}) for {decision.get('client')}, audited as seq {audited[-1].get('seq')}"
        + (
            " (replayed at a restart from the line itself: the process died before sending it)"
            if details.get("replayed")
            else ""
        )
        + f", inputs hash {str(decision.get('input_sha256'))[:12]}",
    )


def _bundle_link(
    decision: dict[str, Any], registered: str, inputs: TraceInputs
) -> Link:
    """The bundle the decision names: the approved (and, for a champion, promoted)
    digest as of the decision, signed by the key service, its model files the
    registered ones."""
    model = decision["model"]
    version, digest = int(model["version"]), str(model.get("bundle_digest") or "")
    resource = f"model:{inputs.model_name}/{version}"
    before = str(decision.get("time", ""))
    if not digest:
        return Link(
            "model bundle", False, f"the decision names no bundle of version {version}"
        )
    steps = [("approval", "model.approve")]
    if decision.get("variant") == "champion":
        steps.append(("promotion", "model.promote"))
    for step, action in steps:
        named = _named_bundle(inputs, resource, action, before)
        if digest != named:
            return Link(
                "model bundle",
                False,
                f"the decision names bundle {digest[:12]}..., the {step} before it {named[:12] or 'none'}",
            )
    with tempfile.TemporaryDirectory(prefix="bankplatform-trace-") as folder:
        try:
            verified = verify_bundle(
                unpack(inputs.bundles.archive(digest), Path(folder)),
                inputs.bundles.public_key(),
            )
        except (BundleRefused, BankplatformError) as error:
            return Link("model bundle", False, f"bundle {digest[:12]}...: {error}")
        found = artefact_sha256(verified.model_folder)
    if verified.digest != digest or not (
        found == registered == model.get("artefact_sha256")
    ):
        return Link(
            "model bundle",
            False,
            f"bundle {verified.digest[:12]}... (named {digest[:12]}...): model files hash to {found[:12]}, registered {registered[:12] or '-'}, served {str(model.get('artefact_sha256'))[:12]}",
        )
    return Link(
        "model bundle",
        True,
        f"{inputs.model_name} version {version}, bundle sha256:{digest[:12]}... signed by the key service = approved = logged; model files hash {found[:12]} = registered = served",
    )


def _named_bundle(inputs: TraceInputs, resource: str, action: str, before: str) -> str:
    """The bundle digest the latest allowed ``action`` record before ``before`` names."""
    found = _allowed(inputs, resource, (action,), before)
    return (
        str((found[-1].get("details") or {}).get("bundle_digest", "")) if found else ""
    )


def rescore_link(decision: dict[str, Any], inputs: TraceInputs) -> Link:
    """The logged version's score of the logged inputs now, against the logged score."""
    model = decision.get("model")
    if not model or decision.get("features") is None or decision.get("score") is None:
        return Link("re-score", False, "no model decided it (halted or referred)")
    version = int(model["version"])
    try:
        served = load_served(
            inputs.model_name,
            Servable(version, str(model.get("bundle_digest") or "")),
            str(model["variant"]),
            inputs.audit_records,
            inputs.bundles,
        )
    except BankplatformError as error:
        return Link("re-score", False, str(error))
    score = score_application(served, decision["features"], reason_count=20).score
    logged = float(decision["score"])
    if not math.isclose(score, logged, abs_tol=RESCORE_TOLERANCE):
        return Link(
            "re-score",
            False,
            f"logged PD {logged}, version {version} now gives {score}",
        )
    return Link(
        "re-score",
        True,
        f"version {version} scores the logged inputs {score:.6f} again (logged {logged:.6f})",
    )


def _governance_links(
    decision: dict[str, Any], version: int, inputs: TraceInputs
) -> list[Link]:
    resource = f"model:{inputs.model_name}/{version}"
    before = str(decision.get("time", ""))
    approvals = _allowed(inputs, resource, ("model.approve",), before)
    links = [
        Link(
            "approval",
            True,
            f"approved by {approvals[-1]['actor']} at {approvals[-1]['time'][:19]} (audit seq {approvals[-1]['seq']})",
        )
        if approvals
        else Link(
            "approval",
            False,
            f"no approval of version {version} in the audit log before the decision",
        )
    ]
    if decision.get("variant") == "champion":
        promotions = _allowed(
            inputs, resource, ("model.promote", "model.rollback"), before
        )
        links.append(
            Link(
                "promotion",
                True,
                f"champion by {promotions[-1]['actor']} at {promotions[-1]['time'][:19]} (audit seq {promotions[-1]['seq']})",
            )
            if promotions
            else Link(
                "promotion",
                False,
                f"version {version} answered as champion but no promotion is in the audit log",
            )
        )
    return links


def _evidence_link(version: int, inputs: TraceInputs) -> Link:
    resource = f"model:{inputs.model_name}/{version}"
    evaluations = _allowed(inputs, resource, ("model.evaluate",))
    if not evaluations:
        return Link(
            "evidence", False, f"no evaluation of version {version} in the audit log"
        )
    recorded = dict((evaluations[-1].get("details") or {}).get("evidence_sha256") or {})
    if not recorded:
        return Link("evidence", False, "the evaluation record lists no evidence files")
    problems = changed_evidence(inputs.root, recorded)
    if problems:
        return Link("evidence", False, "; ".join(problems))
    notebooks = sorted(Path(p).name for p in recorded if p.endswith(".ipynb"))
    return Link(
        "evidence",
        True,
        f"{len(recorded)} evidence files match their hashes at evaluation ({', '.join(notebooks)})",
    )


def _training_link(
    model: dict[str, Any], registered_run: str, inputs: TraceInputs
) -> tuple[Link, Any]:
    run_id = str(model.get("run_id") or "")
    if not run_id or run_id != registered_run:
        return Link(
            "training run",
            False,
            f"served run {run_id or '-'} is not the registered run {registered_run or '-'}",
        ), None
    try:
        run = inputs.registry.get_run(run_id)
    except MlflowException:
        return Link(
            "training run", False, f"run {run_id} is not in the tracking store"
        ), None
    tags = run.data.tags
    service = f"{tags.get('feast.feature_service', '?')} v{tags.get('feast.feature_service_version', '?')}"
    return Link(
        "training run",
        True,
        f"run {run_id} trained by {tags.get('trainer', '?')} as {tags.get('service_identity', '?')} on feature service {service}, out-of-time AUC {run.data.metrics.get('auc_out_of_time', float('nan')):.4f}",
    ), run


def _data_links(candidate: Any, kedro_run: str, inputs: TraceInputs) -> list[Link]:
    """The input datasets of the ``kedro run`` that trained the candidate (the one
    its registration named), re-hashed."""
    containing = lineage_run_of(
        inputs.registry, candidate.info.experiment_id, kedro_run
    )
    if containing is None:
        return [
            Link(
                "input datasets",
                False,
                "no single lineage run of the Kedro run its registration named is in the tracking store",
            )
        ]
    links = []
    with tempfile.TemporaryDirectory() as folder:
        cache = FingerprintCache(Path(folder) / "cache.json")
        changed, raw = [], []
        datasets = containing.inputs.dataset_inputs if containing.inputs else []
        for item in datasets:
            name, source = item.dataset.name, Path(item.dataset.source)
            recorded = containing.data.tags.get(f"input.{name}.sha256", "")
            found = cache.fingerprint(source)
            if found is None or found.sha256 != recorded:
                changed.append(
                    f"{name} ({'missing' if found is None else 'changed since the run'})"
                )
            if RAW_LAYER in source.parts:
                raw.append(name)
        made = _made_and_read(containing.data.tags, cache, inputs.root)
    run_name = containing.info.run_name
    if made is not None:
        links.append(made)
    if changed:
        links.append(
            Link(
                "input datasets",
                False,
                f"run {containing.info.run_id} ({run_name}): {', '.join(changed)}",
            )
        )
    else:
        links.append(
            Link(
                "input datasets",
                True,
                f"run {containing.info.run_id} ({run_name}) read {len(datasets)} datasets, each re-hashed equal",
            )
        )
    if raw:
        links.append(
            Link(
                "raw extract",
                not changed,
                f"{', '.join(sorted(raw))} under data/{RAW_LAYER}",
            )
        )
    else:
        links.append(
            Link(
                "raw extract",
                False,
                f"run {run_name} did not read the raw extract (trained from an earlier run's outputs; trace that run)",
            )
        )
    return links


def _made_and_read(
    tags: dict[str, str], cache: FingerprintCache, root: Path
) -> Link | None:
    """The datasets the run made and then read (feature snapshots, the training
    set), re-hashed against the digests the run recorded when it finished."""
    names = sorted(
        key.removeprefix("read.").removesuffix(".sha256")
        for key in tags
        if key.startswith("read.") and key.endswith(".sha256")
    )
    if not names:
        return None
    changed = []
    for name in names:
        found = cache.fingerprint(root / tags.get(f"read.{name}.source", ""))
        if found is None or found.sha256 != tags[f"read.{name}.sha256"]:
            changed.append(
                f"{name} ({'missing' if found is None else 'changed since the run'})"
            )
    if changed:
        return Link("training data", False, ", ".join(changed))
    return Link(
        "training data",
        True,
        f"{len(names)} datasets the run made and read (features, training set) re-hashed equal",
    )
