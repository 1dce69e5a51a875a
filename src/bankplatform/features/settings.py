"""``params:features``: how snapshots are built and which feature service trains."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FeaturesParameters(BaseModel):
    """``params:features``.

    Attributes:
        chunk_customers: Customers per chunk when building snapshots (bounds memory).
        feature_service: The feature service the training set is built from.
    """

    model_config = ConfigDict(extra="forbid")

    chunk_customers: int = Field(default=20_000, ge=100)
    feature_service: str = "credit_default_v1"
