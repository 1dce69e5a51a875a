"""The typed view the model card and the Annex IV pack are rendered from: the gate
report as the evaluation wrote it, parsed once (a report missing a field the
documents state is refused here, not halfway through a page), and the Jinja2
environment over ``templates/``."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from bankplatform.governance.settings import refer_up_to


class _Read(BaseModel):
    """A part of the gate report: read what the documents state, ignore the rest."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OutOfTime(_Read):
    """Discrimination and accuracy on the out-of-time window."""

    auc: float
    gini: float
    ks: float
    pr_auc: float
    brier: float
    rows: int


class Performance(_Read):
    """``measurements.performance``."""

    out_of_time: OutOfTime
    calibration_error: float


class Champion(_Read):
    """``measurements.champion``: the comparison with the version serving."""

    version: int | None = None
    metrics: dict[str, float] = {}
    auc_drop: float | None = None


class GroupFairness(_Read):
    """``measurements.fairness.<attribute>``."""

    disparate_impact_ratio: float
    equal_opportunity_difference: float
    auc_gap: float


class Stability(_Read):
    """``measurements.stability``: PSI of the score and of each feature, in the
    model's feature order."""

    score: float
    features: dict[str, float]

    def largest(self, count: int) -> list[tuple[str, float]]:
        """The ``count`` features whose PSI is largest."""
        return sorted(self.features.items(), key=lambda kv: -kv[1])[:count]


class Contribution(_Read):
    """One feature's mean absolute contribution (log-odds)."""

    feature: str
    mean_abs: float


class Measurements(_Read):
    """``measurements``."""

    performance: Performance
    champion: Champion
    fairness: dict[str, GroupFairness]
    stability: Stability
    explanation: list[Contribution]


class GateResult(_Read):
    """One gate against its threshold."""

    name: str
    value: float
    bound: str
    threshold: float
    blocking: bool
    passed: bool
    detail: str = ""


class ReportSettings(_Read):
    """The governance settings the version was judged by."""

    decision_cut_off: float
    refer_band: float = 0.0
    protected_attributes: list[str]

    def refer_up_to(self) -> float:
        """The top of the refer band it was judged with."""
        return refer_up_to(self.decision_cut_off, self.refer_band)


class GateReport(_Read):
    """``gate_report.json`` of a version's evidence folder."""

    gate_status: str
    gates: list[GateResult]
    measurements: Measurements
    settings: ReportSettings


def number(value: Any) -> str:
    """Four significant digits, as every figure in the documents."""
    return f"{float(value):.4g}"


def cell(value: Any) -> str:
    """A Markdown table cell: a ``|`` in the text would split it."""
    return str(value).replace("|", "/")


def lifecycle_detail(record: dict[str, Any]) -> str:
    """A lifecycle record's detail for the card: its reason, else its alias
    changes (``champion 2 -> 1``)."""
    details = record.get("details") or {}
    if details.get("reason"):
        return str(details["reason"])[:80]
    moves = [
        f"{alias} {before or '-'} -> {after or '-'}"
        for alias, (before, after) in sorted((details.get("aliases") or {}).items())
    ]
    return ", ".join(moves)


@cache
def templates() -> Environment:
    """The documents' Jinja2 environment (Markdown: nothing is HTML-escaped)."""
    environment = Environment(
        loader=PackageLoader("bankplatform.governance", "templates"),
        autoescape=False,  # noqa: S701 - Markdown; card_html makes the page
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["number"] = number
    environment.filters["cell"] = cell
    environment.filters["lifecycle_detail"] = lifecycle_detail
    return environment
