"""The versions the scoring service serves: loaded by registry alias, checked
against the audit log, and hashed.

A version is served only if the signed audit log holds an allowed
``model.approve`` for it (the key service accepts that record only from a
validator) and no ``model.decommission``, whatever its MLflow tags and aliases
say: anyone with registry access can move an alias, nobody without the key
service can write those records. Its files must hash to the
``artefact_sha256`` recorded at registration: the bytes that score are the
bytes that were approved.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.artifacts
import mlflow.pyfunc

from bankplatform.errors import BankplatformError
from bankplatform.governance.registry import CHALLENGER, CHAMPION, alias_holder
from bankplatform.training.registry import artefact_sha256

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlflow.tracking import MlflowClient

VARIANTS = (CHAMPION, CHALLENGER)


class ModelRefused(BankplatformError):
    """A version an alias names that the service will not serve; the message says why."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded version.

    Attributes:
        variant: ``champion`` or ``challenger``.
        name: Registered model name.
        version: Registry version.
        run_id: The training run that logged it.
        artefact_sha256: Hash of its files, equal to the one registered.
        model: The pyfunc's Python model (``CreditDefaultModel``).
        features: Its input columns, in order.
    """

    variant: str
    name: str
    version: int
    run_id: str
    artefact_sha256: str
    model: Any
    features: list[str]

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows of it."""
        return {
            "variant": self.variant,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "artefact_sha256": self.artefact_sha256,
        }


@dataclass(frozen=True)
class VersionRecords:
    """What the audit log says of a version: registered hash, approval, retirement."""

    registered_sha256: str = ""
    run_id: str = ""
    approved_by: str = ""
    decommissioned: bool = False
    kedro_run_id: str = ""


def version_records(
    records: Iterable[dict[str, Any]], model: str, version: int
) -> VersionRecords:
    """Fold a model's audit records into the facts about one version."""
    resource = f"model:{model}/{version}"
    sha, run_id, approver, retired, kedro_run = "", "", "", False, ""
    for record in records:
        if record.get("resource") != resource or record.get("outcome") != "allowed":
            continue
        details = record.get("details") or {}
        action = record.get("action")
        if action == "model.register":
            sha = str(details.get("artefact_sha256", ""))
            run_id = str(details.get("run_id", ""))
            kedro_run = str(details.get("kedro_run_id", ""))
        elif action == "model.approve":
            approver = str(record.get("actor", ""))
        elif action == "model.decommission":
            retired = True
    return VersionRecords(sha, run_id, approver, retired, kedro_run)


def servable_version(
    client: MlflowClient,
    model: str,
    alias: str,
    records: list[dict[str, Any]],
) -> int | None:
    """The version ``alias`` names if it may be served, ``None`` if the alias is unset.

    Raises:
        ModelRefused: Decommissioned, never approved, or without a registered hash.
    """
    version = alias_holder(client, model, alias)
    if version is None:
        return None
    facts = version_records(records, model, version)
    if facts.decommissioned:  # the audit log's word; the registry's tag is a copy
        msg = f"{model} version {version} ({alias}) is decommissioned: never served"
        raise ModelRefused(msg)
    if not facts.approved_by:
        msg = f"{model} version {version} ({alias}) has no approval in the audit log: not served"
        raise ModelRefused(msg)
    if not facts.registered_sha256:
        msg = f"{model} version {version} ({alias}) has no registered artefact hash: not served"
        raise ModelRefused(msg)
    return version


def load_served(
    model: str, version: int, variant: str, records: list[dict[str, Any]]
) -> ServedModel:
    """Download, hash and load one version through MLflow's pyfunc.

    Raises:
        ModelRefused: Its files do not hash to the registered ``artefact_sha256``.
    """
    facts = version_records(records, model, version)
    with tempfile.TemporaryDirectory(prefix="bankplatform-serve-") as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{model}/{version}", dst_path=folder
            )
        )
        digest = artefact_sha256(local)
        if digest != facts.registered_sha256:
            msg = f"{model} version {version}: its files hash to {digest[:12]}..., not the registered {facts.registered_sha256[:12]}...: not served"
            raise ModelRefused(msg)
        pyfunc = mlflow.pyfunc.load_model(str(local))
    python_model = pyfunc.unwrap_python_model()
    return ServedModel(
        variant=variant,
        name=model,
        version=version,
        run_id=facts.run_id,
        artefact_sha256=digest,
        model=python_model,
        features=list(python_model.features),
    )
