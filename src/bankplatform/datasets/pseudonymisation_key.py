"""``PseudonymisationKeyDataset``: the pseudonymisation key, as a node input."""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from bankplatform.security.kms import KeyManagementError, KeyManagementService
from bankplatform.security.pseudonyms import Pseudonymiser
from bankplatform.security.runtime import active_key_service, guard_dataset


class PseudonymisationKeyDataset(AbstractDataset[None, Pseudonymiser]):
    """Loads a ``Pseudonymiser`` holding the KMS's pseudonymisation key; read-only.

    Being a catalog entry (classification ``pii``) puts the key under the same
    access rules and audit as raw PII: only the ingestion service may load it.

    Example ``catalog.yml``:

    .. code-block:: yaml

        pseudonymisation_key:
          type: bankplatform.datasets.PseudonymisationKeyDataset
          metadata: {zone: on_prem, classification: pii}
    """

    def __init__(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        key_service: KeyManagementService | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            metadata: Catalog metadata (zone, classification).
            key_service: The KMS; default the active workspace's keyring.
        """
        self._key_service = key_service
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"source": "kms"}

    def load(self) -> Pseudonymiser:
        """The pseudonymiser with the KMS's key (created on first use)."""
        guard_dataset("pseudonymisation_key", self.metadata, "read")
        try:
            keys = self._key_service or active_key_service()
            return Pseudonymiser(keys.pseudonymisation_key())
        except KeyManagementError as error:
            msg = f"pseudonymisation_key: {error}"
            raise DatasetError(msg) from None

    def save(self, data: None) -> None:
        """Refuse: the key lives in the KMS."""
        msg = "pseudonymisation_key: the key lives in the KMS and cannot be saved"
        raise DatasetError(msg)
