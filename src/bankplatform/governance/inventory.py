"""The model inventory (SR 11-7 §VI, SR 26-2): every version with its status,
owner, gate status, aliases, materiality tier and review dates.

A version's last review is its latest approval or promotion in the audit log;
the next is due ``review_months`` later for its tier. A version that serves
(``champion`` or ``challenger``) past its due date is flagged ``OVERDUE``.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bankplatform.governance.audit_facts import (
    DECOMMISSIONED,
    VersionFacts,
    fold_version_facts,
    tag_disagreements,
)
from bankplatform.governance.registry import (
    CHALLENGER,
    CHAMPION,
    all_versions,
    current_aliases,
    tags_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlflow.tracking import MlflowClient

    from bankplatform.manifest import WorkspaceManifest

_REVIEW_ACTIONS = ("model.approve", "model.promote")


@dataclass(frozen=True)
class InventoryEntry:
    """One version in the inventory."""

    model: str
    version: int
    status: str
    aliases: tuple[str, ...]
    owner: str
    trainer: str
    gate_status: str
    tier: str
    registered: str
    last_review: str | None
    next_review: str | None
    overdue: bool
    tag_disagreements: tuple[str, ...] = ()


def model_inventory(
    client: MlflowClient,
    manifest: WorkspaceManifest,
    audit_records: Iterable[dict[str, Any]],
    review_months: int,
    today: date,
) -> list[InventoryEntry]:
    """The inventory of the workspace's model, newest version first: status,
    trainer and gates from the audit log; the registry only for versions and aliases
    (a tag that says otherwise is listed, never believed)."""
    name = manifest.model_name
    records = list(audit_records)
    reviews = _last_reviews(records, name)
    held: dict[int, list[str]] = {}
    for alias, version in current_aliases(client, name).items():
        held.setdefault(version, []).append(alias)
    entries = []
    for registered in reversed(all_versions(client, name)):
        number = int(registered.version)
        facts = fold_version_facts(records, f"model:{name}/{number}")
        aliases = tuple(sorted(held.get(number, [])))
        last = reviews.get(number)
        due = _add_months(last, review_months) if last else None
        serving = bool({CHAMPION, CHALLENGER} & set(aliases))
        entries.append(
            InventoryEntry(
                model=name,
                version=number,
                status=version_status(facts, aliases),
                aliases=aliases,
                owner=manifest.owning_squad,
                trainer=facts.trainer or "-",
                gate_status=facts.gate_status or "pending",
                tier=manifest.model_risk_tier.value,
                registered=datetime.fromtimestamp(registered.creation_timestamp / 1000)
                .date()
                .isoformat(),
                last_review=last.isoformat() if last else None,
                next_review=due.isoformat() if due else None,
                overdue=serving and due is not None and due < today,
                tag_disagreements=tuple(tag_disagreements(tags_of(registered), facts)),
            )
        )
    return entries


def version_status(facts: VersionFacts, aliases: tuple[str, ...]) -> str:
    """A version's status in words, from the audit log and the aliases it holds."""
    if facts.decommissioned:
        return DECOMMISSIONED
    if CHAMPION in aliases:
        return "in production (champion)"
    if CHALLENGER in aliases:
        return "approved (challenger)"
    return facts.approval or "candidate"


def _last_reviews(records: Iterable[dict[str, Any]], model: str) -> dict[int, date]:
    prefix = f"model:{model}/"
    reviews: dict[int, date] = {}
    for record in records:
        resource = str(record.get("resource", ""))
        if (
            record.get("action") in _REVIEW_ACTIONS
            and record.get("outcome") == "allowed"
            and resource.startswith(prefix)
        ):
            reviews[int(resource.removeprefix(prefix))] = date.fromisoformat(
                record["time"][:10]
            )
    return reviews


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return day.replace(
        year=year, month=month, day=min(day.day, monthrange(year, month)[1])
    )
