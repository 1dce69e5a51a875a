"""Human-review items that monitoring opens, kept in the audit log itself.

An item is opened by a ``review.open`` record (written only by an identity
that holds ``monitor_model``) and closed by a ``review.close`` record (only by
one that holds ``close_review``); its state is read back from those records,
so nobody can edit a review away.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bankplatform.errors import BankplatformError
from bankplatform.governance.lifecycle import check_reason
from bankplatform.security.policy import Action

if TYPE_CHECKING:
    from bankplatform.security.runtime import WorkspaceSecurity

OPEN, CLOSE = "review.open", "review.close"
_RESOURCE = "review:"


class ReviewError(BankplatformError):
    """A review item that cannot be closed (unknown, already closed)."""


@dataclass(frozen=True)
class ReviewItem:
    """One human-review item.

    Attributes:
        id: ``rev_`` and 12 hex digits.
        opened_at: When monitoring opened it.
        details: What monitoring recorded (window, model, findings, reports).
        closed_by: Who closed it (empty while open).
        closed_at: When.
        resolution: What the reviewer decided.
    """

    id: str
    opened_at: str
    details: dict[str, Any]
    closed_by: str = ""
    closed_at: str = ""
    resolution: str = ""

    @property
    def is_open(self) -> bool:
        """Whether nobody has closed it yet."""
        return not self.closed_by


def review_id(model_name: str, window_id: str) -> str:
    """The review item of a model's window (at most one per window)."""
    digest = hashlib.sha256(f"{model_name}|{window_id}".encode()).hexdigest()
    return f"rev_{digest[:12]}"


def open_review(
    security: WorkspaceSecurity, item_id: str, details: dict[str, Any]
) -> str:
    """Open a review item (audited; the key service checks ``monitor_model``)."""
    security.audit_log().append(
        action=OPEN, resource=_RESOURCE + item_id, outcome="allowed", details=details
    )
    return item_id


def review_items(security: WorkspaceSecurity) -> list[ReviewItem]:
    """Every review item, oldest first, with its state."""
    items: dict[str, ReviewItem] = {}
    for record in security.audit_log().records(resource=_RESOURCE):
        if record.get("outcome") != "allowed":
            continue
        item_id = str(record["resource"]).removeprefix(_RESOURCE)
        details = dict(record.get("details") or {})
        if record.get("action") == OPEN:
            items[item_id] = ReviewItem(item_id, str(record["time"]), details)
        elif record.get("action") == CLOSE and item_id in items:
            opened = items[item_id]
            items[item_id] = ReviewItem(
                opened.id,
                opened.opened_at,
                opened.details,
                closed_by=str(record.get("actor", "")),
                closed_at=str(record["time"]),
                resolution=str(details.get("resolution", "")),
            )
    return list(items.values())


def close_review(security: WorkspaceSecurity, item_id: str, resolution: str) -> str:
    """Close an open item with the reviewer's resolution.

    Raises:
        AccessDenied: The actor lacks ``close_review`` (audited).
        ReviewError: No such item, or already closed.
        GovernanceError: An empty or malformed resolution.
    """
    text = check_reason(resolution)
    security.enforce(Action.CLOSE_REVIEW, _RESOURCE + item_id)
    found = {item.id: item for item in review_items(security)}
    if item_id not in found:
        msg = f"no review item {item_id[:40]!r}; `bankplatform review list` shows the open ones"
        raise ReviewError(msg)
    item = found[item_id]
    if not item.is_open:
        msg = (
            f"review item {item_id} was closed by {item.closed_by} at {item.closed_at}"
        )
        raise ReviewError(msg)
    security.audit_log().append(
        action=CLOSE,
        resource=_RESOURCE + item_id,
        outcome="allowed",
        details={"resolution": text, "window": item.details.get("window")},
    )
    return f"closed review item {item_id}"
