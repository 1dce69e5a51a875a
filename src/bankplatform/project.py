"""Where the workspace is and which Kedro env is active; cheap, no Kedro import."""

from __future__ import annotations

import os
from pathlib import Path

from bankplatform.errors import BankplatformError
from bankplatform.manifest import MANIFEST_FILE, WorkspaceManifest

PROJECT_ENV_VAR = "BANKPLATFORM_PROJECT"


def find_project_root(start: Path | None = None) -> Path:
    """Find the workspace folder: ``$BANKPLATFORM_PROJECT`` or the nearest parent
    of ``start`` (default: the current folder) holding ``.kedro.yml`` and
    ``pyproject.toml``.

    Args:
        start: Where to begin looking.

    Returns:
        The workspace folder.

    Raises:
        BankplatformError: No workspace there or above.
    """
    if os.environ.get(PROJECT_ENV_VAR):
        return Path(os.environ[PROJECT_ENV_VAR]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MANIFEST_FILE).is_file() and (folder / "pyproject.toml").is_file():
            return folder
    msg = f"no bankplatform workspace ({MANIFEST_FILE}) in {here} or above; set {PROJECT_ENV_VAR}"
    raise BankplatformError(msg)


def resolve_env(manifest: WorkspaceManifest, env: str | None = None) -> str:
    """The Kedro env to use: ``env``, else ``$KEDRO_ENV``, else the manifest's default.

    Args:
        manifest: The workspace manifest.
        env: An explicit choice.

    Returns:
        The env name.
    """
    return env or os.environ.get("KEDRO_ENV") or manifest.default_kedro_env


def context_env(context: object) -> str:
    """The env a Kedro context resolved (``kedro run`` without ``--env`` leaves
    ``context.env`` as ``None``; its config loader knows the default)."""
    loader = getattr(context, "config_loader", None)
    return str(
        getattr(context, "env", None)
        or getattr(loader, "env", None)
        or getattr(loader, "default_run_env", None)
        or "local"
    )
