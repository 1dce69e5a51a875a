"""What a window is judged on: the champion's reference (sampled by a seeded
rule) and the window's decisions, typed like the reference, with the loan
outcomes that have arrived."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from bankplatform.monitoring.reports import LABEL
from bankplatform.monitoring.windows import (
    CUSTOMER_TOKEN,
    DECISION,
    MODEL_VERSION,
    REQUEST_ID,
    SCORE,
)

APPLICATION_ID = "application_id"
# Columns of the decision log that are not model inputs.
_NOT_INPUTS = frozenset(
    {REQUEST_ID, "time", CUSTOMER_TOKEN, MODEL_VERSION, SCORE, DECISION, LABEL}
)


def reference_partition(model_name: str, version: int) -> str:
    """Name of a version's partition in ``monitoring_references``."""
    return f"{model_name}-v{version}"


def out_of_time_reference(scores: pd.DataFrame) -> pd.DataFrame:
    """The out-of-time window of the evaluation's scores: what the version was
    validated on (features, score, outcome)."""
    kept = scores[scores["window"] == "out_of_time"]
    return kept.drop(columns=["window"]).reset_index(drop=True)


def sample_reference(reference: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows: those with the lowest sha256("<seed>:<application_id>").

    The rule depends on neither storage order nor row count, so the same
    application is in or out of every monitoring run's sample.
    """
    if len(reference) <= rows:
        return reference.reset_index(drop=True)
    keys = np.array(
        [
            int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big")
            for i in reference[APPLICATION_ID].astype(str)
        ],
        dtype="uint64",
    )
    chosen = np.sort(np.argsort(keys, kind="stable")[:rows])
    return reference.iloc[chosen].reset_index(drop=True)


def model_inputs(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The logged model inputs that the reference has too, in the reference's order."""
    logged = set(current.columns) - _NOT_INPUTS
    return [c for c in reference.columns if c in logged]


def typed_like(
    current: pd.DataFrame, reference: pd.DataFrame, columns: list[str]
) -> pd.DataFrame:
    """The window's inputs with the reference's kinds: numbers as float, the rest as text."""
    typed = current.copy()
    for column in columns:
        if pd.api.types.is_numeric_dtype(reference[column]):
            typed[column] = pd.to_numeric(typed[column], errors="coerce").astype(
                "float64"
            )
        else:
            typed[column] = typed[column].astype(object)
    typed[SCORE] = typed[SCORE].astype("float64")
    return typed


def with_outcomes(current: pd.DataFrame, outcomes: pd.DataFrame | None) -> pd.DataFrame:
    """The window's decisions with ``defaulted`` where the outcome has arrived."""
    joined = current.copy()
    if outcomes is None or outcomes.empty:
        joined[LABEL] = np.nan
        return joined
    known = outcomes.drop_duplicates(REQUEST_ID, keep="last").set_index(REQUEST_ID)[
        LABEL
    ]
    joined[LABEL] = joined[REQUEST_ID].map(known).astype("float64")
    return joined
