"""Monitoring windows and the decision log's decisions inside one.

A window is a UTC day (``today``, ``yesterday``, ``2026-11-29``) or an interval of
UTC instants (``2026-11-29T10:00/2026-11-29T12:00``). Its id names its report
folder and makes sure the same window never triggers its action twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from bankplatform.errors import BankplatformError
from bankplatform.security.audit import DECISION_SHA256, decision_line_sha256

SCORE = "score"
REQUEST_ID = "request_id"
MODEL_VERSION = "model_version"
DECISION = "decision"
CUSTOMER_TOKEN = "customer_token"  # noqa: S105 - a column name


class WindowError(BankplatformError):
    """A window that cannot be read (bad spec, empty interval)."""


@dataclass(frozen=True)
class Window:
    """A half-open interval of decision time, ``[start, end)``, in UTC."""

    start: datetime
    end: datetime

    @property
    def id(self) -> str:
        """``2026-11-29`` for a whole day, ``20261129T100000Z-20261129T120000Z`` otherwise."""
        day = self.start.date()
        if self.start == _midnight(day) and self.end == self.start + timedelta(days=1):
            return day.isoformat()
        return f"{_stamp(self.start)}-{_stamp(self.end)}"

    def days(self) -> list[date]:
        """The UTC days the window touches (one decision-log file each)."""
        last = (self.end - timedelta(microseconds=1)).date()
        count = (last - self.start.date()).days + 1
        return [self.start.date() + timedelta(days=i) for i in range(count)]


def parse_window(spec: str, now: datetime | None = None) -> Window:
    """A window from its spec.

    Raises:
        WindowError: Not a day, ``today``/``yesterday`` or ``START/END`` with START < END.
    """
    today = (now or datetime.now(UTC)).date()
    text = spec.strip()
    if text in ("today", "yesterday"):
        day = today - timedelta(days=0 if text == "today" else 1)
        return Window(_midnight(day), _midnight(day) + timedelta(days=1))
    try:
        if "/" in text:
            first, _, second = text.partition("/")
            start, end = _instant(first), _instant(second)
        else:
            start = _midnight(date.fromisoformat(text))
            end = start + timedelta(days=1)
    except ValueError:
        msg = f"monitoring window {spec[:80]!r}: expected today, yesterday, a day YYYY-MM-DD or START/END instants"
        raise WindowError(msg) from None
    if not start < end:
        msg = f"monitoring window {spec[:80]!r}: its start is not before its end"
        raise WindowError(msg)
    return Window(start, end)


def newest_time(times: pd.Series) -> str | None:
    """The latest of some times (decision times, application timestamps) as a
    UTC ISO instant; ``None`` when there are none."""
    parsed = pd.to_datetime(times, utc=True, format="ISO8601").dropna()
    return None if parsed.empty else parsed.max().isoformat()


def vouched_decision_lines(records: Iterable[dict[str, Any]]) -> set[str]:
    """The sha256 of every decision line the scoring service's request records
    vouch for. A record replayed at a restart was made from the line itself and
    vouches for nothing (a line planted while the service was down would be one).
    """
    vouched = set()
    for record in records:
        details = record.get("details") or {}
        if record.get("action") == "scoring.request" and not details.get("replayed"):
            vouched.add(str(details.get(DECISION_SHA256, "")))
    return vouched - {""}


def window_decisions(
    folder: Path, window: Window, audited: Collection[str]
) -> tuple[pd.DataFrame, int]:
    """The scored decisions of a window whose log line is the one audited: request
    id, time, model version, score and the model's inputs (one column each),
    oldest first; and how many of the window's decision lines were not (edited,
    planted or never audited: counted, never used).

    Args:
        folder: The decision log.
        window: The window.
        audited: The sha256 of every decision line the audit log vouches for (the
            ``decision_sha256`` of the scoring service's request records).

    Raises:
        WindowError: The decision log folder does not exist.
    """
    if not folder.is_dir():
        msg = f"no decision log at {folder}: has the scoring service run in this workspace?"
        raise WindowError(msg)
    rows: list[dict[str, Any]] = []
    tampered = 0
    for day in window.days():
        path = folder / f"decisions-{day.isoformat()}.jsonl"
        if path.is_file():
            found, unaudited = _scored(path, window, audited)
            rows.extend(found)
            tampered += unaudited
    frame = pd.DataFrame(rows)
    if frame.empty:
        empty = pd.DataFrame(columns=[REQUEST_ID, "time", MODEL_VERSION, SCORE])
        return empty, tampered
    return frame.sort_values("time", kind="stable").reset_index(drop=True), tampered


def logged_decisions(folder: Path, audited: Collection[str]) -> pd.DataFrame:
    """Every scored decision of the log whose line is the one audited (the whole
    log, not a window): request id, time, customer token, model version, score
    and the model's inputs, oldest first. An absent log has none."""
    everything = Window(_midnight(date(1990, 1, 1)), _midnight(date(9999, 1, 1)))
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("decisions-*.jsonl")) if folder.is_dir() else []:
        rows.extend(_scored(path, everything, audited)[0])
    if not rows:
        return pd.DataFrame(
            columns=[REQUEST_ID, "time", CUSTOMER_TOKEN, MODEL_VERSION, SCORE]
        )
    return pd.DataFrame(rows).sort_values("time", kind="stable").reset_index(drop=True)


def _scored(
    path: Path, window: Window, audited: Collection[str]
) -> tuple[list[dict[str, Any]], int]:
    rows, tampered = [], 0
    start, end = window.start.isoformat(), window.end.isoformat()
    with path.open("rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                time = _utc_text(record["time"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                tampered += 1  # not even a record
                continue
            if record.get("type") != "decision" or record.get(SCORE) is None:
                continue
            if not start <= time < end:
                continue
            if decision_line_sha256(line) not in audited:
                tampered += 1
                continue
            rows.append(
                {
                    REQUEST_ID: record[REQUEST_ID],
                    "time": record["time"],
                    CUSTOMER_TOKEN: record.get(CUSTOMER_TOKEN),
                    MODEL_VERSION: record.get(MODEL_VERSION),
                    SCORE: record[SCORE],
                    DECISION: record.get(DECISION),
                    **(record.get("features") or {}),
                }
            )
    return rows, tampered


def _utc_text(stamp: str) -> str:
    """A logged time as ``datetime.isoformat`` writes a UTC instant (comparable as text)."""
    return datetime.fromisoformat(stamp).astimezone(UTC).isoformat()


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")
