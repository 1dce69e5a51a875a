"""The model registry as governance sees it: versions, their tags and aliases.

Thin over MLflow's client: a missing version or alias is a one-line
``GovernanceError``, never MLflow's stack trace. Names a person types are
validated here before they reach MLflow or a file path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException

from bankplatform.errors import BankplatformError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

# Aliases the lifecycle sets; nothing else may be set through it.
CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous"
ALIASES = (CHALLENGER, CHAMPION, PREVIOUS)
_MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{1,99}$")
MAX_VERSION = 1_000_000_000


class GovernanceError(BankplatformError):
    """A governance action or lookup cannot proceed; the message says why."""


def check_model_name(name: str, workspace_model: str) -> str:
    """The model name if it is this workspace's model.

    Raises:
        GovernanceError: Not a valid name, or another model.
    """
    if not _MODEL_NAME.fullmatch(name):
        shown = name[:40].encode("unicode_escape").decode()
        msg = (
            f"invalid model name {shown!r}: letters, digits, '_', '.', '-', at most 100"
        )
        raise GovernanceError(msg)
    if name != workspace_model:
        msg = f"unknown model {name!r}: this workspace registers {workspace_model!r}"
        raise GovernanceError(msg)
    return name


def check_version(version: int | str) -> int:
    """A version number between 1 and a billion.

    Raises:
        GovernanceError: Anything else.
    """
    text = str(version)
    if not text.isdecimal() or not 1 <= int(text) <= MAX_VERSION:
        shown = text[:20].encode("unicode_escape").decode()
        msg = f"invalid version {shown!r}: a whole number from 1"
        raise GovernanceError(msg)
    return int(text)


def get_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    """A registered version.

    Raises:
        GovernanceError: No such model or version.
    """
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        msg = f"model {name} has no version {version} in the registry"
        raise GovernanceError(msg) from None


def alias_holder(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version an alias names, or ``None`` when it names none."""
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def current_aliases(client: MlflowClient, name: str) -> dict[str, int]:
    """Alias -> version for the lifecycle's aliases that are set (one registry call)."""
    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return {}
    return {alias: int(aliases[alias]) for alias in ALIASES if alias in aliases}


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of ``name``, oldest first."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda mv: int(mv.version))


def tags_of(version: ModelVersion) -> dict[str, Any]:
    """A version's tags as a plain dict."""
    return dict(version.tags or {})
