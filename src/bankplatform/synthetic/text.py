"""Fast text columns for the generator: ids and decimal amounts, built in Arrow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def numbered_ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """Ids such as ``T00000000042``: a prefix and a zero-padded number.

    Args:
        prefix: Leading letters.
        numbers: Non-negative integers.
        width: Digits after the prefix.

    Returns:
        A string series backed by Arrow.
    """
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pd.Series(
        pc.binary_join_element_wise(prefix, digits, ""),
        dtype=pd.ArrowDtype(pa.string()),
    )


def decimal_text(values: np.ndarray) -> pd.Series:
    """Amounts as the decimal text that core-banking extracts carry.

    Args:
        values: Amounts already rounded to pence.

    Returns:
        A string series backed by Arrow, e.g. ``"-12.5"``.
    """
    return pd.Series(
        pa.array(values).cast(pa.string()), dtype=pd.ArrowDtype(pa.string())
    )
