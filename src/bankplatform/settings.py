"""Kedro project settings of bankplatform."""

from typing import Any

from kedro.pipeline import Pipeline

from bankplatform.config_loader import WorkspaceConfigLoader
from bankplatform.context import WorkspaceContextHook
from bankplatform.lineage.hooks import LineageHook
from bankplatform.project import CONFIG_LOADER_ARGS as _LOADER_ARGS
from bankplatform.runs.lock import RunLockHook
from bankplatform.runs.progress import RunProgressHook
from bankplatform.security.hooks import AccessHook, ResidencyHook
from bankplatform.third_party import quiet_third_party_warnings

# Every Kedro session of this project (kedro run, notebooks, kedro viz) imports
# this module first.
quiet_third_party_warnings()

# Kedro calls hooks last-in-first-out: the workspace context is built first (every
# setting validated once, the key service client activated), then the starter's
# identity and permission are
# checked and the run's start audited first, then data residency, then lineage
# opens, and only then are the run's datasets locked against other runs of the
# workspace; a run that cannot be audited, is refused or finds its datasets busy
# never starts a node. A busy workspace is recorded by lineage and audit (Kedro
# calls no on_pipeline_error for a run whose start failed).
# Progress lines come last, after lineage has recorded the node.
_CONTEXT = WorkspaceContextHook()
_LINEAGE, _ACCESS = LineageHook(), AccessHook(_CONTEXT.security)


def _refused(error: Exception, run_params: dict[str, Any], pipeline: Pipeline) -> None:
    _LINEAGE.on_pipeline_error(error, pipeline)
    _ACCESS.on_pipeline_error(error, run_params)


HOOKS = (
    RunProgressHook(),
    RunLockHook(on_refused=_refused),
    _LINEAGE,
    ResidencyHook(),
    _ACCESS,
    _CONTEXT,
)

# Telemetry is off: bank networks forbid calls to third parties. kedro-mlflow's
# own run lifecycle is off too: it writes through MLflow's thread-local active run
# (which breaks under ThreadRunner and ParallelRunner) and fails the run when the
# tracking store is down; LineageHook replaces it. Its config format (mlflow.yml)
# and datasets are still used; `kedro mlflow ui` needs its hook, so `make ui` runs
# MLflow's own UI instead.
# Kedro matches the distribution's metadata name, spelled by each project its own way.
DISABLE_HOOKS_FOR_PLUGINS = (
    "kedro-telemetry",
    "kedro_telemetry",
    "kedro-mlflow",
    "kedro_mlflow",
)

CONFIG_LOADER_CLASS = WorkspaceConfigLoader
CONFIG_LOADER_ARGS = _LOADER_ARGS
