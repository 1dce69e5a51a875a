"""``params:features``: how snapshots are built and which feature service trains."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FeaturesParameters(BaseModel):
    """``params:features``.

    Attributes:
        chunk_customers: Customers per chunk when building snapshots (bounds memory).
        feature_service: The feature service the training set is built from.
        engine: Where snapshots are computed: ``local`` (in the node's process,
            a chunk at a time) or ``ray`` (Ray Data tasks on the connected cluster,
            reading the same encrypted files).
        require_cluster: With ``ray``: refuse to start a local Ray (no
            ``$RAY_ADDRESS``, no running Ray).
    """

    model_config = ConfigDict(extra="forbid")

    chunk_customers: int = Field(default=20_000, ge=100)
    feature_service: str = "credit_default_v1"
    engine: Literal["local", "ray"] = "local"
    require_cluster: bool = False
