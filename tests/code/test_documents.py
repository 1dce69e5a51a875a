"""The model card and the Annex IV pack, rendered from their Jinja2 templates over
the typed gate report."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bankplatform.governance.audit_facts import VersionFacts
from bankplatform.governance.documents import CardFacts, annex_iv, model_card
from bankplatform.governance.registry import GovernanceError
from bankplatform.manifest import load_manifest
from bankplatform.monitoring.settings import MonitoringSettings

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
FEATURES = {"income": 0.01, "card_utilisation": 0.2, "gambling_share_90d": 0.3}
REPORT: dict[str, Any] = {
    "gate_status": "failed",
    "settings": {"decision_cut_off": 0.15, "protected_attributes": ["gender"]},
    "measurements": {
        "performance": {
            "out_of_time": {
                "auc": 0.7912345,
                "gini": 0.582469,
                "ks": 0.44,
                "pr_auc": 0.31,
                "brier": 0.0712,
                "rows": 1234,
            },
            "calibration_error": 0.0123456,
        },
        "champion": {"version": 2, "metrics": {"auc": 0.80111}, "auc_drop": 0.0099},
        "fairness": {
            "gender": {
                "disparate_impact_ratio": 0.91,
                "equal_opportunity_difference": 0.03,
                "auc_gap": 0.012,
            }
        },
        "stability": {"score": 0.0213, "features": FEATURES},
        "explanation": [{"feature": "income", "mean_abs": 0.5}],
    },
    "gates": [
        {
            "name": "equal_opportunity",
            "value": 0.16,
            "bound": "max",
            "threshold": 0.15,
            "blocking": True,
            "passed": False,
            "detail": "age_band 0.16 | worst 65+",
        }
    ],
}


def _facts(report: dict[str, Any]) -> CardFacts:
    return CardFacts(
        manifest=load_manifest(REPO),
        version=3,
        tags={"trainer": "dana.scientist", "feature_service": "credit_default_v1"},
        aliases=[],
        run={
            "run_id": "run123",
            "params": {"booster.monotone_constraints": "(-1,1,1)"},
        },
        lineage={},
        report=report,
        evidence_folder=REPO,
        recorded=VersionFacts(
            trainer="dana.scientist",
            registered_by="svc-training",
            gate_status="failed",
        ),
        monitoring_plan=MonitoringSettings().model_dump(mode="json"),
    )


def test_the_card_states_the_report_s_figures() -> None:
    card = model_card(_facts(REPORT)).splitlines()
    assert card[0] == "# Model card: credit_default_pd version 3"
    assert "| auc | 0.7912 |" in card
    assert "| rows | 1234 |" in card
    assert "| expected calibration error | 0.01235 |" in card
    assert "| gender | 0.91 | 0.03 | 0.012 |" in card
    assert "| equal_opportunity | 0.16 | max | 0.15 | True | False |" in card
    assert (
        "Against champion version 2 on the same rows: AUC 0.8011 (drop 0.0099)." in card
    )
    assert "Monotone directions enforced: income -, card_utilisation +, " in "\n".join(
        card
    )
    assert "Gate `equal_opportunity` did not pass: age_band 0.16 | worst 65+." in card
    assert "| (no lineage run found) | - |" in card
    assert card[-1] == "| --- | --- | --- | --- | --- |"  # no lifecycle yet


def test_the_annex_says_what_only_a_person_can_write() -> None:
    annex = annex_iv(_facts(REPORT), []).splitlines()
    assert (
        "| good payers of one group declined more often | equal_opportunity | FAILED |"
        in annex
    )
    assert "No alias has been held by any version yet." in annex
    assert annex[-1] == "No window has been monitored for this version yet."
    assert sum("**TO BE WRITTEN BY A PERSON:**" in line for line in annex) == 3


def test_a_report_without_a_stated_figure_is_refused_in_one_line() -> None:
    report = copy.deepcopy(REPORT)
    del report["measurements"]["performance"]["calibration_error"]
    with pytest.raises(GovernanceError) as refused:
        model_card(_facts(report))
    assert str(refused.value) == (
        "the gate report of version 3 cannot be documented: "
        "measurements.performance.calibration_error: Field required"
    )


def test_the_card_states_the_audit_log_s_facts_and_names_tags_that_disagree() -> None:
    honest = model_card(_facts(REPORT))
    assert "| trained by | dana.scientist |" in honest
    assert "| trained as | svc-training |" in honest
    assert "| status | candidate |" in honest
    assert "disagree" not in honest
    forged = replace(
        _facts(REPORT),
        tags={
            "trainer": "mallory.insider",
            "gate_status": "passed",
            "approval_status": "approved",
            "feature_service": "credit_default_v1",
        },
    )
    card = model_card(forged)
    assert "| trained by | dana.scientist |" in card
    assert "| status | candidate |" in card  # not "approved": no approval recorded
    listed = [
        line
        for line in card.splitlines()
        if line.startswith("- ") and "tag says" in line
    ]
    assert listed == [
        "- trainer tag says 'mallory.insider', the audit log 'dana.scientist'",
        "- gate_status tag says 'passed', the audit log 'failed'",
        "- approval_status tag says 'approved', the audit log 'nothing'",
    ]
    decommissioned = replace(
        _facts(REPORT),
        recorded=VersionFacts(trainer="dana.scientist", decommissioned=True),
    )
    card = model_card(decommissioned)
    assert "| status | decommissioned |" in card  # the record, with no tag at all
