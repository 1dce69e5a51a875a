"""``WorkspaceContext``: one workspace env, read and validated once.

Built once per command, server, notebook or Kedro session: the workspace folder,
its manifest, the resolved env and its parameters, every setting a governed
step reads (validated when the context is made, so a typo stops ``kedro run``
before the first node), the tracking URI and the key service's client. A Kedro
run puts it in the catalog as the ``workspace`` input, so nodes take what they
need from it and never look up the folder themselves.

.. code-block:: python

    from bankplatform.context import workspace_context

    ctx = workspace_context()  # the workspace around the current folder
    ctx.governance.decision_cut_off, ctx.monitoring.window, ctx.tracking_uri
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import AbstractConfigLoader
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from bankplatform.governance.settings import GovernanceSettings
from bankplatform.lineage.settings import load_settings
from bankplatform.manifest import WorkspaceManifest, load_manifest
from bankplatform.monitoring.settings import MonitoringSettings
from bankplatform.project import (
    context_env,
    env_config_loader,
    find_project_root,
    resolve_env,
)
from bankplatform.security.runtime import WorkspaceSecurity, activate, open_security
from bankplatform.serving.settings import ServingSettings, load_serving_settings

# The catalog name a Kedro run gives the context; nodes take it as an input.
CATALOG_ENTRY = "workspace"


@dataclass(frozen=True)
class WorkspaceContext:
    """One workspace env, validated.

    Attributes:
        root: The workspace folder.
        manifest: Its ``.kedro.yml``.
        env: The resolved Kedro env.
        governance: ``params:governance``.
        monitoring: ``params:monitoring``.
        serving: ``serving.yml`` (paths absolute).
        tracking_uri: The env's MLflow tracking URI.
        security: The key service's client for this env.
        params: The env's resolved parameters (a run's, with its overrides).
    """

    root: Path
    manifest: WorkspaceManifest
    env: str
    governance: GovernanceSettings
    monitoring: MonitoringSettings
    serving: ServingSettings
    tracking_uri: str
    security: WorkspaceSecurity = field(repr=False)
    # Plain data, so a ParallelRunner can pickle the context with the catalog
    # (a session's config loader holds closures).
    params: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model_name(self) -> str:
        """The registered model this workspace builds."""
        return self.manifest.model_name


def open_context(
    config_loader: AbstractConfigLoader,
    root: Path,
    env: str,
    params: dict[str, Any] | None = None,
) -> WorkspaceContext:
    """Read and validate an env once.

    Args:
        config_loader: The env's config loader.
        root: The workspace folder.
        env: The resolved env.
        params: The resolved parameters (a Kedro context's, with runtime
            overrides); read from ``config_loader`` when not given.

    Raises:
        pydantic.ValidationError: A setting that is missing, mistyped or unknown.
    """
    parameters = params if params is not None else config_loader["parameters"]
    return WorkspaceContext(
        root=root,
        manifest=load_manifest(root),
        env=env,
        governance=GovernanceSettings.model_validate(
            parameters.get("governance") or {}
        ),
        monitoring=MonitoringSettings.model_validate(
            parameters.get("monitoring") or {}
        ),
        serving=load_serving_settings(config_loader, root),
        tracking_uri=load_settings(config_loader, root)[1],
        security=open_security(config_loader, root, env),
        params=dict(parameters),
    )


def workspace_context(
    env: str | None = None, start: Path | None = None
) -> WorkspaceContext:
    """The context of the workspace around ``start`` (a command's, a notebook's).

    Args:
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's default.
        start: Folder to search from; defaults to the current folder.
    """
    root = find_project_root(start)
    chosen = resolve_env(load_manifest(root), env)
    return open_context(env_config_loader(root, chosen), root, chosen)


class WorkspaceContextHook:
    """Builds a Kedro session's ``WorkspaceContext`` when its context is created,
    activates its key service client, and gives it to the run's nodes as the
    catalog's ``workspace``."""

    def __init__(self) -> None:
        self._context: WorkspaceContext | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Validate the env's settings once; a bad one stops the run here.

        Raises:
            pydantic.ValidationError: A missing, mistyped or unknown field.
        """
        self._context = open_context(
            context.config_loader,
            Path(context.project_path),
            context_env(context),
            dict(context.params),
        )
        activate(self._context.security)

    def security(self) -> WorkspaceSecurity:
        """The session's key service client (what ``AccessHook`` acts through).

        Raises:
            RuntimeError: No Kedro context was created yet.
        """
        if self._context is None:
            msg = "no Kedro context was created: the workspace context is not built"
            raise RuntimeError(msg)
        return self._context.security

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        """Put the context in the catalog, handed to nodes as it is (no copy)."""
        if self._context is not None:
            catalog[CATALOG_ENTRY] = MemoryDataset(self._context, copy_mode="assign")
