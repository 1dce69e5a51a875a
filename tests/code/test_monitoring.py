"""Monitoring's parts on their own: windows, the decision log's windows, drift
tests against Evidently's own preset, the policy, the reference sample, the
drift knob of simulated traffic, the review view, the offline report page and
the encrypted partitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from bankplatform.monitoring.drift import (
    ColumnDrift,
    DriftError,
    StatTestChoice,
    column_kinds,
    detect_column_drift,
)
from bankplatform.monitoring.inputs import sample_reference, with_outcomes
from bankplatform.monitoring.policy import Measurements, Quality, choose_action, find
from bankplatform.monitoring.review_view import recorded_verdict, rederived_verdict
from bankplatform.monitoring.settings import (
    Finding,
    MonitoringAction,
    MonitoringSettings,
)
from bankplatform.monitoring.verdict import judge_window
from bankplatform.monitoring.windows import (
    WindowError,
    logged_decisions,
    parse_window,
    vouched_decision_lines,
    window_decisions,
)
from bankplatform.security.audit import decision_line_sha256

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "window_id"),
    [
        ("today", "2026-11-29"),
        ("yesterday", "2026-11-28"),
        ("2026-02-03", "2026-02-03"),
        ("2026-11-29T10:00/2026-11-29T12:30:15", "20261129T100000Z-20261129T123015Z"),
        (
            "2026-11-29T11:00+01:00/2026-11-29T12:00Z",
            "20261129T100000Z-20261129T120000Z",
        ),
    ],
)
def test_windows_have_stable_ids(spec: str, window_id: str) -> None:
    assert parse_window(spec, NOW).id == window_id


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("last week", "expected today, yesterday, a day YYYY-MM-DD or START/END"),
        ("2026-11-29T12:00/2026-11-29T12:00", "its start is not before its end"),
        ("2026-13-01", "expected today"),
    ],
)
def test_a_bad_window_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        parse_window(spec, NOW)


def test_a_window_reads_only_its_scored_decisions(tmp_path: Path) -> None:
    def decision(request: str, stamp: str, score: float | None) -> dict[str, object]:
        return {
            "type": "decision",
            "request_id": request,
            "time": stamp,
            "score": score,
            "model_version": 3,
            "customer_token": f"tok_{request}",
            "features": {"income": 1.0, "purpose": "car"},
        }

    records = {
        "decisions-2026-11-28.jsonl": [
            decision("req_late_evening", "2026-11-28T23:59:59.999999+00:00", 0.1),
        ],
        "decisions-2026-11-29.jsonl": [
            decision("req_first", "2026-11-29T00:00:00.000000+00:00", 0.2),
            decision("req_halted", "2026-11-29T01:00:00.000000+00:00", None),
            {
                "type": "shadow",
                "request_id": "req_shadow",
                "time": "2026-11-29T02:00:00+00:00",
                "score": 0.3,
            },
            decision("req_second", "2026-11-29T12:00:00.000001+00:00", 0.4),
        ],
    }
    audited = set()
    for name, lines in records.items():
        encoded = [orjson.dumps(r) for r in lines]
        audited |= {decision_line_sha256(line) for line in encoded}
        (tmp_path / name).write_bytes(b"\n".join(encoded) + b"\n")
    day, tampered = window_decisions(tmp_path, parse_window("2026-11-29", NOW), audited)
    assert tampered == 0
    assert day["request_id"].tolist() == ["req_first", "req_second"]
    assert day.columns.tolist() == [
        "request_id",
        "time",
        "customer_token",
        "model_version",
        "score",
        "decision",
        "income",
        "purpose",
    ]
    # The whole log (for retraining): every scored, audited decision, oldest first.
    every = logged_decisions(tmp_path, audited)
    assert every["request_id"].tolist() == [
        "req_late_evening",
        "req_first",
        "req_second",
    ]
    assert every["customer_token"].tolist() == [
        "tok_req_late_evening",
        "tok_req_first",
        "tok_req_second",
    ]
    assert logged_decisions(tmp_path / "missing", audited).empty
    morning, _ = window_decisions(
        tmp_path, parse_window("2026-11-28T20:00/2026-11-29T12:00", NOW), audited
    )
    assert morning["request_id"].tolist() == ["req_late_evening", "req_first"]
    with pytest.raises(WindowError, match="no decision log at"):
        window_decisions(tmp_path / "missing", parse_window("today", NOW), audited)
    # A line edited after it was audited, and one planted: counted, never used.
    path = tmp_path / "decisions-2026-11-29.jsonl"
    edited = path.read_bytes().replace(b'"score":0.4', b'"score":0.04')
    planted = orjson.dumps(decision("req_planted", "2026-11-29T13:00:00+00:00", 0.05))
    path.write_bytes(edited + planted + b"\n")
    day, tampered = window_decisions(tmp_path, parse_window("2026-11-29", NOW), audited)
    assert (day["request_id"].tolist(), tampered) == (["req_first"], 2)
    assert logged_decisions(tmp_path, audited)["request_id"].tolist() == [
        "req_late_evening",
        "req_first",
    ]


def test_only_the_scoring_service_s_own_records_vouch_for_lines() -> None:
    records = [
        {"action": "scoring.request", "details": {"decision_sha256": "a"}},
        {
            "action": "scoring.request",
            "details": {"decision_sha256": "b", "replayed": True},
        },
        {"action": "model.approve", "details": {"decision_sha256": "c"}},
        {"action": "scoring.request", "details": {}},
    ]
    assert vouched_decision_lines(records) == {"a"}


def _book(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10 + shift, 0.5, rows),
            "card_utilisation": rng.beta(2 + 4 * shift, 5, rows),
            "late_fee_count_90d": rng.poisson(0.3 + shift, rows).astype("float64"),
            "has_card": rng.integers(0, 2, rows).astype("float64"),
            "purpose": rng.choice(
                ["car", "home", "debt"],
                rows,
                p=[0.5, 0.3, 0.2] if not shift else [0.3, 0.3, 0.4],
            ),
            "employment_status": rng.choice(["employed", "retired"], rows),
        }
    )


def _preset_verdicts(
    reference: pd.DataFrame, current: pd.DataFrame
) -> dict[str, tuple[float, bool]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    kinds = column_kinds(reference, list(reference.columns))
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    found = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"] != "evidently:metric_v2:ValueDrift":
            continue
        value, threshold = metric["value"], config["threshold"]
        p_value = "p_value" in config["method"]
        found[config["column"]] = (
            value,
            value < threshold if p_value else value >= threshold,
        )
    return found


@pytest.mark.parametrize("rows", [800, 3_000])
def test_our_tests_give_the_preset_s_values_and_verdicts(rows: int) -> None:
    reference, current = _book(rows, 1), _book(rows // 2, 2, shift=0.3)
    ours = detect_column_drift(
        reference, current, column_kinds(reference, list(reference.columns))
    )
    preset = _preset_verdicts(reference, current)
    assert {
        d.column: (pytest.approx(d.score, abs=1e-12), d.drifted) for d in ours
    } == preset
    methods = {d.column: d.method for d in ours}
    if rows > 1_000:
        assert methods == {
            "income": "wasserstein",
            "card_utilisation": "wasserstein",
            # Five values or fewer: Evidently takes it for categories.
            "late_fee_count_90d": "jensenshannon",
            "has_card": "jensenshannon",
            "purpose": "jensenshannon",
            "employment_status": "jensenshannon",
        }
    else:
        assert methods["income"] == "ks"
        assert methods["has_card"] == "z"
        assert methods["purpose"] == "chisquare"
    assert {d.column for d in ours if d.drifted} >= {
        "income",
        "card_utilisation",
        "purpose",
    }
    assert not next(d for d in ours if d.column == "employment_status").drifted


def test_the_family_wise_rule_splits_the_p_value_threshold_only() -> None:
    reference, current = _book(800, 1), _book(400, 2, shift=0.3)
    kinds = column_kinds(reference, list(reference.columns))
    ours = detect_column_drift(
        reference, current, kinds, StatTestChoice(family_p_value=0.05)
    )
    assert {d.threshold for d in ours} == {0.05 / 6}
    big = _book(3_000, 1)
    distances = detect_column_drift(
        big, current, kinds, StatTestChoice(family_p_value=0.05)
    )
    assert {d.threshold for d in distances} == {0.1}
    named = detect_column_drift(
        big,
        current,
        kinds,
        StatTestChoice(numerical="psi", categorical="psi", threshold=0.2),
    )
    assert {(d.method, d.threshold) for d in named} == {("psi", 0.2)}


def test_a_column_missing_or_empty_is_named() -> None:
    reference, current = _book(100, 1), _book(100, 2)
    with pytest.raises(
        DriftError, match="column 'income' is missing from the current data"
    ):
        detect_column_drift(
            reference, current.drop(columns="income"), {"income": "numerical"}
        )
    current["income"] = np.nan
    with pytest.raises(
        DriftError, match="column 'income' has no usable value in the current data"
    ):
        detect_column_drift(reference, current, {"income": "numerical"})


def _drift(column: str, drifted: bool) -> ColumnDrift:
    return ColumnDrift(
        column, "numerical", "wasserstein", 0.3 if drifted else 0.01, 0.1, drifted
    )


@pytest.mark.parametrize(
    ("drifted", "prediction", "auc", "findings", "action"),
    [
        (0, False, None, set(), MonitoringAction.NONE),
        (1, False, None, {Finding.FEATURE_DRIFT}, MonitoringAction.HUMAN_REVIEW),
        (0, True, None, {Finding.PREDICTION_DRIFT}, MonitoringAction.HUMAN_REVIEW),
        (
            3,
            False,
            None,
            {Finding.FEATURE_DRIFT, Finding.DATASET_DRIFT},
            MonitoringAction.RETRAIN,
        ),
        (1, False, 0.70, {Finding.FEATURE_DRIFT}, MonitoringAction.HUMAN_REVIEW),
        (0, False, 0.60, {Finding.PERFORMANCE_DROP}, MonitoringAction.ROLLBACK),
        (3, True, 0.60, set(Finding), MonitoringAction.ROLLBACK),
    ],
)
def test_the_policy_takes_the_most_severe_action(
    drifted: int,
    prediction: bool,
    auc: float | None,
    findings: set[Finding],
    action: MonitoringAction,
) -> None:
    settings = MonitoringSettings()
    features = [_drift(f"f{i}", i < drifted) for i in range(5)]
    quality = Quality(400, auc, 0.74) if auc is not None else None
    measured = Measurements(500, features, _drift("score", prediction), quality)
    found = find(measured, settings)
    assert set(found) == findings
    assert choose_action(found, settings) is action


def test_a_configured_action_is_the_one_taken() -> None:
    settings = MonitoringSettings.model_validate(
        {"policy": {"feature_drift": "retrain"}}
    )
    assert (
        choose_action({Finding.FEATURE_DRIFT: "x"}, settings)
        is MonitoringAction.RETRAIN
    )
    with pytest.raises(ValueError, match="feature_drif"):
        MonitoringSettings.model_validate({"policy": {"feature_drif": "retrain"}})


def test_too_few_decisions_give_no_verdict() -> None:
    reference = _book(500, 1).assign(score=0.1, defaulted=0)
    current = _book(20, 2, shift=1.0).assign(score=0.9, defaulted=np.nan)
    verdict = judge_window(reference, current, MonitoringSettings(min_decisions=50))
    assert verdict.action is MonitoringAction.NONE
    assert verdict.drift_snapshot is None
    assert verdict.summary()["notes"] == [
        "20 scored decision(s) in the window, fewer than the 50 a verdict needs"
    ]


def test_the_reference_sample_is_seeded_and_order_free() -> None:
    frame = pd.DataFrame(
        {"application_id": [f"L{i:09d}" for i in range(1_000)], "x": range(1_000)}
    )
    first = sample_reference(frame, 100, seed=7)
    shuffled = sample_reference(frame.sample(frac=1.0, random_state=3), 100, seed=7)
    assert len(first) == 100
    assert sorted(first["application_id"]) == sorted(shuffled["application_id"])
    assert sorted(sample_reference(frame, 100, seed=8)["application_id"]) != sorted(
        first["application_id"]
    )
    assert len(sample_reference(frame, 5_000, seed=7)) == 1_000


def test_outcomes_join_by_request_the_last_delivery_winning() -> None:
    current = pd.DataFrame(
        {"request_id": ["req_a", "req_b", "req_c"], "score": [0.1, 0.2, 0.3]}
    )
    outcomes = pd.DataFrame(
        {"request_id": ["req_a", "req_b", "req_a"], "defaulted": [0, 1, 1]}
    )
    joined = with_outcomes(current, outcomes)
    assert joined["defaulted"].tolist()[:2] == [1.0, 1.0]
    assert np.isnan(joined["defaulted"].iloc[2])
    assert with_outcomes(current, None)["defaulted"].isna().all()


def test_the_drift_knob_sends_more_stressed_applicants_for_larger_loans() -> None:
    from bankplatform.synthetic.applicants import draw_applications

    rng = np.random.default_rng(5)
    customers = 2_000
    features = pd.DataFrame(
        {
            "customer_token": [f"cus_{i:032x}" for i in range(customers)],
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
            "card_utilisation": rng.beta(2, 5, customers),
            "late_fee_count_365d": rng.poisson(1.0, customers),
            "returned_dd_count_365d": rng.poisson(0.5, customers),
            "ecommerce_count_30d": rng.poisson(4.0, customers),
            "income": rng.lognormal(10.3, 0.4, customers),
        }
    )
    calm = draw_applications(features, 3_000, seed=1, drift=0.0)
    stressed = draw_applications(features, 3_000, seed=1, drift=1.5)
    by_token = features.set_index("customer_token")
    calm_fees = by_token.loc[calm["customer_token"], "late_fee_count_365d"].mean()
    stressed_fees = by_token.loc[
        stressed["customer_token"], "late_fee_count_365d"
    ].mean()
    assert stressed_fees > calm_fees * 1.2
    assert stressed["amount"].median() > calm["amount"].median() * 1.3
    assert calm["amount"].between(1_000, 50_000).all()
    assert set(calm["term_months"]) <= {12, 24, 36, 48, 60}
    assert draw_applications(features, 50, seed=1).equals(
        draw_applications(features, 50, seed=1)
    )


def test_the_review_view_rederives_each_verdict() -> None:
    report = {
        "prediction": {
            "column": "score",
            "method": "ks",
            "score": 0.2,
            "threshold": 0.05,
            "drifted": False,
        },
        "features": [
            {
                "column": "income",
                "method": "wasserstein",
                "score": 0.1,
                "threshold": 0.1,
                "drifted": True,
            },
            {
                "column": "purpose",
                "method": "chisquare",
                "score": 0.001,
                "threshold": 0.0016,
                "drifted": True,
            },
            {
                "column": "tenure",
                "method": "ks",
                "score": 0.002,
                "threshold": 0.0016,
                "drifted": False,
            },
        ],
    }
    assert (
        rederived_verdict(report)
        == recorded_verdict(report)
        == {
            "drifted_features": ["income", "purpose"],
            "prediction_drifted": False,
        }
    )
    report["features"][2]["drifted"] = True  # a report whose verdict does not follow
    assert rederived_verdict(report) != recorded_verdict(report)


def test_the_report_page_shows_every_verdict_and_loads_nothing(tmp_path: Path) -> None:
    from bankplatform.governance.evidence import cdn_references
    from bankplatform.monitoring.reports import write_html

    reference = _book(1_500, 1).assign(score=np.linspace(0, 1, 1_500), defaulted=np.nan)
    current = _book(600, 2, shift=0.4).assign(
        score=np.linspace(0.2, 1, 600), defaulted=np.nan
    )
    verdict = judge_window(reference, current, MonitoringSettings(report_features=2))
    summary = {
        "window": "2026-11-29",
        "model_name": "credit_default_pd",
        "model_version": 4,
        "reference_rows": 1_500,
        **verdict.summary(),
    }
    assert verdict.drift_snapshot is not None
    shown = [m["config"]["column"] for m in verdict.drift_snapshot.dict()["metrics"]]
    assert shown[0] == "score" and len(shown) == 3
    values = {
        m["config"]["column"]: m["value"]
        for m in verdict.drift_snapshot.dict()["metrics"]
    }
    for d in [verdict.measured.prediction, *verdict.measured.features]:
        if d is not None and d.column in values:
            assert values[d.column] == pytest.approx(d.score)
    page = tmp_path / "report.html"
    write_html(verdict.drift_snapshot, page, summary)
    text = page.read_text()
    assert cdn_references(text) == []
    assert "credit_default_pd version 4" in text
    for column in current.columns.drop(["defaulted"]):
        assert f"<td>{column}</td>" in text


@pytest.mark.usefixtures("workspace_security")
def test_encrypted_partitions_keep_the_others_and_load_empty(
    service_workspace: Path,
) -> None:
    from bankplatform.datasets import EncryptedPartitionsDataset
    from bankplatform.security.runtime import acting_in_run

    folder = service_workspace / "data" / "07_model_output" / "monitoring_references"
    dataset = EncryptedPartitionsDataset(
        path=str(folder), dataset="monitoring_references"
    )
    assert dataset.load() == {}
    first = pd.DataFrame({"x": [1.0, 2.0]})
    with acting_in_run("evaluation"):  # the evaluation keeps the references
        dataset.save({"credit_default_pd-v1": first})
        dataset.save({"credit_default_pd-v2": first * 2})
    loaded = dataset.load()
    assert sorted(loaded) == ["credit_default_pd-v1", "credit_default_pd-v2"]
    assert loaded["credit_default_pd-v2"]()["x"].tolist() == [2.0, 4.0]
    assert b"x" not in (folder / "credit_default_pd-v1.parquet.enc").read_bytes()[:64]
