"""Loan applications and their 12-month default outcomes, with the planted signal.

The default probability depends on the same hidden stress that shapes the
transaction history, on income, on the loan's burden and on purpose, plus an
unobservable shock, so that a good model lands in the published AUC range for
retail credit default (about 0.75 to 0.85) and no model can be perfect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bankplatform.contracts.reference import PURPOSES, TERMS_MONTHS
from bankplatform.synthetic.config import GeneratorConfig
from bankplatform.synthetic.population import CustomerTraits
from bankplatform.synthetic.text import decimal_text, numbered_ids

PURPOSE_PROBS = (0.25, 0.2, 0.25, 0.08, 0.05, 0.07, 0.1)
_PURPOSE_RISK = (0.0, -0.2, 0.35, 0.1, 0.0, 0.1, 0.15)
OUTCOME_HORIZON_DAYS = 365
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class ApplicationPlan:
    """Who applies and when, drawn before everything else in a chunk.

    Attributes:
        owner: Index (within the chunk) of the applying customer, per application.
        seconds: Application time in seconds after ``applications_start``.
        drift_position: Per customer, 0 to 1: how late in the window they
            apply (a random place for customers who never apply).
    """

    owner: np.ndarray
    seconds: np.ndarray
    drift_position: np.ndarray


def plan_applications(
    rng: np.random.Generator, count: int, config: GeneratorConfig
) -> ApplicationPlan:
    """Choose which customers of a chunk apply for a loan, and when.

    Args:
        rng: The chunk's random generator.
        count: Customers in the chunk.
        config: Generator settings (application window).

    Returns:
        The plan, sorted by customer and time.
    """
    span = (config.history_end - config.applications_start).days * _SECONDS_PER_DAY
    per_customer = np.where(rng.random(count) < 0.45, 1 + (rng.random(count) < 0.15), 0)
    owner = np.repeat(np.arange(count), per_customer)
    seconds = rng.integers(0, span, owner.size)
    order = np.lexsort((seconds, owner))
    owner, seconds = owner[order], seconds[order]
    position = rng.random(count)
    first = np.unique(owner, return_index=True)
    position[first[0]] = seconds[first[1]] / span
    return ApplicationPlan(owner=owner, seconds=seconds, drift_position=position)


def draw_applications(
    rng: np.random.Generator,
    first_application: int,
    customer_ids: np.ndarray,
    plan: ApplicationPlan,
    traits: CustomerTraits,
    config: GeneratorConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the applications of a chunk and whether each defaulted within 12 months.

    Args:
        rng: The chunk's random generator.
        first_application: Number of the chunk's first application.
        customer_ids: The chunk's customer ids.
        plan: Who applies and when.
        traits: Hidden customer traits.
        config: Generator settings (window, group bias).

    Returns:
        The raw loan_applications and loan_outcomes tables.
    """
    owner = plan.owner
    size = owner.size
    amount = loan_amounts(rng, traits.income[owner])
    purpose = rng.choice(len(PURPOSES), size=size, p=PURPOSE_PROBS)
    term = rng.choice(np.array(TERMS_MONTHS), size=size)
    applied_at = np.datetime64(config.applications_start, "s") + plan.seconds.astype(
        "timedelta64[s]"
    )
    numbers = first_application + np.arange(size)
    application_ids = numbered_ids("L", numbers, 9).to_numpy(dtype=object)
    defaulted = rng.random(size) < default_probability(
        rng, traits, owner, amount, purpose, config.group_bias
    )
    applications = pd.DataFrame(
        {
            "application_id": application_ids,
            "customer_id": customer_ids[owner],
            "applied_at": applied_at,
            "amount": decimal_text(amount),
            "term_months": term.astype("int32"),
            "purpose": np.array(PURPOSES)[purpose],
        }
    )
    outcomes = pd.DataFrame(
        {
            "application_id": application_ids,
            "defaulted": defaulted.astype("int8"),
            "observed_at": applied_at + np.timedelta64(OUTCOME_HORIZON_DAYS, "D"),
        }
    )
    return applications, outcomes


def loan_amounts(rng: np.random.Generator, income: np.ndarray) -> np.ndarray:
    """What applicants ask for: about a quarter of their income, in hundreds."""
    return np.clip(
        np.round(income * 0.25 * np.exp(rng.normal(0, 0.5, income.size)), -2),
        1_000,
        50_000,
    )


def default_probability(
    rng: np.random.Generator,
    traits: CustomerTraits,
    owner: np.ndarray,
    amount: np.ndarray,
    purpose: np.ndarray,
    group_bias: float,
) -> np.ndarray:
    """The planted probability of default within 12 months, per application.

    Args:
        rng: Random generator for the unobservable shock.
        traits: Hidden customer traits.
        owner: Applying customer per application.
        amount: Loan amount per application.
        purpose: Purpose index per application.
        group_bias: Extra risk for the bias group that no feature explains.

    Returns:
        Probabilities between 0 and 1.
    """
    income = traits.income[owner]
    logit = (
        -3.7
        + 1.4 * traits.stress[owner]
        - 0.6 * np.log(income / 25_000)
        + 0.45 * traits.unemployed[owner]
        + 1.5 * np.log1p(amount / income)
        + np.array(_PURPOSE_RISK)[purpose]
        + 0.5 * group_bias * traits.in_bias_group[owner]
        + rng.normal(0, 0.4, owner.size)
    )
    return 1 / (1 + np.exp(-logit))
