"""Settings of the synthetic core-banking extract."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GeneratorConfig(BaseModel):
    """What to generate: size, seed, time window and the planted effects.

    The same settings always give byte-identical files.

    Attributes:
        customers: Number of customers; every other table scales with it.
        seed: Seed of every random draw.
        dirty_rate: Share of rows per table that get a defect real extracts
            have (missing or duplicate key, impossible date, bad amount,
            unknown category, orphan foreign key).
        group_bias: Strength of the planted bias against one protected group
            (0 = none). Lowers that group's income and raises its default
            rate beyond what its features explain, for the fairness gate.
        drift: Strength of the drift over application time (0 = none).
            Later applicants are more stressed and shop more online, for
            the monitoring pipeline.
        history_start: First day of transaction history.
        history_end: Last day of transaction history.
        applications_start: First application date; leaves room for a
            look-back window of transaction history.
        chunk_customers: Customers generated per chunk; bounds memory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(ge=10, le=50_000_000)
    seed: int = Field(default=42, ge=0)
    dirty_rate: float = Field(default=0.005, ge=0.0, le=0.2)
    group_bias: float = Field(default=0.0, ge=0.0, le=3.0)
    drift: float = Field(default=0.0, ge=0.0, le=3.0)
    history_start: date = date(2024, 1, 1)
    history_end: date = date(2025, 12, 31)
    applications_start: date = date(2024, 4, 1)
    chunk_customers: int = Field(default=20_000, ge=10)

    @model_validator(mode="after")
    def _check_window(self) -> GeneratorConfig:
        if not self.history_start < self.applications_start < self.history_end:
            msg = "need history_start < applications_start < history_end"
            raise ValueError(msg)
        return self
