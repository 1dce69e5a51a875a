"""The key holder's pseudonymiser: keyed HMAC-SHA256 tokens (``security.pseudonyms``
says what a token is; only the key service holds the key)."""

from __future__ import annotations

import hmac

import numpy as np
import pandas as pd

from bankplatform.security.pseudonyms import TOKEN_HEX, IdentifierKind, normalise


class Pseudonymiser:
    """Turns identifiers into tokens with one secret key.

    Its ``repr`` never shows the key, so it is safe in logs and Kedro's run output.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<from the KMS>)"

    def token(self, value: str, kind: IdentifierKind) -> str:
        """The token of one identifier."""
        normalised = normalise(value, kind)
        mac = hmac.digest(self._key, f"{kind.name}:{normalised}".encode(), "sha256")
        return f"{kind.value}_{mac.hex()[:TOKEN_HEX]}"

    def tokens(self, values: pd.Series, kind: IdentifierKind) -> pd.Series:
        """Tokens for a column; each distinct value is hashed once, missing stays missing."""
        codes, uniques = pd.factorize(values)
        table = np.array([self.token(str(v), kind) for v in uniques] + [None])
        return pd.Series(
            table[codes], index=values.index, name=values.name, dtype="string[pyarrow]"
        )
