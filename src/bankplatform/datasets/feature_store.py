"""``FeatureStoreDataset``: the env's configured Feast ``FeatureStore``, as a node input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kedro.io.core import AbstractDataset, DatasetError

from bankplatform.datasets.classification import ClassificationPreview
from bankplatform.security.runtime import guard_dataset
from bankplatform.third_party import quiet_third_party_warnings

if TYPE_CHECKING:
    from feast import FeatureStore

_SQLITE_ONLINE = "online.db"
_SECRETS = frozenset({"online_store_password", "registry_password"})


ONLINE_WRITE_BATCH = 10_000


class FeatureStoreDataset(ClassificationPreview, AbstractDataset[None, "FeatureStore"]):
    """Loads the Feast store of a Kedro env; its repo folder holds the feature tables.

    The repo folder is ``filepath`` (the feature layer): the registry and the
    SQLite online store default to files there, the sources' relative paths
    resolve there, and on load the equivalent ``feature_store.yaml`` is written
    there for Feast's own CLI (``feast -c data/04_feature feature-views list``).
    Other stores pass through as Feast's own configuration, e.g. in ``conf/prod``
    ``online_store: {type: redis, connection_string: ...}`` and ``registry:
    {registry_type: sql, path: postgresql://...}``. Their passwords come from the
    entry's Kedro ``credentials`` (``online_store_password``, ``registry_password``),
    are added to Feast's configuration in memory only, and never reach the
    ``feature_store.yaml`` written for Feast's CLI.

    Example ``catalog.yml``:

    .. code-block:: yaml

        feature_store:
          type: bankplatform.datasets.FeatureStoreDataset
          filepath: data/04_feature
          project: bankplatform
          online_store: {type: sqlite}
          offline_store: {type: duckdb}
    """

    def __init__(
        self,
        *,
        filepath: str,
        project: str,
        online_store: dict[str, Any] | None = None,
        offline_store: dict[str, Any] | None = None,
        registry: str | dict[str, Any] = "registry.db",
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            filepath: The Feast repo folder (feature layer).
            project: Feast project name.
            online_store: Feast online store config; default SQLite in the folder.
            offline_store: Feast offline store config; default DuckDB.
            registry: Registry file (relative to the folder) or Feast registry config.
            credentials: ``online_store_password`` (Redis) and
                ``registry_password`` (the SQL registry's database user).
            metadata: Catalog metadata (zone, classification).

        Raises:
            DatasetError: A credentials key the dataset does not know.
        """
        unknown = sorted(set(credentials or {}) - _SECRETS)
        if unknown:
            msg = f"feature_store: unknown credentials key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_SECRETS))}"
            raise DatasetError(msg)
        self._secrets = {k: str(v) for k, v in (credentials or {}).items()}
        self._repo = Path(filepath)
        self._project = project
        self._online = dict(online_store or {"type": "sqlite"})
        self._offline = dict(offline_store or {"type": "duckdb"})
        self._registry = registry
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._repo),
            "project": self._project,
            "online_store": self._online.get("type"),
            "offline_store": self._offline.get("type"),
        }

    def repo_settings(self, with_secrets: bool = False) -> dict[str, Any]:
        """The store's configuration as ``feature_store.yaml`` holds it (without
        passwords), or as Feast is given it in memory (``with_secrets``)."""
        online = dict(self._online)
        if online.get("type") == "sqlite":
            online.setdefault("path", str(self._repo / _SQLITE_ONLINE))
        password = self._secrets.get("online_store_password")
        if with_secrets and password and "connection_string" in online:
            online["connection_string"] = (
                f"{online['connection_string']},password={password}"
            )
        registry = (
            str(self._repo / self._registry)
            if isinstance(self._registry, str)
            else dict(self._registry)
        )
        password = self._secrets.get("registry_password")
        if (
            with_secrets
            and password
            and isinstance(registry, dict)
            and "path" in registry
        ):
            from sqlalchemy.engine import make_url  # noqa: PLC0415

            url = make_url(str(registry["path"])).set(password=password)
            registry["path"] = url.render_as_string(hide_password=False)
        return {
            "project": self._project,
            "provider": "local",
            "registry": registry,
            "online_store": online,
            "offline_store": self._offline,
            "entity_key_serialization_version": 3,
            # Materialise only each entity's latest row, not every snapshot, and
            # write it in batches: Feast's default turns the whole table into
            # protobuf values at once (13 GB at a million customers).
            "materialization": {
                "pull_latest_features": True,
                "online_write_batch_size": ONLINE_WRITE_BATCH,
            },
        }

    def load(self) -> FeatureStore:
        """The configured store (the folder is created if missing).

        Raises:
            DatasetError: The configuration is not one Feast accepts.
        """
        # Feast is imported here, not with the package: other datasets load faster.
        from feast import FeatureStore  # noqa: PLC0415
        from feast.repo_config import RepoConfig  # noqa: PLC0415

        # Feast's import puts a "once" filter for every DeprecationWarning in
        # front of all others; ours go back in front of it.
        quiet_third_party_warnings()

        guard_dataset("feature_store", "read")  # the service decides from its catalog
        settings = self.repo_settings()
        self._repo.mkdir(parents=True, exist_ok=True)
        try:
            config = RepoConfig(repo_path=self._repo, **self.repo_settings(True))
        except Exception as error:  # pydantic's ValidationError and Feast's own
            first = str(error).splitlines()[0]
            msg = f"feature_store: invalid Feast configuration ({first})"
            raise DatasetError(msg) from None
        (self._repo / "feature_store.yaml").write_text(
            "# Generated from the Kedro catalog entry `feature_store`; edit conf/, not this.\n"
            + yaml.safe_dump(settings, sort_keys=False)
        )
        return FeatureStore(config=config)

    def save(self, data: None) -> None:
        """Refuse: the store is configuration, not data."""
        msg = (
            "feature_store: the store is configured in the catalog and cannot be saved"
        )
        raise DatasetError(msg)
