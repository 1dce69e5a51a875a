"""Kedro hooks of the security layer: who runs what, and where data may go.

``AccessHook`` activates the env's security for the context, checks that the
person (or scheduler) starting a run may run each pipeline, makes every node act
as its pipeline's service identity on that person's behalf, and audits the run's
start and end. ``ResidencyHook`` refuses, before any node runs, a run that would
move ``pii`` data into the ``cloud`` zone. A run whose start cannot be audited
does not start (the write raises).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from bankplatform.project import pipeline_names
from bankplatform.security.client import RUN_CREDENTIAL_ENV_VAR
from bankplatform.security.policy import AccessDenied, Action, Principal
from bankplatform.security.residency import ResidencyViolation, residency_violations
from bankplatform.security.runtime import (
    WorkspaceSecurity,
    act_for_node,
    active_security,
)


class AccessHook:
    """Identity, run permission, per-node service identity, run audit."""

    def __init__(
        self, security: Callable[[], WorkspaceSecurity] = active_security
    ) -> None:
        # Asked when a run starts: the session's client (the workspace context's),
        # whatever order Kedro calls the hooks' after_context_created in.
        self._security_of = security
        self._security: WorkspaceSecurity | None = None
        self._starter: Principal | None = None
        self._pipelines: set[str] = set()
        self._run: tuple[str, str | None] | None = None  # credential, previous value

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Check and audit the starter's permission and the run's catalog, then
        audit the start.

        Raises:
            IdentityError: No acceptable identity.
            AccessDenied: The starter may not run a requested pipeline, or the run
                would open a classified dataset with another type than the
                workspace catalog's (both audited).
        """
        security = self._security = self._security_of()
        act_for_node(None)
        self._starter = security.starter()
        self._pipelines = set(security.pipelines())
        touched = {
            tag for node in pipeline.nodes for tag in node.tags
        } & self._pipelines
        for name in pipeline_names(run_params):
            if name not in touched:
                security.enforce(Action.RUN_PIPELINE, f"pipeline:{name}")
        if touched:
            # The run's right to act as its pipelines' services: granted for this
            # run and its starter only, ended when the run ends.
            run_id = run_params.get("run_id") or run_params.get("session_id")
            credential = security.start_run(
                str(run_id or f"run-{uuid.uuid4().hex}"), sorted(touched)
            )
            self._run = (credential, os.environ.get(RUN_CREDENTIAL_ENV_VAR))
            os.environ[RUN_CREDENTIAL_ENV_VAR] = credential
        mismatches = security.service().call(
            "POST",
            "/v1/datasets/check",
            {"datasets": _dataset_types(catalog, pipeline)},
        )["mismatches"]
        if mismatches:
            more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            msg = f"access denied: {mismatches[0]}{more}: conf/local, --conf-source or a runtime override cannot change a classified dataset"
            raise AccessDenied(msg)
        security.audit_log().append(
            action="pipeline.run.start",
            resource=f"pipeline:{'+'.join(pipeline_names(run_params))}",
            outcome="allowed",
            details={"env": security.env, "nodes": len(pipeline.nodes)},
        )

    # Kedro loads a node's inputs before `before_node_run` and saves its outputs
    # after `after_node_run`, in the thread that runs the node: each of the three
    # hooks sets the identity for the thread, so loads and saves act as the service.
    @hook_impl
    def before_dataset_loaded(self, node: Node) -> None:
        """Act as the node's service for its input loads."""
        self._act_for(node)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Act as the node's service while it runs."""
        self._act_for(node)

    @hook_impl
    def before_dataset_saved(self, node: Node) -> None:
        """Act as the node's service for its output saves."""
        self._act_for(node)

    def _act_for(self, node: Node) -> None:
        if self._starter is not None:
            act_for_node(next(iter(sorted(set(node.tags) & self._pipelines)), None))

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
        starter, self._starter = self._starter, None
        act_for_node(None)
        if starter is None or self._security is None:
            return
        run, self._run = self._run, None
        if run is not None:
            credential, previous = run
            if previous is None:
                os.environ.pop(RUN_CREDENTIAL_ENV_VAR, None)
            else:
                os.environ[RUN_CREDENTIAL_ENV_VAR] = previous
            self._security.end_run(credential)
        # Appended as the starter (no node acts now); the service stamps the name.
        self._security.audit_log().append(
            action="pipeline.run.end",
            resource=f"pipeline:{'+'.join(pipeline_names(run_params))}",
            outcome="failed" if outcome == "failed" else "allowed",
            details={"env": self._security.env, **details},
        )


class ResidencyHook:
    """Refuses runs that would put ``pii`` data into the ``cloud`` zone."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Check every node before any runs; a refusal is audited and fails the run.

        Raises:
            ResidencyViolation: A pii input of a ``cloud``-tagged node, a pii
                input of a node writing a ``cloud``-zone dataset, or a pii
                dataset placed in the ``cloud`` zone.
        """
        metadata = {
            name: catalog_metadata(catalog, name) for name in pipeline.datasets()
        }
        found = residency_violations(
            pipeline,
            lambda name: metadata.get(name, {}),
            os.environ.get("RAY_ADDRESS"),
        )
        if not found:
            return
        active_security().audit_log().append(
            action="data_residency",
            resource=f"pipeline:{'+'.join(pipeline_names(run_params))}",
            outcome="denied",
            details={"violations": found},
        )
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        msg = f"data residency: {found[0]}{more}"
        raise ResidencyViolation(msg)


def _dataset_types(catalog: Any, pipeline: Pipeline) -> dict[str, str]:
    """The class each of the pipeline's catalog datasets would be opened as."""
    found = {}
    for name in pipeline.datasets():
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            continue
        kind = type(catalog.get(name))
        found[name] = f"{kind.__module__}.{kind.__qualname__}"
    return found


def catalog_metadata(catalog: Any, name: str) -> dict[str, Any]:
    """A dataset's catalog metadata, and its ``filepath`` when it has one."""
    if name.startswith("params:") or name == "parameters" or name not in catalog:
        return {}
    dataset = catalog.get(name)
    entry = dict(getattr(dataset, "metadata", None) or {})
    filepath = getattr(dataset, "_filepath", None)
    protocol = getattr(dataset, "_protocol", None)
    if filepath is not None:
        entry["filepath"] = (
            f"{protocol}://{filepath}"
            if protocol and protocol != "file"
            else str(filepath)
        )
    return entry
