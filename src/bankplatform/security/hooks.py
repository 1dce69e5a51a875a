"""``AuditHook``: every pipeline run's start and end in the audit log.

A run whose start cannot be audited does not start (the write raises).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from bankplatform.project import context_env, pipeline_names
from bankplatform.security.audit import AuditLog
from bankplatform.security.identity import acting_identity
from bankplatform.security.settings import load_security_settings


class AuditHook:
    """Audits pipeline runs (one concern; lineage is ``LineageHook``'s)."""

    def __init__(self) -> None:
        self._env = "local"
        self._config_loader: Any = None
        self._log: AuditLog | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Remember the run's env and config loader."""
        self._env = context_env(context)
        self._config_loader = context.config_loader

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline
    ) -> None:
        """Audit the start; raises (so the run does not start) if that fails."""
        root = Path(run_params["project_path"])
        self._log = load_security_settings(self._config_loader, root).audit()
        self._log.append(
            actor=acting_identity(),
            action="pipeline.run.start",
            resource=f"pipeline:{'+'.join(pipeline_names(run_params))}",
            outcome="allowed",
            details={"env": self._env, "nodes": len(pipeline.nodes)},
        )

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Audit a successful end."""
        self._end(run_params, "allowed", {})

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any]) -> None:
        """Audit a failed end with the error's type."""
        self._end(run_params, "failed", {"error_type": type(error).__name__})

    def _end(
        self, run_params: dict[str, Any], outcome: str, details: dict[str, Any]
    ) -> None:
        log, self._log = self._log, None
        if log is None:
            return
        log.append(
            actor=acting_identity(),
            action="pipeline.run.end",
            resource=f"pipeline:{'+'.join(pipeline_names(run_params))}",
            outcome="failed" if outcome == "failed" else "allowed",
            details={"env": self._env, **details},
        )
        log.close()
