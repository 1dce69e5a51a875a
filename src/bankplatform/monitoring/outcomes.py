"""Loan outcomes from the loan-servicing system, into ``decision_outcomes``.

The servicing system knows, for each loan the bank granted on a scored
application, whether it defaulted (90 days past due within 12 months) and
when that was observed; it names the application by the scoring request's id
and the customer by the bank's customer number. ``bankplatform data outcomes
FILE`` takes its export (CSV or parquet) through the same contract and
quarantine as every raw table, as the loan-servicing service identity:

- the request must be a decision the audit log vouches for (a line planted in
  the decision log is not one), once: a request delivered before is
  quarantined, not counted twice;
- the customer number is pseudonymised by the key service at once and must be
  the customer the decision was about;
- ``defaulted`` is 0 or 1, ``observed_at`` a date no later than today.

Accepted rows become one partition of ``decision_outcomes`` (request id,
customer token, defaulted, observed_at; no raw identifier); rejected rows keep
their raw values and reasons in the pii quarantine partition of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bankplatform.contracts.quarantine import (
    REASON_COLUMN,
    SOURCE_ROW_COLUMN,
    apply_contract,
)
from bankplatform.contracts.rules import CONTRACTS
from bankplatform.errors import BankplatformError, RawExtractError
from bankplatform.governance.evidence import file_sha256
from bankplatform.monitoring.windows import (
    CUSTOMER_TOKEN,
    REQUEST_ID,
    logged_decisions,
    vouched_decision_lines,
)
from bankplatform.security.pseudonyms import IdentifierKind

if TYPE_CHECKING:
    from bankplatform.security.runtime import WorkspaceSecurity

COLUMNS = ("request_id", "customer_id", "defaulted", "observed_at")
OUTCOMES = "decision_outcomes"
QUARANTINE = "decision_outcomes_quarantine"
MAX_FILE_BYTES = 512 * 1024 * 1024


class OutcomesError(BankplatformError):
    """An export that cannot be imported at all (unreadable, a column missing)."""


@dataclass(frozen=True)
class OutcomesDelivery:
    """What one import did.

    Attributes:
        delivery: The partition name (``outcomes-<UTC time>``), in both datasets.
        source: The file's name and its sha256.
        rows: Rows in the file.
        accepted: Rows added to ``decision_outcomes``.
        by_rule: Quarantined rows per rule broken.
    """

    delivery: str
    source: str
    sha256: str
    rows: int
    accepted: int
    by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        """Rows that went to quarantine."""
        return self.rows - self.accepted


@dataclass(frozen=True)
class OutcomeStores:
    """Where deliveries are read from and written to (the catalog's datasets)."""

    delivered: Callable[[], dict[str, Callable[[], pd.DataFrame]]]
    save_outcomes: Callable[[dict[str, pd.DataFrame]], None]
    save_quarantine: Callable[[dict[str, pd.DataFrame]], None]


def read_export(path: Path) -> pd.DataFrame:
    """The export's four columns as text (CSV or parquet, by its suffix).

    Raises:
        OutcomesError: Unreadable, too large, an unknown format or no rows.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        msg = f"{path.name} is {size:,} bytes, more than the {MAX_FILE_BYTES:,} an outcomes export may be"
        raise OutcomesError(msg)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, encoding="utf-8"
            )
        elif suffix == ".parquet":
            frame = _parquet_as_text(pq.read_table(path))
        else:
            msg = f"{path.name}: an outcomes export is .csv or .parquet"
            raise OutcomesError(msg)
    except (ValueError, OSError, pa.ArrowException, UnicodeDecodeError) as error:
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        msg = f"{path.name} cannot be read as {suffix.lstrip('.')}: {first}"
        raise OutcomesError(msg) from None
    if frame.empty:
        msg = f"{path.name} has no outcome rows"
        raise OutcomesError(msg)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        msg = f"{path.name} lacks the column {missing[0]!r} (an export has {', '.join(COLUMNS)})"
        raise OutcomesError(msg)
    text = pd.StringDtype("pyarrow")
    return pd.DataFrame({c: frame[c].astype(text) for c in COLUMNS})


def _parquet_as_text(table: pa.Table) -> pd.DataFrame:
    """Every column as text: integers as digits, whole floats too (1.0 -> "1"),
    dates and instants in ISO format; a null stays null."""
    columns = {}
    for name in table.column_names:
        values = table.column(name).to_pandas()
        if pd.api.types.is_float_dtype(values):
            whole = values.dropna() % 1 == 0
            values = values.astype("Int64") if bool(whole.all()) else values
        if pd.api.types.is_datetime64_any_dtype(values):
            values = values.map(lambda v: v.isoformat() if pd.notna(v) else None)
        columns[name] = (
            values.astype(object)
            .where(values.notna(), None)
            .map(lambda v: None if v is None else str(v))
        )
    return pd.DataFrame(columns)


def import_outcomes(
    path: Path,
    security: WorkspaceSecurity,
    decision_log: Path,
    stores: OutcomeStores,
    today: date | None = None,
) -> OutcomesDelivery:
    """Check, pseudonymise and store one export (as the caller's identity:
    ``bankplatform data outcomes`` acts as the loan-servicing service).

    Raises:
        OutcomesError: The export cannot be imported at all; nothing is written.
    """
    now = datetime.now(UTC)
    raw = read_export(path)
    records = security.audit_log().records(resource="request:")
    decisions = logged_decisions(decision_log, vouched_decision_lines(records))
    known = decisions.drop_duplicates(REQUEST_ID).set_index(REQUEST_ID)[CUSTOMER_TOKEN]
    try:
        checked = apply_contract(
            CONTRACTS[OUTCOMES], raw, today or now.date(), pd.Index(known.index)
        )
    except RawExtractError as error:
        raise OutcomesError(f"{path.name}: {error}") from None
    accepted = checked.accepted
    tokens = security.pseudonymiser().tokens(
        accepted["customer_id"], IdentifierKind.CUSTOMER
    )
    delivered = _delivered_requests(stores)
    reasons = pd.Series("", index=accepted.index, dtype=object)
    reasons[accepted[REQUEST_ID].isin(delivered).to_numpy()] = (
        "already_delivered(request_id)"
    )
    other = tokens.to_numpy() != accepted[REQUEST_ID].map(known).to_numpy()
    reasons[other & (reasons == "")] = "customer_mismatch(customer_id)"
    late = accepted.loc[reasons != ""].copy()
    late[REASON_COLUMN] = reasons[reasons != ""].to_numpy()
    late[SOURCE_ROW_COLUMN] = _source_rows(raw, late)
    kept = reasons == ""
    delivery = f"outcomes-{now:%Y%m%dT%H%M%S%fZ}"
    outcomes = pd.DataFrame(
        {
            REQUEST_ID: accepted.loc[kept, REQUEST_ID].astype(str).to_numpy(),
            CUSTOMER_TOKEN: tokens[kept.to_numpy()].astype(str).to_numpy(),
            "defaulted": accepted.loc[kept, "defaulted"].astype("int8").to_numpy(),
            "observed_at": pd.to_datetime(
                accepted.loc[kept, "observed_at"], format="ISO8601", utc=True
            ).to_numpy(),
        }
    )
    quarantine = pd.concat([checked.quarantined, late], ignore_index=True)
    if not quarantine.empty:
        stores.save_quarantine({delivery: quarantine.astype({"_reason": str})})
    if not outcomes.empty:
        stores.save_outcomes({delivery: outcomes})
    by_rule = _by_rule(quarantine)
    result = OutcomesDelivery(
        delivery=delivery,
        source=path.name,
        sha256=file_sha256(path),
        rows=len(raw),
        accepted=len(outcomes),
        by_rule=by_rule,
    )
    security.audit_log().append(
        action="data.outcomes",
        resource=f"dataset:{OUTCOMES}/{delivery}",
        outcome="allowed",
        details={
            "source": result.source,
            "source_sha256": result.sha256,
            "rows": result.rows,
            "accepted": result.accepted,
            "quarantined": result.quarantined,
            "by_rule": by_rule,
            "defaulted": int(outcomes["defaulted"].sum()),
        },
    )
    return result


def _delivered_requests(stores: OutcomeStores) -> set[str]:
    """Request ids of every earlier delivery."""
    seen: set[str] = set()
    for load in stores.delivered().values():
        seen.update(load()[REQUEST_ID].astype(str))
    return seen


def _source_rows(raw: pd.DataFrame, rows: pd.DataFrame) -> Any:
    """The file rows (0-based) of accepted rows turned away after the contract."""
    position = pd.Series(range(len(raw)), index=raw[REQUEST_ID].astype(str))
    return position[rows[REQUEST_ID].astype(str)].to_numpy(dtype="int64")


def _by_rule(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantined rows per rule (a row breaking two rules counts for each)."""
    counts: dict[str, int] = {}
    for reasons in quarantine.get(REASON_COLUMN, pd.Series(dtype=str)):
        for reason in {r.split("(")[0] for r in str(reasons).split("; ")}:
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def servicing_export(
    decisions: pd.DataFrame,
    numbers: dict[str, str],
    delivered: set[str],
    seed: int,
    observed_at: date,
) -> pd.DataFrame:
    """A stand-in for the loan-servicing system's export (demos, drills): for each
    served decision that granted a loan (approved, or referred to an underwriter)
    and has no outcome yet, whether it defaulted, drawn with the probability the
    model gave it (seeded), under the customer's number.

    Args:
        decisions: The audited decisions (``request_id``, ``customer_token``,
            ``score``, ``decision``).
        numbers: Customer token -> customer number, as servicing knows them.
        delivered: Request ids delivered before (not exported again).
        seed: Random seed of the draws.
        observed_at: The export's observation date.
    """
    granted = decisions[
        decisions["decision"].isin(["approve", "refer"])
        & ~decisions[REQUEST_ID].isin(delivered)
        & decisions[CUSTOMER_TOKEN].isin(numbers)
    ]
    draws = np.random.default_rng(seed).random(len(granted))
    return pd.DataFrame(
        {
            REQUEST_ID: granted[REQUEST_ID].to_numpy(),
            "customer_id": granted[CUSTOMER_TOKEN].map(numbers).to_numpy(),
            "defaulted": (draws < granted["score"].astype(float).to_numpy()).astype(
                int
            ),
            "observed_at": observed_at.isoformat(),
        }
    )
