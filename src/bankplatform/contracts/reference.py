"""Reference data of the core-banking source: the allowed category codes."""

from __future__ import annotations

GENDERS = ("F", "M")
EMPLOYMENT_STATUSES = ("employed", "self_employed", "unemployed", "retired", "student")
PRODUCTS = ("current_account", "credit_card", "savings_account")
SPEND_CHANNELS = ("pos", "ecommerce", "atm", "transfer_out", "direct_debit")
CHANNELS = (*SPEND_CHANNELS, "salary", "returned_direct_debit", "late_fee")
PURPOSES = (
    "car",
    "home_improvement",
    "debt_consolidation",
    "holiday",
    "wedding",
    "education",
    "other",
)
TERMS_MONTHS = (12, 24, 36, 48, 60)
DEFAULT_FLAGS = (0, 1)
