"""What an evidence notebook opens: a version's gate report and the env's catalog
entries, under the env's security; and the data-quality view.

A notebook opens its inputs with ``open_evidence``, not a Kedro session: a fresh
kernel that bootstraps the project imports every pipeline (Ray, Feast, MLflow),
which cost ~10 s of each notebook's ~16 s here. Loads still go through the
catalog's dataset definitions and the env's security, so every read of a
classified dataset is checked and audited as in a session. Kept light (no
scikit-learn or SciPy) for the data-quality notebook.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bankplatform.governance.evidence import GATE_REPORT, evidence_folder
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader, find_project_root, resolve_env
from bankplatform.security.runtime import activate, open_security
from bankplatform.third_party import quiet_third_party_warnings


@dataclass(frozen=True)
class Evidence:
    """What an evidence notebook works on: a version's gate report and the env's
    catalog entries.

    Attributes:
        root: The workspace.
        env: The Kedro env.
        report: The version's gate report (empty before its evaluation).
        catalog: The env's resolved catalog configuration.
    """

    root: Path
    env: str
    report: dict[str, Any]
    catalog: dict[str, Any]

    def load(self, name: str) -> Any:
        """Load a catalog entry (paths anchored at the workspace)."""
        from kedro.io import AbstractDataset  # noqa: PLC0415

        entry = dict(self.catalog[name])
        if "filepath" in entry:
            entry["filepath"] = str(self.root / entry["filepath"])
        return AbstractDataset.from_config(name, entry).load()


def open_evidence(
    model_name: str,
    version: int,
    env: str | None = None,
    project_dir: str | None = None,
) -> Evidence:
    """Open a version's evidence inputs and activate the env's security.

    Args:
        model_name: The registered model.
        version: Its version.
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's.
        project_dir: The workspace; defaults to the one around the current folder.
    """
    root = find_project_root(Path(project_dir) if project_dir else None)
    chosen = resolve_env(load_manifest(root), env)
    quiet_third_party_warnings()
    loader = env_config_loader(root, chosen)
    activate(open_security(loader, root, chosen))
    catalog = dict(loader["catalog"])
    report_path = evidence_folder(root, model_name, int(version)) / GATE_REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return Evidence(root, chosen, report, catalog)


def quarantine_table(ingestion_report: dict[str, Any]) -> pd.DataFrame:
    """Per raw table: input, accepted, quarantined rows and the count per rule."""
    rows = []
    for table, counts in ingestion_report["tables"].items():
        rows.append(
            {
                "table": table,
                "input": counts["input"],
                "accepted": counts["accepted"],
                "quarantined": counts["quarantined"],
                "accepted_share": counts["accepted"] / counts["input"],
                **counts["by_rule"],
            }
        )
    return pd.DataFrame(rows).fillna(0)
