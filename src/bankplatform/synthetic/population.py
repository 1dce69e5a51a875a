"""Customers of the synthetic bank: PII-shaped fields and hidden risk traits.

All PII is fake: names, postcodes and companies come from seeded Faker pools
that are sampled with numpy, so a million customers take seconds, not hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from faker import Faker

from bankplatform.contracts.reference import EMPLOYMENT_STATUSES
from bankplatform.synthetic.config import GeneratorConfig
from bankplatform.synthetic.text import numbered_ids

_EMPLOYMENT_PROBS = (0.64, 0.12, 0.06, 0.12, 0.06)
_MEDIAN_INCOME = (33_000.0, 30_000.0, 9_000.0, 19_000.0, 8_000.0)
_INCOME_SPREAD = (0.45, 0.7, 0.35, 0.35, 0.4)
REFERENCE_DATE = date(2026, 1, 1)


@dataclass(frozen=True)
class FakerPools:
    """Seeded pools of fake values that the vectorised generator samples."""

    female_first_names: np.ndarray
    male_first_names: np.ndarray
    last_names: np.ndarray
    postcodes: np.ndarray
    email_domains: np.ndarray
    companies: np.ndarray

    @classmethod
    def build(cls, seed: int) -> FakerPools:
        """Draw the pools from a Faker seeded with ``seed`` (en_GB locale).

        Args:
            seed: Seed of the Faker instance.

        Returns:
            The pools, identical for identical seeds.
        """
        fake = Faker("en_GB")
        fake.seed_instance(seed)
        return cls(
            female_first_names=np.array([fake.first_name_female() for _ in range(800)]),
            male_first_names=np.array([fake.first_name_male() for _ in range(800)]),
            last_names=np.array([fake.last_name() for _ in range(2_000)]),
            postcodes=np.array([fake.postcode() for _ in range(4_000)]),
            email_domains=np.array([fake.free_email_domain() for _ in range(20)]),
            companies=np.array([fake.company() for _ in range(600)]),
        )


@dataclass(frozen=True)
class CustomerTraits:
    """What the generator knows about each customer but never writes out.

    ``stress`` is the latent financial stress that drives both the observable
    behaviour (utilisation, returned payments, gambling, cash) and default.
    """

    income: np.ndarray
    stress: np.ndarray
    unemployed: np.ndarray
    in_bias_group: np.ndarray
    drift_shift: np.ndarray
    employer: np.ndarray


def draw_customers(
    rng: np.random.Generator,
    first_id: int,
    count: int,
    pools: FakerPools,
    config: GeneratorConfig,
    drift_position: np.ndarray,
) -> tuple[pd.DataFrame, CustomerTraits]:
    """Draw one chunk of customers.

    Args:
        rng: The chunk's random generator.
        first_id: Number of the chunk's first customer (1-based).
        count: Customers in the chunk.
        pools: Fake value pools.
        config: Generator settings (bias and drift strengths).
        drift_position: Each customer's place in application time, 0 to 1.

    Returns:
        The raw customers table and the hidden traits of each row.
    """
    numbers = np.arange(first_id, first_id + count)
    gender = np.where(rng.random(count) < 0.5, "F", "M")
    age_years = rng.integers(18, 86, count)
    dob = pd.to_datetime(REFERENCE_DATE) - pd.to_timedelta(
        age_years * 365 + rng.integers(0, 365, count), unit="D"
    )
    employment = _draw_employment(rng, age_years)
    in_bias_group = gender == "F"
    income = _draw_income(rng, employment, in_bias_group, config.group_bias)
    unemployed = employment == EMPLOYMENT_STATUSES.index("unemployed")
    drift_shift = config.drift * drift_position
    stress = rng.normal(0.0, 1.0, count) + 0.4 * unemployed + drift_shift
    first = np.where(
        gender == "F",
        rng.choice(pools.female_first_names, count),
        rng.choice(pools.male_first_names, count),
    )
    last = rng.choice(pools.last_names, count)
    frame = pd.DataFrame(
        {
            "customer_id": numbered_ids("C", numbers, 8).to_numpy(dtype=object),
            "name": np.char.add(np.char.add(first, " "), last),
            "date_of_birth": dob.date,
            "national_id": _national_ids(rng, count),
            "email": _emails(rng, first, last, numbers, pools),
            "phone": _phones(rng, count),
            "postcode": rng.choice(pools.postcodes, count),
            "gender": gender,
            "income": np.round(income, 2),
            "employment_status": np.array(EMPLOYMENT_STATUSES)[employment],
            "tenure_months": rng.integers(0, 300, count).astype("int32"),
        }
    )
    traits = CustomerTraits(
        income=income,
        stress=stress,
        unemployed=unemployed,
        in_bias_group=in_bias_group,
        drift_shift=drift_shift,
        employer=rng.choice(pools.companies, count),
    )
    return frame, traits


def _draw_employment(rng: np.random.Generator, age_years: np.ndarray) -> np.ndarray:
    status = rng.choice(
        len(EMPLOYMENT_STATUSES), size=age_years.size, p=_EMPLOYMENT_PROBS
    )
    retired = EMPLOYMENT_STATUSES.index("retired")
    student = EMPLOYMENT_STATUSES.index("student")
    status = np.where(
        (age_years >= 67) & (rng.random(age_years.size) < 0.8), retired, status
    )
    status = np.where((age_years < 60) & (status == retired), 0, status)
    return np.where((age_years > 30) & (status == student), 0, status)


def _draw_income(
    rng: np.random.Generator,
    employment: np.ndarray,
    in_bias_group: np.ndarray,
    group_bias: float,
) -> np.ndarray:
    median = np.array(_MEDIAN_INCOME)[employment]
    spread = np.array(_INCOME_SPREAD)[employment]
    income = median * np.exp(rng.normal(0.0, 1.0, employment.size) * spread)
    # The planted bias: a pay gap that a model can pick up through income.
    return income * np.exp(-0.25 * group_bias * in_bias_group)


def _national_ids(rng: np.random.Generator, count: int) -> np.ndarray:
    # UK National Insurance number shape: two letters, six digits, A-D.
    letters = np.array(list("ABCEGHJKLMNPRSTWXYZ"))
    prefix = np.char.add(rng.choice(letters, count), rng.choice(letters, count))
    digits = np.char.zfill(rng.integers(0, 1_000_000, count).astype(str), 6)
    suffix = rng.choice(np.array(list("ABCD")), count)
    return np.char.add(np.char.add(prefix, digits), suffix)


def _emails(
    rng: np.random.Generator,
    first: np.ndarray,
    last: np.ndarray,
    numbers: np.ndarray,
    pools: FakerPools,
) -> np.ndarray:
    local = np.char.add(np.char.add(np.char.lower(first), "."), np.char.lower(last))
    local = np.char.replace(np.char.replace(local, " ", ""), "'", "")
    local = np.char.add(local, (numbers % 997).astype(str))
    return np.char.add(
        np.char.add(local, "@"), rng.choice(pools.email_domains, first.size)
    )


def _phones(rng: np.random.Generator, count: int) -> np.ndarray:
    # UK mobile numbers in the Ofcom drama range 07700 900000-900999.
    return np.char.add(
        "07700 900", np.char.zfill(rng.integers(0, 1000, count).astype(str), 3)
    )
