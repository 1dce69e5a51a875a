"""Served decisions whose loan outcomes arrived, as training rows.

The scoring service logs the exact inputs of every decision (the customer's
features from the online store as they were at that instant, and the
application's terms): with the outcome the loan-servicing system delivered
later, each is a point-in-time labelled application, newer than anything in
the extract. The training window is the extract's labelled applications plus
these, so the out-of-time split (``OutOfTimeSplit``) rolls forward as outcomes
arrive and a retrained version learns from, and is judged on, the newest
window instead of refitting the one its champion was fitted on.
"""

from __future__ import annotations

import pandas as pd

from bankplatform.training.boosting import LABEL

APPLICATION_ID = "application_id"
CUSTOMER = "customer_token"
EVENT_TIME = "event_timestamp"
_REQUEST_ID = "request_id"
# What the decision log holds besides the model's inputs.
_DECISION_ONLY = ("time", "score", "model_version", "decision")


def labelled_decisions(
    decisions: pd.DataFrame, outcomes: pd.DataFrame, attributes: pd.DataFrame
) -> pd.DataFrame:
    """The decisions that have an outcome, as training-set rows.

    Args:
        decisions: The decision log's audited decisions (``request_id``,
            ``time``, ``customer_token``, score, version, and the inputs).
        outcomes: Delivered outcomes (``request_id``, ``defaulted``); a request
            delivered twice counts once (the latest delivery).
        attributes: ``customer_token`` and the protected attributes (fairness
            tests only, never features).

    Returns:
        ``application_id`` (the request id), ``customer_token``,
        ``event_timestamp`` (the decision's time), the inputs, ``defaulted``
        and the protected attributes; oldest first.
    """
    if decisions.empty or outcomes.empty:
        return pd.DataFrame(columns=[APPLICATION_ID, CUSTOMER, EVENT_TIME, LABEL])
    latest = outcomes.drop_duplicates(_REQUEST_ID, keep="last")[[_REQUEST_ID, LABEL]]
    joined = decisions.drop_duplicates(_REQUEST_ID, keep="last").merge(
        latest, on=_REQUEST_ID, how="inner"
    )
    rows = joined.drop(columns=[c for c in _DECISION_ONLY if c in joined.columns])
    rows = rows.rename(columns={_REQUEST_ID: APPLICATION_ID})
    rows.insert(
        2, EVENT_TIME, pd.to_datetime(joined["time"], utc=True, format="ISO8601")
    )
    rows[LABEL] = rows[LABEL].astype("int8")
    rows = rows.merge(attributes.drop_duplicates(CUSTOMER), on=CUSTOMER, how="left")
    return rows.sort_values(EVENT_TIME, kind="stable").reset_index(drop=True)


def training_window(training_set: pd.DataFrame, labelled: pd.DataFrame) -> pd.DataFrame:
    """The extract's labelled applications and the labelled decisions, in the
    training set's columns and types (a column the decisions lack is missing
    for them; one only they have is dropped)."""
    if labelled.empty:
        return training_set
    aligned = pd.DataFrame(index=labelled.index)
    for column in training_set.columns:
        kind = training_set[column].dtype
        values = labelled[column] if column in labelled.columns else None
        if values is None:
            aligned[column] = pd.Series(pd.NA, index=labelled.index).astype(
                kind if not pd.api.types.is_integer_dtype(kind) else "float64"
            )
        elif pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(
            kind
        ):
            aligned[column] = pd.to_numeric(values, errors="coerce").astype(
                kind if not values.isna().any() else "float64"
            )
        elif isinstance(kind, pd.DatetimeTZDtype):
            aligned[column] = pd.to_datetime(values, utc=True).dt.tz_convert(kind.tz)
        else:
            aligned[column] = values.astype(kind)
    return pd.concat([training_set, aligned], ignore_index=True)
