"""Who applies in simulated traffic, with the generator's drift knob.

Applications are drawn as the generator draws them (a loan of about a quarter
of the applicant's income, the generator's purpose mix, any term), so traffic
without drift looks like the out-of-time window a model was validated on.

The generator's ``drift`` makes later applicants more stressed (more card
utilisation, late fees and returned direct debits, more online shopping, lower
income). Simulated traffic applies the same knob to the applicant stream: with
strength ``s`` a customer applies with weight ``exp(s * stress)``, where
``stress`` is the standardised mean of those signals in their latest features
snapshot, and asks for a loan ``1 + s / 2`` times larger. ``s = 0`` is the
book as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bankplatform.contracts.reference import PURPOSES, TERMS_MONTHS
from bankplatform.synthetic.lending import PURPOSE_PROBS, loan_amounts

CUSTOMER = "customer_token"
# +1: more of it = more stressed; -1: less of it.
STRESS_SIGNALS = {
    "card_utilisation": 1.0,
    "late_fee_count_365d": 1.0,
    "returned_dd_count_365d": 1.0,
    "ecommerce_count_30d": 1.0,
    "income": -1.0,
}
# The snapshot columns ``draw_applications`` reads.
APPLICANT_COLUMNS = [CUSTOMER, "event_timestamp", *STRESS_SIGNALS]


def draw_applications(
    features: pd.DataFrame, count: int, seed: int, drift: float = 0.0
) -> pd.DataFrame:
    """``count`` loan applications of known customers.

    Args:
        features: Customer feature snapshots (``customer_token``,
            ``event_timestamp``, ``income`` and the stress signals).
        count: Applications to draw.
        seed: Seed of every draw.
        drift: Strength, 0 to 3, as ``bankplatform data generate --drift``.

    Returns:
        ``customer_token``, ``amount``, ``term_months``, ``purpose`` per application.
    """
    latest = _latest(features)
    rng = np.random.default_rng(seed)
    weights = applicant_weights(latest, drift)
    chosen = rng.choice(len(latest), size=count, p=weights)
    income = latest["income"].fillna(latest["income"].median()).to_numpy()[chosen]
    amounts = np.minimum(loan_amounts(rng, income) * loan_scale(drift), 1_000_000.0)
    return pd.DataFrame(
        {
            CUSTOMER: latest.index.to_numpy()[chosen].astype(str),
            "amount": amounts,
            "term_months": rng.choice(np.array(TERMS_MONTHS), size=count),
            "purpose": np.array(PURPOSES)[
                rng.choice(len(PURPOSES), size=count, p=PURPOSE_PROBS)
            ],
        }
    )


def applicant_weights(latest: pd.DataFrame, drift: float) -> np.ndarray:
    """Each customer's chance to apply (sums to 1), in ``latest``'s order.

    Args:
        latest: One features snapshot per customer.
        drift: Strength, 0 to 3.
    """
    signals = [
        sign * _standardised(latest[column].astype("float64"))
        for column, sign in STRESS_SIGNALS.items()
        if column in latest.columns
    ]
    stress = sum(signals) / max(len(signals), 1) if signals else 0.0
    weights = np.exp(drift * np.asarray(stress, dtype="float64")) * np.ones(len(latest))
    return np.asarray(weights / weights.sum(), dtype="float64")


def _latest(features: pd.DataFrame) -> pd.DataFrame:
    """Each customer's latest snapshot, by token."""
    return (
        features.sort_values("event_timestamp")
        .drop_duplicates(CUSTOMER, keep="last")
        .dropna(subset=[CUSTOMER])
        .set_index(CUSTOMER)
        .sort_index()
    )


def loan_scale(drift: float) -> float:
    """How much larger the drifted stream's loans are."""
    return 1.0 + drift / 2


def _standardised(values: pd.Series) -> pd.Series:
    spread = values.std()
    centred = values.fillna(values.median()) - values.mean()
    return centred / spread if spread and np.isfinite(spread) else centred * 0.0
