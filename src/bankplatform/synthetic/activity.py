"""Accounts and transactions of the synthetic bank, driven by customer traits.

Stressed customers run higher card utilisation, return more direct debits,
pay more late fees, withdraw more cash and gamble more: that is the learnable
signal a credit model finds in transaction behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bankplatform.contracts.reference import CHANNELS, PRODUCTS
from bankplatform.synthetic.config import GeneratorConfig
from bankplatform.synthetic.population import CustomerTraits, FakerPools
from bankplatform.synthetic.text import decimal_text, numbered_ids

MERCHANT_CATEGORIES = {
    "5411": 0.30,  # grocery
    "5812": 0.15,  # restaurants
    "5541": 0.10,  # fuel
    "5311": 0.10,  # department stores
    "5999": 0.09,  # miscellaneous retail
    "4121": 0.05,  # taxis
    "5732": 0.05,  # electronics
    "5912": 0.05,  # pharmacies
    "4900": 0.09,  # utilities
    "7995": 0.02,  # gambling
}
_GAMBLING = list(MERCHANT_CATEGORIES).index("7995")
ATM_MCC = "6011"
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class AccountBook:
    """Per customer of a chunk: their account ids and card limit."""

    current_account: np.ndarray
    credit_card: np.ndarray  # empty string where the customer has no card
    credit_limit: np.ndarray
    card_utilisation: np.ndarray


def draw_accounts(
    rng: np.random.Generator,
    first_account: int,
    customer_ids: np.ndarray,
    traits: CustomerTraits,
    config: GeneratorConfig,
) -> tuple[pd.DataFrame, AccountBook]:
    """Draw each customer's current account, and a card and savings for some.

    Args:
        rng: The chunk's random generator.
        first_account: Number of the chunk's first account.
        customer_ids: The chunk's customer ids.
        traits: The chunk's hidden customer traits.
        config: Generator settings (history window).

    Returns:
        The raw accounts table and the per-customer account book.
    """
    count = customer_ids.size
    has_card = rng.random(count) < 0.8
    has_savings = rng.random(count) < 0.35
    per_customer = 1 + has_card + has_savings
    numbers = first_account + np.arange(per_customer.sum())
    owner = np.repeat(np.arange(count), per_customer)
    slot = np.arange(owner.size) - np.repeat(
        np.cumsum(per_customer) - per_customer, per_customer
    )
    product = np.where(slot == 0, 0, np.where((slot == 1) & has_card[owner], 1, 2))
    limit = np.clip(
        np.round(traits.income * 0.15 * np.exp(rng.normal(0, 0.3, count)), -2),
        500,
        25_000,
    )
    account_ids = numbered_ids("A", numbers, 9).to_numpy(dtype=object)
    start = np.datetime64(config.history_start, "D")
    opened = start - rng.integers(30, 3_650, owner.size).astype("timedelta64[D]")
    frame = pd.DataFrame(
        {
            "account_id": account_ids,
            "customer_id": customer_ids[owner],
            "product": np.array(PRODUCTS)[product],
            "opened_at": pd.to_datetime(opened).date,
            "credit_limit": np.where(product == 1, limit[owner], np.nan),
        }
    )
    first_slot = np.cumsum(per_customer) - per_customer
    card = np.where(
        has_card, account_ids[np.minimum(first_slot + 1, owner.size - 1)], ""
    )
    utilisation = 1 / (
        1 + np.exp(-(-0.8 + 1.5 * traits.stress + rng.normal(0, 0.35, count)))
    )
    book = AccountBook(
        current_account=account_ids[first_slot],
        credit_card=card,
        credit_limit=limit,
        card_utilisation=utilisation,
    )
    return frame, book


def draw_transactions(
    rng: np.random.Generator,
    first_transaction: int,
    traits: CustomerTraits,
    book: AccountBook,
    pools: FakerPools,
    config: GeneratorConfig,
) -> pd.DataFrame:
    """Draw the transaction history of one chunk of customers.

    Args:
        rng: The chunk's random generator.
        first_transaction: Number of the chunk's first transaction.
        traits: The chunk's hidden customer traits.
        book: The chunk's accounts.
        pools: Fake value pools (merchant and employer names).
        config: Generator settings (history window, drift).

    Returns:
        The raw transactions table, sorted by customer and booking time.
    """
    days = (config.history_end - config.history_start).days + 1
    months = days / 30.44
    owner, channel = _draw_events(rng, traits, months)
    salary_owner, salary_time = _salary_events(rng, traits, config, days)
    owner = np.concatenate([owner, salary_owner])
    channel = np.concatenate(
        [channel, np.full(salary_owner.size, CHANNELS.index("salary"))]
    )
    seconds = np.concatenate(
        [
            rng.integers(0, days * _SECONDS_PER_DAY, owner.size - salary_owner.size),
            salary_time,
        ]
    )
    order = np.lexsort((seconds, owner))
    owner, channel, seconds = owner[order], channel[order], seconds[order]
    on_card = _on_card(rng, owner, channel, book)
    amount = _amounts(rng, owner, channel, traits)
    numbers = first_transaction + np.arange(owner.size)
    start = np.datetime64(config.history_start, "s")
    return pd.DataFrame(
        {
            "transaction_id": numbered_ids("T", numbers, 11),
            "account_id": np.where(
                on_card, book.credit_card[owner], book.current_account[owner]
            ),
            "booked_at": start + seconds.astype("timedelta64[s]"),
            # Raw extracts carry amounts as decimal text; the contract parses them.
            "amount": decimal_text(amount),
            "channel": np.array(CHANNELS)[channel],
            "mcc": _merchant_codes(rng, owner, channel, traits),
            "counterparty": _counterparties(rng, owner, channel, traits, pools),
            "balance_after": _balances(rng, owner, on_card, book, traits),
        }
    )


def _draw_events(
    rng: np.random.Generator, traits: CustomerTraits, months: float
) -> tuple[np.ndarray, np.ndarray]:
    count = traits.stress.size
    spend_rate = rng.gamma(2.5, 1.0, count)
    stress_up = np.exp(1.2 * traits.stress)
    rates = np.stack(
        [
            spend_rate * np.clip(0.45 - 0.15 * traits.drift_shift, 0.05, None),
            spend_rate * (0.25 + 0.15 * traits.drift_shift),
            spend_rate * 0.08 * np.exp(0.4 * traits.stress),
            spend_rate * 0.12,
            spend_rate * 0.10,
            np.zeros(count),
            0.05 * stress_up,
            0.04 * stress_up,
        ],
        axis=1,
    )
    counts = rng.poisson(np.clip(rates, 0, None) * months)
    owner = np.repeat(np.repeat(np.arange(count), len(CHANNELS)), counts.ravel())
    channel = np.repeat(np.tile(np.arange(len(CHANNELS)), count), counts.ravel())
    return owner, channel


def _salary_events(
    rng: np.random.Generator, traits: CustomerTraits, config: GeneratorConfig, days: int
) -> tuple[np.ndarray, np.ndarray]:
    paid = np.flatnonzero(traits.income > 12_000)
    month_starts = np.arange(0, days - 27, 30)
    owner = np.repeat(paid, month_starts.size)
    day = np.tile(month_starts, paid.size) + rng.integers(24, 28, owner.size)
    return owner, np.minimum(day, days - 1) * _SECONDS_PER_DAY + 9 * 3_600


def _on_card(
    rng: np.random.Generator, owner: np.ndarray, channel: np.ndarray, book: AccountBook
) -> np.ndarray:
    has_card = book.credit_card[owner] != ""
    card_channel = np.isin(
        channel, (CHANNELS.index("pos"), CHANNELS.index("ecommerce"))
    )
    late_fee = channel == CHANNELS.index("late_fee")
    return has_card & ((card_channel & (rng.random(owner.size) < 0.5)) | late_fee)


def _amounts(
    rng: np.random.Generator,
    owner: np.ndarray,
    channel: np.ndarray,
    traits: CustomerTraits,
) -> np.ndarray:
    size = owner.size
    log_mean = np.array([3.3, 3.6, 0.0, 5.0, 4.3, 0.0, 4.3, 0.0])[channel]
    log_sd = np.array([0.8, 0.9, 0.0, 1.0, 0.6, 0.0, 0.6, 0.0])[channel]
    amount = -np.exp(log_mean + log_sd * rng.normal(0, 1, size))
    atm = channel == CHANNELS.index("atm")
    amount[atm] = -rng.choice(np.array([20.0, 40.0, 60.0, 100.0, 200.0]), atm.sum())
    salary = channel == CHANNELS.index("salary")
    amount[salary] = (
        traits.income[owner[salary]] / 12 * rng.normal(1.0, 0.02, salary.sum())
    )
    returned = channel == CHANNELS.index("returned_direct_debit")
    amount[returned] = -amount[returned]
    amount[channel == CHANNELS.index("late_fee")] = -12.0
    return np.round(amount, 2)


def _merchant_codes(
    rng: np.random.Generator,
    owner: np.ndarray,
    channel: np.ndarray,
    traits: CustomerTraits,
) -> np.ndarray:
    codes = np.array(list(MERCHANT_CATEGORIES), dtype=object)
    base = np.array(list(MERCHANT_CATEGORIES.values()))
    card = np.isin(channel, (CHANNELS.index("pos"), CHANNELS.index("ecommerce")))
    gambling_share = np.clip(0.02 + 0.04 * traits.stress[owner[card]], 0.0, 0.3)
    draws = rng.choice(len(base), size=card.sum(), p=base / base.sum())
    gamble = rng.random(card.sum()) < gambling_share
    draws = np.where(gamble, _GAMBLING, np.where(draws == _GAMBLING, 0, draws))
    mcc = np.full(owner.size, None, dtype=object)
    mcc[card] = codes[draws]
    mcc[channel == CHANNELS.index("atm")] = ATM_MCC
    return mcc


def _counterparties(
    rng: np.random.Generator,
    owner: np.ndarray,
    channel: np.ndarray,
    traits: CustomerTraits,
    pools: FakerPools,
) -> np.ndarray:
    fixed = np.array(
        [
            "",
            "",
            "CASH WITHDRAWAL",
            "FASTER PAYMENT",
            "",
            "",
            "RETURNED DIRECT DEBIT",
            "LATE PAYMENT FEE",
        ],
        dtype=object,
    )
    names = fixed[channel]
    merchant = np.isin(
        channel, [CHANNELS.index(c) for c in ("pos", "ecommerce", "direct_debit")]
    )
    names[merchant] = rng.choice(pools.companies, merchant.sum())
    salary = channel == CHANNELS.index("salary")
    names[salary] = traits.employer[owner[salary]]
    return names


def _balances(
    rng: np.random.Generator,
    owner: np.ndarray,
    on_card: np.ndarray,
    book: AccountBook,
    traits: CustomerTraits,
) -> np.ndarray:
    noise = rng.normal(0, 1, owner.size)
    card_used = np.clip(book.card_utilisation[owner] + 0.08 * noise, 0.0, 1.1)
    card_balance = -book.credit_limit[owner] * card_used
    monthly = traits.income[owner] / 12
    current = monthly * (0.6 - 0.4 * traits.stress[owner] + 0.5 * noise)
    return np.round(np.where(on_card, card_balance, current), 2)
