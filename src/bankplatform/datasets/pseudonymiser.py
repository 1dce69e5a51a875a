"""``PseudonymiserDataset``: the key service's pseudonymisation, as a node input."""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from bankplatform.datasets.classification import ClassificationPreview
from bankplatform.security.client import ServicePseudonymiser
from bankplatform.security.runtime import active_security


class PseudonymiserDataset(
    ClassificationPreview, AbstractDataset[None, ServicePseudonymiser]
):
    """Loads a pseudonymiser whose tokens the key service computes; read-only.

    The HMAC key never leaves the service: a node sends the distinct identifiers
    of a column and receives their tokens, if the acting identity holds
    ``pseudonymise`` (the ingestion service only), audited per call.

    Example ``catalog.yml``:

    .. code-block:: yaml

        pseudonymiser:
          type: bankplatform.datasets.PseudonymiserDataset
          metadata: {zone: on_prem, classification: pii}
    """

    def __init__(self, *, metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            metadata: Catalog metadata (zone, classification), for residency checks.
        """
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"source": "key service"}

    def load(self) -> ServicePseudonymiser:
        """The pseudonymiser of the active workspace's key service."""
        return active_security().pseudonymiser()

    def save(self, data: None) -> None:
        """Refuse: the key lives in the key service."""
        msg = "pseudonymiser: the key lives in the key service and cannot be saved"
        raise DatasetError(msg)
