"""Physical layout of the core-banking raw extract: one Arrow schema per table.

This is what the source system delivers (amounts as decimal text, as core
banking extracts do); the rules that decide which rows are accepted live in
``bankplatform.contracts.rules``.
"""

from __future__ import annotations

import pyarrow as pa

RAW_SCHEMAS: dict[str, pa.Schema] = {
    "customers": pa.schema(
        [
            ("customer_id", pa.string()),
            ("name", pa.string()),
            ("date_of_birth", pa.date32()),
            ("national_id", pa.string()),
            ("email", pa.string()),
            ("phone", pa.string()),
            ("postcode", pa.string()),
            ("gender", pa.string()),
            ("income", pa.float64()),
            ("employment_status", pa.string()),
            ("tenure_months", pa.int32()),
        ]
    ),
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("customer_id", pa.string()),
            ("product", pa.string()),
            ("opened_at", pa.date32()),
            ("credit_limit", pa.float64()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("transaction_id", pa.string()),
            ("account_id", pa.string()),
            ("booked_at", pa.timestamp("us")),
            ("amount", pa.string()),
            ("channel", pa.string()),
            ("mcc", pa.string()),
            ("counterparty", pa.string()),
            ("balance_after", pa.float64()),
        ]
    ),
    "loan_applications": pa.schema(
        [
            ("application_id", pa.string()),
            ("customer_id", pa.string()),
            ("applied_at", pa.timestamp("us")),
            ("amount", pa.string()),
            ("term_months", pa.int32()),
            ("purpose", pa.string()),
        ]
    ),
    "loan_outcomes": pa.schema(
        [
            ("application_id", pa.string()),
            ("defaulted", pa.int8()),
            ("observed_at", pa.timestamp("us")),
        ]
    ),
}
RAW_TABLES = tuple(RAW_SCHEMAS)
