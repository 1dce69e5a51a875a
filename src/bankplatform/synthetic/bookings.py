"""New bookings from core banking after the extract's end, as the booking edge
sees them: raw account numbers, one event each (``bankplatform simulate bookings``).

The channel mix, amounts and merchant categories follow the extract's generator
(``activity``): card spend split between point of sale and e-commerce, cash at
ATMs, returned direct debits and late fees now and then. Each account's balance
runs on from a plausible start, so ``balance_after`` moves with the amounts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bankplatform.contracts.reference import PRODUCTS
from bankplatform.synthetic.activity import ATM_MCC, MERCHANT_CATEGORIES

# Share of bookings by channel (the extract's average customer).
_CHANNEL_SHARES = {
    "pos": 0.36,
    "ecommerce": 0.26,
    "atm": 0.08,
    "transfer_out": 0.12,
    "direct_debit": 0.10,
    "returned_direct_debit": 0.04,
    "late_fee": 0.04,
}
# Log-normal amounts by channel (mean, sd of the log), as the extract draws them.
_LOG_AMOUNT = {
    "pos": (3.3, 0.8),
    "ecommerce": (3.6, 0.9),
    "transfer_out": (5.0, 1.0),
    "direct_debit": (4.3, 0.6),
    "returned_direct_debit": (4.3, 0.6),
}
_ATM_AMOUNTS = np.array([20.0, 40.0, 60.0, 100.0, 200.0])
_CARD_CHANNELS = ("pos", "ecommerce")


@dataclass
class BookingDraws:
    """A source of new bookings over a fixed set of accounts.

    Attributes:
        accounts: ``account_id``, ``product`` and ``credit_limit`` of the accounts
            bookings may land on.
        rng: The random generator.
        balances: Each account's running balance.
    """

    accounts: pd.DataFrame
    rng: np.random.Generator
    balances: np.ndarray

    @classmethod
    def over(cls, accounts: pd.DataFrame, seed: int) -> BookingDraws:
        """Draws over the well-formed accounts of a raw accounts table."""
        usable = accounts[
            accounts["product"].isin(PRODUCTS)
            & accounts["account_id"].astype(str).str.fullmatch(r"A\d{9}")
        ].drop_duplicates("account_id")
        if usable.empty:
            msg = "the raw accounts table holds no well-formed account"
            raise ValueError(msg)
        usable = usable.reset_index(drop=True)
        rng = np.random.default_rng(seed)
        card = (usable["product"] == "credit_card").to_numpy()
        limit = pd.to_numeric(usable["credit_limit"], errors="coerce").fillna(0.0)
        start = np.where(
            card,
            -limit.to_numpy() * rng.uniform(0.05, 0.8, len(usable)),
            rng.normal(1_800.0, 900.0, len(usable)),
        )
        return cls(usable, rng, np.round(start, 2))

    def draw(
        self, count: int, first_at: pd.Timestamp, last_at: pd.Timestamp
    ) -> pd.DataFrame:
        """``count`` bookings spread over [first_at, last_at], in time order.

        Returns:
            ``account_id``, ``booked_at`` (UTC), ``amount``, ``channel``, ``mcc``,
            ``balance_after``.
        """
        rng = self.rng
        names = list(_CHANNEL_SHARES)
        shares = np.array(list(_CHANNEL_SHARES.values()))
        channel = np.array(names, dtype=object)[
            rng.choice(len(names), count, p=shares / shares.sum())
        ]
        cards = (self.accounts["product"] == "credit_card").to_numpy()
        on_card = np.isin(channel, (*_CARD_CHANNELS, "late_fee"))
        pool_card, pool_other = np.flatnonzero(cards), np.flatnonzero(~cards)
        account = np.where(
            on_card & (pool_card.size > 0),
            rng.choice(pool_card if pool_card.size else pool_other, count),
            rng.choice(pool_other if pool_other.size else pool_card, count),
        )
        amount = self._amounts(channel)
        # Core banking stamps bookings to the microsecond.
        span = max((last_at - first_at).value // 1_000, 0)
        offsets = np.sort(rng.integers(0, span + 1, count)) if span else np.zeros(count)
        booked_at = first_at.floor("us") + pd.to_timedelta(offsets, unit="us")
        balance_after = np.empty(count)
        for row in range(count):  # each account's balance runs on in time order
            self.balances[account[row]] = round(
                self.balances[account[row]] + amount[row], 2
            )
            balance_after[row] = self.balances[account[row]]
        return pd.DataFrame(
            {
                "account_id": self.accounts["account_id"].to_numpy()[account],
                "booked_at": booked_at,
                "amount": amount,
                "channel": channel,
                "mcc": self._merchant_codes(channel),
                "balance_after": balance_after,
            }
        )

    def _amounts(self, channel: np.ndarray) -> np.ndarray:
        rng = self.rng
        amount = np.zeros(channel.size)
        for name, (mean, sd) in _LOG_AMOUNT.items():
            rows = channel == name
            amount[rows] = -np.exp(mean + sd * rng.normal(0, 1, rows.sum()))
        atm = channel == "atm"
        amount[atm] = -rng.choice(_ATM_AMOUNTS, atm.sum())
        amount[channel == "returned_direct_debit"] *= -1
        amount[channel == "late_fee"] = -12.0
        return np.round(amount, 2)

    def _merchant_codes(self, channel: np.ndarray) -> np.ndarray:
        codes = np.array(list(MERCHANT_CATEGORIES), dtype=object)
        weights = np.array(list(MERCHANT_CATEGORIES.values()), dtype="float64")
        card = np.isin(channel, _CARD_CHANNELS)
        mcc = np.full(channel.size, None, dtype=object)
        mcc[card] = codes[
            self.rng.choice(codes.size, card.sum(), p=weights / weights.sum())
        ]
        mcc[channel == "atm"] = ATM_MCC
        return mcc
