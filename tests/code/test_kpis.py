"""Platform KPIs replayed from audit records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bankplatform.governance.kpis import kpi_lines, measure_kpis

MODEL = "credit_default_pd"


def _record(time: str, action: str, resource: str, **details: Any) -> dict[str, Any]:
    return {
        "time": f"{time}+00:00",
        "action": action,
        "resource": resource,
        "outcome": "allowed",
        "actor": "someone",
        "details": details,
    }


RECORDS = [
    _record("2026-01-02T09:00:00", "model.register", f"model:{MODEL}/1"),
    _record(
        "2026-01-02T10:00:00",
        "model.evaluate",
        f"model:{MODEL}/1",
        failed_gates=["fairness"],
    ),
    _record("2026-01-03T09:00:00", "model.register", f"model:{MODEL}/2"),
    _record(
        "2026-01-03T10:00:00", "model.evaluate", f"model:{MODEL}/2", failed_gates=[]
    ),
    _record("2026-01-05T09:00:00", "model.approve", f"model:{MODEL}/2"),
    _record("2026-01-06T09:00:00", "model.promote", f"model:{MODEL}/2"),
    _record("2026-01-07T09:00:00", "model.register", f"model:{MODEL}/3"),
    _record(
        "2026-01-07T10:00:00",
        "model.evaluate",
        f"model:{MODEL}/3",
        failed_gates=["fairness", "calibration"],
    ),
    _record(
        "2026-01-08T09:00:00", "model.evaluate", f"model:{MODEL}/3", failed_gates=[]
    ),
    _record("2026-01-08T21:00:00", "model.approve", f"model:{MODEL}/3"),
    _record("2026-01-09T09:00:00", "model.promote", f"model:{MODEL}/3"),
    _record("2026-02-01T09:00:00", "model.rollback", f"model:{MODEL}/2"),
    _record("2026-02-02T09:00:00", "scoring.rollback", "scoring", automatic=True),
    _record(
        "2026-01-20T09:00:00",
        "monitoring.verdict",
        f"monitoring:{MODEL}/2026-01-19",
        findings={"feature_drift": "x"},
    ),
    _record(
        "2026-01-21T09:00:00",
        "monitoring.verdict",
        f"monitoring:{MODEL}/2026-01-20",
        findings={},
    ),
    _record(
        "2026-02-10T09:00:00",
        "monitoring.verdict",
        f"monitoring:{MODEL}/2026-02-09",
        findings={"performance_drop": "y"},
    ),
    # Denied attempts and other models' records do not count.
    {
        **_record("2026-01-04T09:00:00", "model.approve", f"model:{MODEL}/1"),
        "outcome": "denied",
    },
    _record("2026-01-04T09:00:00", "model.promote", "model:fraud_model/1"),
]


def test_kpis_replay_the_audit_log() -> None:
    kpis = measure_kpis(
        RECORDS,
        model_name=MODEL,
        squad="retail-credit",
        first_experiment_at=datetime(2026, 1, 1, 9, 0, tzinfo=UTC),
        champion_now=True,
    )
    assert kpis.first_champion_at == "2026-01-06T09:00:00+00:00"
    assert kpis.time_to_market_days == 5.0
    assert kpis.approval_lead_days == {2: 2.0, 3: 1.5}
    assert kpis.median_approval_lead_days == 1.75
    assert kpis.evaluations == 4
    assert kpis.gate_failure_rate() == {"calibration": 0.25, "fairness": 0.5}
    assert kpis.rollbacks_per_month == {"2026-02": 2}
    assert kpis.drift_incidents_per_month == {"2026-01": 1, "2026-02": 1}
    assert kpis.in_production == {"retail-credit": 1}
    lines = kpi_lines(kpis.as_record())
    assert (
        lines[1]
        == "time to market (first experiment run -> first champion): 5.00 days (120.0 h)"
    )
    assert "calibration 25%, fairness 50%" in lines[3]


def test_a_workspace_with_nothing_yet_has_no_figures() -> None:
    kpis = measure_kpis(
        [], model_name=MODEL, squad="s", first_experiment_at=None, champion_now=False
    )
    assert kpis.time_to_market_days is None
    assert kpis.median_approval_lead_days is None
    assert kpis.gate_failure_rate() == {}
    assert kpis.in_production == {"s": 0}
    assert kpi_lines(kpis.as_record())[3].endswith("none failed")


@pytest.mark.parametrize(
    "bad", ["model:credit_default_pd/x", "model:credit_default_pd/"]
)
def test_records_without_a_version_are_skipped(bad: str) -> None:
    records = [_record("2026-01-02T09:00:00", "model.register", bad)]
    kpis = measure_kpis(
        records,
        model_name=MODEL,
        squad="s",
        first_experiment_at=None,
        champion_now=False,
    )
    assert kpis.approval_lead_days == {}
