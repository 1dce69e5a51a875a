"""What a notebook imports first: the workspace, its manifest, Kedro session and catalog.

.. code-block:: python

    from bankplatform.workspace import open_workspace

    ws = open_workspace()  # finds the project from the notebook's folder
    customers = ws.catalog.load("customers_primary")  # pseudonymised
    store = ws.feature_store()  # the env's Feast FeatureStore
    ws.run("ingestion")  # the same pipeline production runs with `kedro run`

    with tracked_run("exploration") as run:  # an ad-hoc experiment, tracked
        run.log_metrics({"auc": 0.78})

The session and catalog are the objects ``%load_ext kedro.ipython`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from bankplatform.context import CATALOG_ENTRY, WorkspaceContext
from bankplatform.lineage.tracked import TrackedRun, tracked_run
from bankplatform.manifest import WorkspaceManifest, load_manifest
from bankplatform.project import find_project_root, require_env_folder, resolve_env

__all__ = ["TrackedRun", "Workspace", "open_workspace", "tracked_run"]

if TYPE_CHECKING:
    from feast import FeatureStore
    from kedro.framework.context import KedroContext
    from kedro.io import CatalogProtocol


@dataclass
class Workspace:
    """An opened workspace: folder, manifest, Kedro env, session, context and catalog."""

    root: Path
    manifest: WorkspaceManifest
    env: str
    session: KedroSession
    context: KedroContext = field(repr=False)
    catalog: CatalogProtocol[Any, Any] = field(repr=False)

    def feature_store(self) -> FeatureStore:
        """The Feast ``FeatureStore`` configured for this env (catalog entry ``feature_store``)."""
        store: FeatureStore = self.catalog.load("feature_store")
        return store

    @property
    def settings(self) -> WorkspaceContext:
        """The session's ``WorkspaceContext``: settings validated once, the tracking
        URI and the key service's client (what the pipelines' nodes are given)."""
        context: WorkspaceContext = self.catalog.load(CATALOG_ENTRY)
        return context

    @property
    def parameters(self) -> dict[str, Any]:
        """The resolved parameters of the active env."""
        return dict(self.context.params)

    def run(self, pipeline: str = "__default__", **run_args: Any) -> dict[str, Any]:
        """Run a pipeline in a fresh Kedro session, as ``kedro run`` would.

        Args:
            pipeline: Registered pipeline name.
            **run_args: Further ``KedroSession.run`` arguments (node names, tags, ...).

        Returns:
            What ``KedroSession.run`` returns.
        """
        session = KedroSession.create(project_path=self.root, env=self.env)
        with session:
            return session.run(pipeline_names=[pipeline], **run_args)


def open_workspace(env: str | None = None, start: Path | None = None) -> Workspace:
    """Open the workspace for a notebook or a script.

    Args:
        env: Kedro env; defaults to ``$KEDRO_ENV`` or the manifest's default.
        start: Folder to search from; defaults to the current folder.

    Returns:
        The opened workspace.
    """
    root = find_project_root(start)
    manifest = load_manifest(root)
    chosen = resolve_env(manifest, env)
    require_env_folder(root, chosen)
    bootstrap_project(root)
    session = KedroSession.create(project_path=root, env=chosen)
    context = session.load_context()
    return Workspace(
        root=root,
        manifest=manifest,
        env=chosen,
        session=session,
        context=context,
        catalog=context.catalog,
    )
