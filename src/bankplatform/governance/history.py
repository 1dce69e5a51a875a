"""Which version held which alias, from when to when, rebuilt from the audit log.

MLflow keeps only the current aliases (mlflow#2169); every lifecycle record in
the audit log carries the alias changes it made (``{alias: [from, to]}``), so
the history is a replay of those records, as tamper-evident as the log itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bankplatform.governance.lifecycle import LIFECYCLE_ACTIONS


@dataclass(frozen=True)
class AliasTenure:
    """One version holding one alias.

    Attributes:
        alias: ``challenger``, ``champion`` or ``previous``.
        version: The version.
        since: When it got the alias (audit record time, UTC).
        until: When it lost it, ``None`` while it still holds it.
        granted_by: Who made the change that gave it the alias, and how.
        ended_by: Who made the change that took it away, and how.
    """

    alias: str
    version: int
    since: str
    until: str | None
    granted_by: str
    ended_by: str | None


def alias_history(records: Iterable[dict[str, Any]], model: str) -> list[AliasTenure]:
    """Replay the allowed lifecycle records of ``model`` into alias tenures.

    Returns:
        Tenures ordered by start time, then alias.
    """
    prefix = f"model:{model}/"
    open_tenures: dict[str, dict[str, Any]] = {}
    closed: list[AliasTenure] = []
    for record in records:
        if (
            record.get("action") not in LIFECYCLE_ACTIONS
            or record.get("outcome") != "allowed"
            or not str(record.get("resource", "")).startswith(prefix)
        ):
            continue
        how = f"{record['actor']} ({record['action'].removeprefix('model.')})"
        for alias, (_, after) in sorted(
            (record["details"].get("aliases") or {}).items()
        ):
            current = open_tenures.pop(alias, None)
            if current is not None:
                closed.append(
                    AliasTenure(
                        alias,
                        current["version"],
                        current["since"],
                        record["time"],
                        current["by"],
                        how,
                    )
                )
            if after is not None:
                open_tenures[alias] = {
                    "version": int(after),
                    "since": record["time"],
                    "by": how,
                }
    still = [
        AliasTenure(alias, t["version"], t["since"], None, t["by"], None)
        for alias, t in open_tenures.items()
    ]
    return sorted([*closed, *still], key=lambda t: (t.since, t.alias))
