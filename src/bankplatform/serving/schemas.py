"""Request and response bodies of the scoring API (pydantic, strict, no extras).

Strict mode: ``false`` is not a number and ``"36"`` is not a term. Numbers that
JSON writes as ``2.0`` are accepted for the amount (a float); the term is an
integer with its allowed values listed in the schema. Ids carry a ``pattern``
so the OpenAPI document says exactly what is accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bankplatform.contracts.reference import PURPOSES, TERMS_MONTHS

CUSTOMER_TOKEN = r"^cus_[0-9a-f]{32}$"  # noqa: S105 - a pattern, not a secret
REQUEST_ID = r"^req_[0-9a-f]{32}$"
MAX_AMOUNT = 1_000_000.0
Purpose = Literal[PURPOSES]  # type: ignore[valid-type]


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer includes ``36.0``: accept it as 36, nothing else."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Term = Annotated[Literal[TERMS_MONTHS], BeforeValidator(_whole_number)]  # type: ignore[valid-type]
Decision = Literal["approve", "decline", "refer"]
Variant = Literal["champion", "challenger"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Application(_Body):
    """A loan application to score: who (pseudonymous token) and what was asked for."""

    customer_token: str = Field(
        pattern=CUSTOMER_TOKEN,
        description="The customer's pseudonymous token (from ingestion), never a raw id.",
    )
    amount: float = Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)
    term_months: Term
    purpose: Purpose


class ReasonCode(BaseModel):
    """One feature that pushed the probability of default up, and by how much."""

    feature: str
    value: float | str | None
    contribution: float = Field(description="Log-odds added by this feature.")


class ScoreResponse(BaseModel):
    """The decision on one application."""

    request_id: str
    score: float | None = Field(
        description="Probability of default; null when referred by a halt."
    )
    decision: Decision
    cut_off: float = Field(
        description="Approved at or below this probability of default."
    )
    refer_up_to: float = Field(
        description="Above the cut-off and at or below this, an underwriter decides (refer); above it, declined."
    )
    reason_codes: list[ReasonCode]
    model_version: int | None
    variant: Variant | None


class TrafficRequest(_Body):
    """A release change: any field left out keeps its value."""

    challenger_weight: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False
    )
    shadow: bool | None = None
    reason: str = Field(min_length=1, max_length=500)


class HaltRequest(_Body):
    """Stop (``halted: true``) or resume automated decisions."""

    halted: bool
    reason: str = Field(min_length=1, max_length=500)


class RollbackRequest(_Body):
    """Take the challenger out of traffic now."""

    reason: str = Field(min_length=1, max_length=500)


class OverrideRequest(_Body):
    """A reviewer's decision replacing the model's."""

    decision: Decision
    reason: str = Field(min_length=1, max_length=1_000)


class AppealRequest(_Body):
    """An applicant contests a decision (sent by the origination system)."""

    reason: str = Field(min_length=1, max_length=1_000)


class TrafficState(BaseModel):
    """The release state the service routes by."""

    model_config = ConfigDict(extra="forbid")

    challenger_weight: float = Field(default=0.0, ge=0, le=1)
    shadow: bool = False
    halted: bool = False
    changed_by: str = ""
    reason: str = ""
