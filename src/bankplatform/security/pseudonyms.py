"""Pseudonymous tokens: keyed HMAC-SHA256 of an identifier, per identifier kind.

The same identifier and kind always give the same token under one key, so joins
on tokens work across tables; without the key (held by the KMS, released to the
ingestion service) a token cannot be linked back to the identifier. Each kind has
its own prefix and HMAC domain, so a customer id and an account id never collide.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import pandas as pd

TOKEN_HEX = 32  # 128 bits: collisions are out of reach at any bank's size


class IdentifierKind(StrEnum):
    """Identifiers that are replaced by tokens, with their token prefix."""

    CUSTOMER = "cus"
    ACCOUNT = "acc"
    NATIONAL_ID = "nid"
    EMAIL = "eml"
    PHONE = "tel"


class TokenMaker(Protocol):
    """What the ingestion nodes need: tokens for a column (the key service's client)."""

    def tokens(self, values: pd.Series, kind: IdentifierKind) -> pd.Series: ...


def normalise(value: str, kind: IdentifierKind) -> str:
    # The same person written two ways must get one token.
    if kind is IdentifierKind.EMAIL:
        return value.strip().lower()
    if kind is IdentifierKind.PHONE or kind is IdentifierKind.NATIONAL_ID:
        return "".join(value.split()).upper()
    return value.strip()
