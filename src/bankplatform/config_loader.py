"""The workspace's Kedro config loader: Kedro's own, plus the host's secrets.

Kedro reads ``conf/base`` and the run's env folder only, so under
``--env prod`` the secrets of ``conf/local/credentials.yml`` (never in git, see
``.gitignore``) would be out of reach and would have to sit in ``conf/prod``.
``WorkspaceConfigLoader`` adds ``conf/local``'s credentials files to every env's
``credentials`` (an entry of the env's own folder wins); ``${oc.env:VAR}``
works there as in Kedro's own credentials files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader

from bankplatform.errors import BankplatformError

LOCAL_ENV = "local"


class WorkspaceConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` whose ``credentials`` include ``conf/local``'s."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        local = Path(str(self.conf_source)) / LOCAL_ENV
        if key != "credentials" or self.env == LOCAL_ENV or not local.is_dir():
            return dict(super().__getitem__(key) or {})
        try:
            config = dict(super().__getitem__(key) or {})
        except MissingConfigException:  # none in base or the env: the host's only
            config = {}
        patterns = self.config_patterns.get(key, ["credentials*"])
        host = self.load_and_merge_dir_config(
            str(local), patterns, key, set(), read_environment_variables=True
        )
        return {**host, **config}


def read_credentials(config_loader: Any, name: str) -> dict[str, str]:
    """Entry ``name`` of the env's credentials (``conf/local/credentials.yml``,
    never in git, for every env: ``bankplatform.config_loader``).

    Raises:
        BankplatformError: No such entry.
    """
    try:
        found = dict(config_loader["credentials"] or {}).get(name) or {}
    except MissingConfigException:
        found = {}
    if not found:
        msg = f"credentials {name!r} are in neither conf/local/credentials.yml nor the env's credentials.yml"
        raise BankplatformError(msg)
    return {str(k): str(v) for k, v in dict(found).items()}
