"""``params:training``: split dates, Ray resources, booster, constraints; the
quality bounds a training run must meet."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OutOfTimeSplit(BaseModel):
    """The out-of-time split: either the newest ``out_of_time_months`` calendar
    months of labelled applications validate and everything before trains (the
    split rolls forward as outcomes arrive), or fixed dates: train on
    applications up to ``train_until``, validate on those from ``validate_from``.
    """

    model_config = ConfigDict(extra="forbid")

    out_of_time_months: int | None = Field(default=None, ge=1, le=60)
    train_until: date | None = None
    validate_from: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        fixed = (self.train_until, self.validate_from)
        if self.out_of_time_months is not None:
            if fixed != (None, None):
                msg = (
                    "give out_of_time_months or train_until and validate_from, not both"
                )
                raise ValueError(msg)
            return self
        if self.train_until is None or self.validate_from is None:
            msg = "give out_of_time_months, or both train_until and validate_from"
            raise ValueError(msg)
        if self.validate_from <= self.train_until:
            msg = "validate_from must be after train_until (out-of-time validation)"
            raise ValueError(msg)
        return self

    def dates(self, newest: date) -> tuple[date, date]:
        """``(train_until, validate_from)`` for labelled applications whose newest
        is ``newest`` (fixed dates are returned as they are)."""
        if self.out_of_time_months is None:
            assert self.train_until is not None and self.validate_from is not None  # noqa: S101 - validated
            return self.train_until, self.validate_from
        months = newest.year * 12 + newest.month - 1 - (self.out_of_time_months - 1)
        validate_from = date(months // 12, months % 12 + 1, 1)
        return validate_from - timedelta(days=1), validate_from


class QualityGate(BaseModel):
    """Out-of-time AUC bounds that stop a training run before registration:
    below ``min_auc`` the model is useless; above ``leakage_ceiling`` it is too
    good to be true for credit default data. The pipeline takes them from the
    evaluation's ``discrimination`` and ``leakage`` gates (``governance.yml``)."""

    model_config = ConfigDict(extra="forbid")

    min_auc: float = Field(ge=0.5, lt=1)
    leakage_ceiling: float = Field(gt=0.5, le=1)


class TrainingParameters(BaseModel):
    """``params:training``.

    Attributes:
        split: Out-of-time split dates.
        workers: Training workers; more than one uses Ray Train.
        cpus_per_worker: CPUs (and xgboost threads) per worker.
        use_gpu: ``auto`` uses GPUs when the Ray cluster has them.
        rounds: Maximum boosting rounds.
        early_stopping_rounds: Stop when validation AUC has not improved for this many.
        checkpoint_every: Rounds between checkpoints (a killed worker resumes there).
        seed: Random seed (same data and seed give the same model).
        booster: xgboost parameters.
        monotone: Feature -> +1 (never lowers PD) or -1 (never raises PD).
        tune_trials: Ray Tune trials over the booster's depth and learning rate (0 = off).
        require_cluster: Refuse to start a local Ray: train on ``$RAY_ADDRESS``'s
            cluster or not at all (production).
    """

    model_config = ConfigDict(extra="forbid")

    split: OutOfTimeSplit
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: int = Field(default=2, ge=1)
    use_gpu: Literal["auto", True, False] = "auto"
    rounds: int = Field(default=300, ge=1)
    early_stopping_rounds: int = Field(default=30, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    seed: int = 42
    booster: dict[str, float | int | str] = {}
    monotone: dict[str, Literal[-1, 1]] = {}
    tune_trials: int = Field(default=0, ge=0)
    require_cluster: bool = False
