"""Governance units: resolved parameters of every env, measurements computed by
hand, gates, names a person types, alias history, review dates, offline HTML."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bankplatform.governance import behaviour, fairness, performance
from bankplatform.governance.evidence import (
    cdn_references,
    changed_evidence,
    describe_figures,
)
from bankplatform.governance.gates import BOUNDS, check_gate, verdict
from bankplatform.governance.history import alias_history
from bankplatform.governance.inventory import _add_months
from bankplatform.governance.lifecycle import check_reason
from bankplatform.governance.registry import (
    GovernanceError,
    check_model_name,
    check_version,
)
from bankplatform.governance.settings import GateRule, GateRules, GovernanceSettings
from bankplatform.project import env_config_loader
from tests.conftest import REPO

pytestmark = pytest.mark.unit
SHIPPED_ENVS = sorted(
    p.name for p in (REPO / "conf").iterdir() if p.is_dir() and p.name != "base"
)


def _base_parameters() -> dict[str, object]:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(REPO / "conf"),
        base_env="base",
        default_run_env="base",
        env="base",
    )
    return dict(loader["parameters"])


@pytest.mark.parametrize("env", SHIPPED_ENVS)
def test_every_shipped_env_keeps_the_base_monotone_map_and_booster(env: str) -> None:
    base = _base_parameters()["training"]
    resolved = env_config_loader(REPO, env)["parameters"]["training"]
    assert isinstance(base, dict)
    assert resolved["monotone"] == base["monotone"]
    assert resolved["monotone"]["income"] == -1
    assert resolved["booster"] == base["booster"]


def test_the_test_env_changes_only_what_it_states() -> None:
    resolved = env_config_loader(REPO, "test")["parameters"]
    assert resolved["training"]["rounds"] == 80  # stated in conf/test
    assert resolved["training"]["split"] == {"out_of_time_months": 6}  # from base
    governance = GovernanceSettings.model_validate(resolved["governance"])
    assert governance.gates.discrimination.threshold == 0.60  # stated in conf/test
    assert governance.gates.leakage.threshold == 0.93  # from base
    assert governance.decision_cut_off == 0.15


@pytest.mark.parametrize("env", SHIPPED_ENVS)
def test_every_shipped_env_has_valid_governance_settings(env: str) -> None:
    settings = GovernanceSettings.model_validate(
        env_config_loader(REPO, env)["parameters"]["governance"]
    )
    assert set(GateRules.model_fields) == set(BOUNDS)
    assert settings.protected_attributes == ["gender", "age_band"]


def test_a_typo_in_governance_settings_is_an_error_naming_it() -> None:
    raw = env_config_loader(REPO, "test")["parameters"]["governance"]
    raw["gates"]["fairnes"] = {"threshold": 0.8}
    with pytest.raises(ValidationError) as caught:
        GovernanceSettings.model_validate(raw)
    assert caught.value.errors()[0]["loc"] == ("gates", "fairnes")


def test_discrimination_metrics_by_hand() -> None:
    labels = pd.Series([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    measured = performance.discrimination(labels, scores)
    assert measured["auc"] == pytest.approx(0.75)
    assert measured["gini"] == pytest.approx(0.5)
    assert measured["ks"] == pytest.approx(0.5)
    assert measured["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)


def test_calibration_table_and_error_by_hand() -> None:
    labels = pd.Series([0] * 9 + [1] + [1] * 10)
    scores = np.array([0.1] * 10 + [0.9] * 10)
    table = performance.calibration_table(labels, scores)
    assert len(table) == 10
    assert table["rows"].sum() == 20
    # Deciles of 2 rows. Lower five: expected 0.1, observed 0, 0, 0, 0 and 0.5 (the
    # one default ranks last): gaps 0.1 x4 and 0.4. Upper five: expected 0.9,
    # observed 1: gaps 0.1 x5. Mean gap: (0.4 + 0.4 + 0.5) / 10.
    assert table["observed"].tolist() == [0, 0, 0, 0, 0.5, 1, 1, 1, 1, 1]
    assert performance.expected_calibration_error(table) == pytest.approx(0.13)


def _group_frame() -> pd.DataFrame:
    # Group A: 4 applicants, 3 approved (score <= 0.2); group B: 4, 1 approved.
    return pd.DataFrame(
        {
            "gender": ["A"] * 4 + ["B"] * 4,
            "score": [0.1, 0.15, 0.2, 0.5, 0.1, 0.3, 0.4, 0.6],
            "defaulted": [0, 0, 1, 1, 0, 0, 1, 1],
        }
    )


def test_fairness_figures_by_hand() -> None:
    summary = fairness.fairness_summary(_group_frame(), ["gender"], 0.2, 1)["gender"]
    assert summary["disparate_impact_ratio"] == pytest.approx(0.25 / 0.75)
    # Among those who repaid: A approves 2 of 2, B 1 of 2.
    assert summary["equal_opportunity_difference"] == pytest.approx(0.5)
    # A's AUC: scores of defaulters 0.2, 0.5 vs 0.1, 0.15 -> 1.0; B: 0.4, 0.6 vs 0.1, 0.3 -> 1.0.
    assert summary["auc_gap"] == pytest.approx(0.0)


def test_small_groups_are_reported_not_gated() -> None:
    summary = fairness.fairness_summary(_group_frame(), ["gender"], 0.2, 5)["gender"]
    assert summary["disparate_impact_ratio"] == 1.0
    assert [g["gated"] for g in summary["groups"]] == [False, False]


def test_monotone_violations_are_counted_per_applicant() -> None:
    applicants = pd.DataFrame({"income": [10_000.0, 20_000.0, 30_000.0, np.nan]})

    def wrong_way(frame: pd.DataFrame) -> np.ndarray:
        # More income raises the PD for the first two applicants only.
        return np.where(
            frame.index < 2, frame["income"] / 1e5, 0.5 - frame["income"] / 1e6
        )

    found = behaviour.monotone_violations(wrong_way, applicants, {"income": -1}, 0.5)
    assert found["income"]["violations"] == 2.0
    assert found["income"]["step"] == pytest.approx(5_000.0)
    right = behaviour.monotone_violations(
        lambda f: 0.5 - f["income"].fillna(0).to_numpy() / 1e6,
        applicants,
        {"income": -1},
        0.5,
    )
    assert right["income"]["violations"] == 0.0


def test_invariance_sees_a_model_that_uses_a_protected_attribute() -> None:
    applicants = pd.DataFrame({"gender": ["F", "M", "F"], "income": [1.0, 2.0, 3.0]})
    blind = behaviour.invariance(
        lambda f: f["income"].to_numpy() / 10, applicants, ["gender"]
    )
    biased = behaviour.invariance(
        lambda f: np.where(f["gender"] == "F", 0.3, 0.1), applicants, ["gender"]
    )
    assert blind == {"gender": 0.0}
    assert biased == {"gender": pytest.approx(0.2)}


def test_gates_compare_against_their_bound() -> None:
    rule = GateRule(threshold=0.8, blocking=True)
    assert check_gate("disparate_impact", 0.79, rule, "").passed is False
    assert check_gate("disparate_impact", 0.8, rule, "").passed is True
    assert check_gate("leakage", 0.95, GateRule(threshold=0.93), "").passed is False
    gates = [
        {"passed": True, "blocking": True},
        {"passed": False, "blocking": False},
    ]
    assert verdict(gates) == "passed"
    assert verdict([*gates, {"passed": False, "blocking": True}]) == "failed"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../x", "invalid model name '../../x'"),
        ("credit\x00pd", "invalid model name 'credit\\\\x00pd'"),
        ("x" * 1_000_000, "invalid model name 'xxxxxxxx"),
        (
            "fraud_model",
            "unknown model 'fraud_model': this workspace registers 'credit_default_pd'",
        ),
    ],
)
def test_model_names_a_person_types_are_checked(name: str, message: str) -> None:
    with pytest.raises(GovernanceError) as caught:
        check_model_name(name, "credit_default_pd")
    assert str(caught.value).startswith(message)
    assert len(str(caught.value)) < 200
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("version", ["0", "-1", "1.5", "../1", "1\x00", "9" * 30])
def test_versions_a_person_types_are_checked(version: str) -> None:
    with pytest.raises(GovernanceError) as caught:
        check_version(version)
    assert str(caught.value).startswith("invalid version")
    assert check_version("12") == 12


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "a reason is required"),
        ("   ", "a reason is required"),
        ("x" * 1_000_001, "reason too long: 1,000,001 characters, at most 1,000"),
        ("bad\x00byte", "reason contains control characters"),
    ],
)
def test_reasons_are_checked(reason: str, message: str) -> None:
    with pytest.raises(GovernanceError) as caught:
        check_reason(reason)
    assert str(caught.value) == message
    assert check_reason("  drift on income  ") == "drift on income"


def _lifecycle(
    time: str,
    action: str,
    version: int,
    aliases: dict[str, list[int | None]],
    outcome: str = "allowed",
) -> dict[str, object]:
    return {
        "time": time,
        "actor": "rita.riskofficer",
        "action": action,
        "resource": f"model:credit_default_pd/{version}",
        "outcome": outcome,
        "details": {"aliases": aliases},
    }


def test_alias_history_replays_lifecycle_records_exactly() -> None:
    records = [
        _lifecycle("T1", "model.approve", 1, {"challenger": [None, 1]}),
        _lifecycle(
            "T2", "model.promote", 1, {"champion": [None, 1], "challenger": [1, None]}
        ),
        _lifecycle(
            "T3",
            "model.promote",
            2,
            {"champion": [1, 2], "previous": [None, 1]},
            "denied",
        ),
        _lifecycle(
            "T4", "model.promote", 2, {"previous": [None, 1], "champion": [1, 2]}
        ),
        _lifecycle(
            "T5", "model.rollback", 1, {"champion": [2, 1], "previous": [1, None]}
        ),
        {
            "time": "T6",
            "actor": "x",
            "action": "model.approve",
            "resource": "model:other/1",
            "outcome": "allowed",
            "details": {"aliases": {"champion": [None, 9]}},
        },
    ]
    history = [
        (t.alias, t.version, t.since, t.until)
        for t in alias_history(records, "credit_default_pd")
    ]
    assert history == [
        ("challenger", 1, "T1", "T2"),
        ("champion", 1, "T2", "T4"),
        ("champion", 2, "T4", "T5"),
        ("previous", 1, "T4", "T5"),
        ("champion", 1, "T5", None),
    ]


def test_review_dates_add_months() -> None:
    assert _add_months(date(2026, 1, 15), 12) == date(2027, 1, 15)
    assert _add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert _add_months(date(2026, 11, 29), 12) == date(2027, 11, 29)


def test_cdn_references_find_loads_not_links() -> None:
    page = (
        '<script src="https://cdn.example/require.js"></script>'
        '<a href="https://example.org/docs">docs</a>'
        '<link rel="stylesheet" href="https://fonts.example/css">'
        'await import("https://cdnjs.example/mermaid.mjs")'
        '<img src="data:image/png;base64,AAAA">'
    )
    assert cdn_references(page) == [
        "https://cdn.example/require.js",
        "https://cdnjs.example/mermaid.mjs",
        "https://fonts.example/css",
    ]


def test_every_figure_is_described_by_its_section() -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_output(
        "display_data", data={"image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>"}
    )
    table = nbformat.v4.new_output("execute_result", data={"text/plain": "a table"})
    notebook.cells = [
        nbformat.v4.new_code_cell("plot()", outputs=[figure]),
        nbformat.v4.new_markdown_cell("## Calibration <by grade>\nWhat it shows."),
        nbformat.v4.new_code_cell("table", outputs=[table]),
        nbformat.v4.new_markdown_cell("No heading here, just words."),
        nbformat.v4.new_code_cell("plot()", outputs=[figure.copy()]),
    ]
    assert describe_figures(notebook) == 2
    first, second = (notebook.cells[i].outputs[0]["data"] for i in (0, 4))
    assert first == {
        "text/html": '<img alt="Figure: the notebook" src="data:image/png;base64,iVBORw0KGgo="/>',
        "text/plain": "Figure: the notebook",
    }
    assert second["text/html"].startswith(
        '<img alt="Figure: Calibration &lt;by grade&gt;" src="data:image/png;base64,'
    )
    assert notebook.cells[2].outputs[0]["data"] == {"text/plain": "a table"}


def test_changed_evidence_names_missing_and_edited_files(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("one")
    (tmp_path / "b.html").write_text("two")
    from bankplatform.governance.evidence import file_sha256

    recorded = {
        "a.html": file_sha256(tmp_path / "a.html"),
        "b.html": file_sha256(tmp_path / "b.html"),
        "c.html": "0" * 64,
    }
    (tmp_path / "b.html").write_text("two, edited")
    assert changed_evidence(tmp_path, recorded) == [
        "b.html was changed after evaluation",
        "c.html is missing",
    ]
