"""Kedro project settings of bankplatform."""

from kedro.config import OmegaConfigLoader

from bankplatform.governance.hooks import GovernanceHook
from bankplatform.lineage.hooks import LineageHook
from bankplatform.project import CONFIG_LOADER_ARGS as _LOADER_ARGS
from bankplatform.run_progress import RunProgressHook
from bankplatform.security.hooks import AccessHook, ResidencyHook
from bankplatform.third_party import quiet_third_party_warnings

# Every Kedro session of this project (kedro run, notebooks, kedro viz) imports
# this module first.
quiet_third_party_warnings()

# Kedro calls hooks last-in-first-out: governance settings are validated first,
# then the starter's identity and permission are
# checked and the run's start audited first, then data residency, and only then
# does lineage open; a run that cannot be audited or is refused never starts.
# Progress lines come last, after lineage has recorded the node.
HOOKS = (
    RunProgressHook(),
    LineageHook(),
    ResidencyHook(),
    AccessHook(),
    GovernanceHook(),
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

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = _LOADER_ARGS
