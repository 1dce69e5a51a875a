"""Kedro project settings of bankplatform."""

from kedro.config import OmegaConfigLoader

# Telemetry is off: bank networks forbid calls to third parties.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
