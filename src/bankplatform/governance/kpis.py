"""Platform KPIs, measured from the audit log and MLflow: what a CIO asks of the
platform (time to market, approval lead time, gate failures, incidents, models
in production per squad).

Every figure is a replay of records: the audit log's signed lifecycle,
evaluation, scoring and monitoring records, and the first MLflow run of the
model's experiment. Times are UTC; durations in days.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from bankplatform.manifest import WorkspaceManifest
    from bankplatform.security.runtime import WorkspaceSecurity


@dataclass(frozen=True)
class PlatformKpis:
    """The KPIs of one workspace's model.

    Attributes:
        model_name: The registered model.
        squad: Its owning squad (``.kedro.yml``).
        first_experiment_at: Start of the model experiment's first run.
        first_champion_at: First promotion to champion.
        time_to_market_days: From the first experiment run to the first champion.
        approval_lead_days: Per approved version, registration to approval.
        evaluations: Evaluations recorded.
        gate_failures: Gate -> evaluations it failed.
        rollbacks_per_month: ``YYYY-MM`` -> champion rollbacks and releases
            rolled back by the scoring service.
        drift_incidents_per_month: ``YYYY-MM`` -> monitored windows with a
            finding (a window judged again counts once).
        in_production: Squad -> models with a champion.
    """

    model_name: str
    squad: str
    first_experiment_at: str | None
    first_champion_at: str | None
    time_to_market_days: float | None
    approval_lead_days: dict[int, float] = field(default_factory=dict)
    evaluations: int = 0
    gate_failures: dict[str, int] = field(default_factory=dict)
    rollbacks_per_month: dict[str, int] = field(default_factory=dict)
    drift_incidents_per_month: dict[str, int] = field(default_factory=dict)
    in_production: dict[str, int] = field(default_factory=dict)

    @property
    def median_approval_lead_days(self) -> float | None:
        """Median registration-to-approval time over approved versions."""
        leads = list(self.approval_lead_days.values())
        return statistics.median(leads) if leads else None

    def gate_failure_rate(self) -> dict[str, float]:
        """Gate -> share of evaluations it failed."""
        if not self.evaluations:
            return {}
        return {g: n / self.evaluations for g, n in sorted(self.gate_failures.items())}

    def as_record(self) -> dict[str, Any]:
        """JSON-ready, with the derived figures."""
        return {
            "model_name": self.model_name,
            "squad": self.squad,
            "first_experiment_at": self.first_experiment_at,
            "first_champion_at": self.first_champion_at,
            "time_to_market_days": self.time_to_market_days,
            "approval_lead_days": {
                str(v): d for v, d in self.approval_lead_days.items()
            },
            "median_approval_lead_days": self.median_approval_lead_days,
            "evaluations": self.evaluations,
            "gate_failure_rate": self.gate_failure_rate(),
            "rollbacks_per_month": self.rollbacks_per_month,
            "drift_incidents_per_month": self.drift_incidents_per_month,
            "models_in_production_per_squad": self.in_production,
        }


def measure_kpis(
    records: list[dict[str, Any]],
    *,
    model_name: str,
    squad: str,
    first_experiment_at: datetime | None,
    champion_now: bool,
) -> PlatformKpis:
    """Replay the audit records of a model into its KPIs.

    Args:
        records: The audit log's records (all of them, oldest first).
        model_name: The registered model.
        squad: Its owning squad.
        first_experiment_at: Start of the first run of the model's experiment.
        champion_now: Whether a version holds ``champion`` now.
    """
    prefix = f"model:{model_name}/"
    mine = [
        r
        for r in records
        if r.get("outcome") == "allowed"
        and (
            str(r.get("resource", "")).startswith(prefix)
            or str(r.get("resource", "")).startswith(f"monitoring:{model_name}/")
            or r.get("action") == "scoring.rollback"
        )
    ]
    registered: dict[int, datetime] = {}
    approved: dict[int, datetime] = {}
    failures: Counter[str] = Counter()
    evaluations = 0
    rollbacks: Counter[str] = Counter()
    incident_windows: dict[str, str] = {}  # a window counts once, in its first month
    first_champion: datetime | None = None
    for record in mine:
        action, at = record["action"], _time(record["time"])
        details = record.get("details") or {}
        version = _version(record, prefix)
        if action == "model.register" and version is not None:
            registered.setdefault(version, at)
        elif action == "model.approve" and version is not None:
            approved.setdefault(version, at)
        elif action == "model.evaluate":
            evaluations += 1
            failures.update(details.get("failed_gates") or [])
        elif action == "model.promote" and first_champion is None:
            first_champion = at
        elif action in ("model.rollback", "scoring.rollback"):
            rollbacks[f"{at:%Y-%m}"] += 1
        elif action == "monitoring.verdict" and details.get("findings"):
            incident_windows.setdefault(str(record["resource"]), f"{at:%Y-%m}")
    return PlatformKpis(
        model_name=model_name,
        squad=squad,
        first_experiment_at=_text(first_experiment_at),
        first_champion_at=_text(first_champion),
        time_to_market_days=_days(first_experiment_at, first_champion),
        approval_lead_days={
            v: _days(registered[v], at) or 0.0
            for v, at in sorted(approved.items())
            if v in registered
        },
        evaluations=evaluations,
        gate_failures=dict(sorted(failures.items())),
        rollbacks_per_month=dict(sorted(rollbacks.items())),
        drift_incidents_per_month=dict(
            sorted(Counter(incident_windows.values()).items())
        ),
        in_production={squad: 1 if champion_now else 0},
    )


def _version(record: dict[str, Any], prefix: str) -> int | None:
    tail = str(record.get("resource", "")).removeprefix(prefix)
    return int(tail) if tail.isdigit() else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _days(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 86_400, 4)


def _text(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def first_run_start(client: MlflowClient, model_name: str) -> datetime | None:
    """Start of the first run of the model's MLflow experiment (None if none)."""
    experiment = client.get_experiment_by_name(model_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if not runs:
        return None
    return datetime.fromtimestamp(runs[0].info.start_time / 1000, tz=UTC)


def kpi_lines(kpis: dict[str, Any]) -> list[str]:
    """The KPIs as lines a person reads."""

    def days(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} days ({value * 24:.1f} h)"

    rates = kpis["gate_failure_rate"]
    return [
        f"model {kpis['model_name']} (squad {kpis['squad']})",
        f"time to market (first experiment run -> first champion): {days(kpis['time_to_market_days'])}",
        f"approval lead time (registration -> approval), median of {len(kpis['approval_lead_days'])}: "
        f"{days(kpis['median_approval_lead_days'])}",
        f"gate failure rate over {kpis['evaluations']} evaluation(s): "
        + (", ".join(f"{g} {r:.0%}" for g, r in rates.items()) or "none failed"),
        "rollbacks per month: "
        + (
            ", ".join(f"{m} {n}" for m, n in kpis["rollbacks_per_month"].items())
            or "none"
        ),
        "drift incidents per month: "
        + (
            ", ".join(f"{m} {n}" for m, n in kpis["drift_incidents_per_month"].items())
            or "none"
        ),
        "models in production per squad: "
        + ", ".join(
            f"{s} {n}" for s, n in kpis["models_in_production_per_squad"].items()
        ),
    ]


def workspace_kpis(
    security: WorkspaceSecurity, manifest: WorkspaceManifest, tracking_uri: str
) -> PlatformKpis:
    """The KPIs of a workspace's model (the caller needs ``read_audit_log``).

    Args:
        security: The env's key service client (the audit log).
        manifest: The workspace manifest (model and squad).
        tracking_uri: The env's tracking store (first run, the champion).

    Raises:
        AccessDenied: The acting identity may not read the audit log (audited).
    """
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    from bankplatform.governance.registry import CHAMPION, alias_holder  # noqa: PLC0415
    from bankplatform.security.policy import Action  # noqa: PLC0415

    security.enforce(Action.READ_AUDIT_LOG, "audit_log")
    client = MlflowClient(tracking_uri=tracking_uri)
    return measure_kpis(
        list(security.audit_log().records()),
        model_name=manifest.model_name,
        squad=manifest.owning_squad,
        first_experiment_at=first_run_start(client, manifest.model_name),
        champion_now=alias_holder(client, manifest.model_name, CHAMPION) is not None,
    )
