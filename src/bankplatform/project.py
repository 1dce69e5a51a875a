"""Where the workspace is, which Kedro env is active and how to read its conf.

Cheap to import: Kedro is imported only when a config loader is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bankplatform.errors import BankplatformError
from bankplatform.manifest import MANIFEST_FILE, WorkspaceManifest

if TYPE_CHECKING:
    from kedro.config import OmegaConfigLoader

PROJECT_ENV_VAR = "BANKPLATFORM_PROJECT"

# How every Kedro config loader of this project reads conf/ (settings.py and
# `env_config_loader` share it). Parameters merge softly: an env overrides the keys
# it states and keeps the rest of base's section, so a governance setting in base
# (``training.monotone``) holds in every env unless that env states otherwise.
# ``governance.yml`` is read as parameters (``params:governance``), so the gate
# thresholds a run used are in its lineage like every other parameter.
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": [
            "parameters*",
            "parameters*/**",
            "**/parameters*",
            "governance*",
            "monitoring*",
        ]
    },
}


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


def require_env_folder(root: Path, env: str) -> None:
    """Refuse an env that has no folder under ``conf/``."""
    if not (root / "conf" / env).is_dir():
        msg = f"Kedro env {env!r} has no folder {root / 'conf' / env}"
        raise BankplatformError(msg)


def env_config_loader(root: Path, env: str) -> OmegaConfigLoader:
    """The config loader a Kedro session of ``env`` would use, for code outside a run."""
    from bankplatform.config_loader import WorkspaceConfigLoader  # noqa: PLC0415

    require_env_folder(root, env)
    return WorkspaceConfigLoader(
        conf_source=str(root / "conf"),
        env=env,
        **{**CONFIG_LOADER_ARGS, "default_run_env": env},
    )


def pipeline_names(run_params: dict[str, Any]) -> list[str]:
    """The pipelines a Kedro run asked for (``__default__`` when none)."""
    names = (
        run_params.get("pipeline_names")
        or run_params.get("pipeline_name")
        or ["__default__"]
    )
    return [names] if isinstance(names, str) else list(names)


def catalog_dataset(root: Path, env: str, name: str) -> Any:
    """A catalog entry of an env as a dataset (patterns resolved as a run resolves
    them), its paths anchored at the workspace: what a command or a service opens
    outside a Kedro run."""
    from kedro.io import AbstractDataset, CatalogConfigResolver  # noqa: PLC0415

    config = env_config_loader(root, env)["catalog"]
    resolver = CatalogConfigResolver(
        config,
        default_runtime_patterns={"{default}": {"type": "kedro.io.MemoryDataset"}},
    )
    entry = dict(config.get(name) or resolver.resolve_pattern(name))
    for key in ("filepath", "path"):
        if key in entry:
            entry[key] = str(root / entry[key])
    return AbstractDataset.from_config(name, entry)
