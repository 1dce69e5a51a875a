"""The versions the scoring service serves: signed bundles, named by registry alias,
checked against the audit log.

A registry alias only says which version is wanted; anyone with registry access can
move it. A version is served only from **its signed bundle**, fetched from the key
service's store (never from the shared ``mlruns/``) into a private folder and
loaded from there, after four checks: the bundle verifies against the key service's
bundle signing key (every file's sha256, OpenSSF model-signing's format); its
digest is the one the audit log's approval names (for the champion, the
promotion's too); the version was never decommissioned; its model files hash to
the ``artefact_sha256`` the training service recorded at registration. Anything
else is refused with a one-line reason.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import mlflow.pyfunc

from bankplatform.errors import BankplatformError
from bankplatform.governance.audit_facts import VersionFacts, fold_version_facts
from bankplatform.governance.bundles import BUNDLED_GATE_REPORT
from bankplatform.governance.document_view import GateReport
from bankplatform.governance.registry import CHALLENGER, CHAMPION, alias_holder
from bankplatform.security.bundles import BundleRefused, unpack, verify_bundle
from bankplatform.training.registry import artefact_sha256

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlflow.tracking import MlflowClient

VARIANTS = (CHAMPION, CHALLENGER)


class ModelRefused(BankplatformError):
    """A version an alias names that the service will not serve; the message says why."""


class BundleSource(Protocol):
    """Where signed bundles come from (the key service's store, ``ServiceBundles``)."""

    def archive(self, digest: str) -> bytes: ...
    def public_key(self) -> bytes: ...


@dataclass(frozen=True)
class Servable:
    """A version an alias names that the audit log lets serve, and its bundle."""

    version: int
    bundle_digest: str


@dataclass(frozen=True)
class ServedModel:
    """One loaded version.

    Attributes:
        variant: ``champion`` or ``challenger``.
        name: Registered model name.
        version: Registry version.
        run_id: The training run that logged it.
        artefact_sha256: Hash of its files, equal to the one registered.
        bundle_digest: The signed bundle it was loaded from.
        model: The pyfunc's Python model (``CreditDefaultModel``).
        features: Its input columns, in order.
        judged_at: The cut-off and the top of the refer band its gates were
            judged at, from the signed bundle's gate report.
    """

    variant: str
    name: str
    version: int
    run_id: str
    artefact_sha256: str
    bundle_digest: str
    model: Any
    features: list[str]
    judged_at: tuple[float, float]

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows of it."""
        return {
            "variant": self.variant,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "artefact_sha256": self.artefact_sha256,
            "bundle_digest": self.bundle_digest,
        }


def version_facts(
    records: Iterable[dict[str, Any]], model: str, version: int
) -> VersionFacts:
    """What the audit log says of one version of ``model``."""
    return fold_version_facts(records, f"model:{model}/{version}")


def servable_version(
    client: MlflowClient,
    model: str,
    alias: str,
    records: list[dict[str, Any]],
) -> Servable | None:
    """The version ``alias`` names and its bundle, if it may be served; ``None`` if
    the alias is unset.

    Raises:
        ModelRefused: Decommissioned, no approval of a signed bundle, a champion
            without a promotion of that bundle, or no registered hash.
    """
    version = alias_holder(client, model, alias)
    if version is None:
        return None
    facts = version_facts(records, model, version)
    named = f"{model} version {version} ({alias})"
    if facts.decommissioned:  # the audit log's word; the registry's tag is a copy
        msg = f"{named} is decommissioned: never served"
        raise ModelRefused(msg)
    if not facts.approved_bundle:
        msg = f"{named} has no approval of a signed bundle in the audit log: not served"
        raise ModelRefused(msg)
    if alias == CHAMPION and facts.promoted_bundle != facts.approved_bundle:
        msg = (
            f"{named}: its promotion names bundle {facts.promoted_bundle[:12]}..., its approval {facts.approved_bundle[:12]}...: not served"
            if facts.promoted_bundle
            else f"{named} has no promotion in the audit log: not served"
        )
        raise ModelRefused(msg)
    if not facts.artefact_sha256:
        msg = f"{named} has no registered artefact hash: not served"
        raise ModelRefused(msg)
    return Servable(version, facts.approved_bundle)


def load_served(
    model: str,
    servable: Servable,
    variant: str,
    records: list[dict[str, Any]],
    bundles: BundleSource,
) -> ServedModel:
    """Fetch a version's signed bundle, verify it, and load its model through pyfunc.

    Raises:
        ModelRefused: The bundle does not verify, is another than the approved
            one, or its files do not hash to the registered ``artefact_sha256``.
    """
    version, digest = servable.version, servable.bundle_digest
    facts = version_facts(records, model, version)
    named = f"{model} version {version}"
    with tempfile.TemporaryDirectory(prefix="bankplatform-serve-") as folder:
        try:
            verified = verify_bundle(
                unpack(bundles.archive(digest), Path(folder)), bundles.public_key()
            )
        except (BundleRefused, BankplatformError) as error:
            msg = f"{named}: bundle {digest[:12]}... refused: {error}"
            raise ModelRefused(msg) from None
        if verified.digest != digest:
            msg = f"{named}: the store's bundle is {verified.digest[:12]}..., the approved one {digest[:12]}...: not served"
            raise ModelRefused(msg)
        found = artefact_sha256(verified.model_folder)
        if found != facts.artefact_sha256:
            msg = f"{named}: its bundle's model files hash to {found[:12]}..., not the registered {facts.artefact_sha256[:12]}...: not served"
            raise ModelRefused(msg)
        pyfunc = mlflow.pyfunc.load_model(str(verified.model_folder))
        judged = GateReport.model_validate_json(
            (verified.folder / BUNDLED_GATE_REPORT).read_bytes()
        ).settings
    python_model = pyfunc.unwrap_python_model()
    return ServedModel(
        variant=variant,
        name=model,
        version=version,
        run_id=facts.run_id,
        artefact_sha256=found,
        bundle_digest=digest,
        model=python_model,
        features=list(python_model.features),
        judged_at=(judged.decision_cut_off, judged.refer_up_to()),
    )
