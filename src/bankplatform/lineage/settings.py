"""Lineage settings of a Kedro env: ``conf/<env>/lineage.yml`` plus the tracking URI of
kedro-mlflow's ``conf/<env>/mlflow.yml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from kedro.config import AbstractConfigLoader, MissingConfigException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict

from bankplatform.config_loader import read_credentials
from bankplatform.errors import BankplatformError

_PATTERNS = {
    "lineage": ["lineage*", "lineage*/**"],
    "mlflow": ["mlflow*", "mlflow*/**"],
    "credentials": ["credentials*", "credentials*/**"],
}


class LineageSettings(BaseModel):
    """``lineage:`` in ``conf/<env>/lineage.yml``.

    Attributes:
        when_unreachable: ``spool`` (run, keep lineage in ``spool_dir`` for
            ``bankplatform lineage replay``) or ``refuse`` (do not start the run).
        spool_dir: Where spooled lineage waits, relative to the workspace.
        fingerprint_cache: Cache of file sha256 by path, size and mtime.
        probe_timeout_s: How long to wait for the tracking store before calling it unreachable.
    """

    model_config = ConfigDict(extra="forbid")

    when_unreachable: Literal["spool", "refuse"] = "spool"
    spool_dir: Path = Path("data/lineage_spool")
    fingerprint_cache: Path = Path("data/.fingerprints.json")
    probe_timeout_s: float = 5.0
    # Set by ``load_settings`` (never from lineage.yml): why the tracking server's
    # credentials could not be exported.
    credentials_problem: str | None = None


def load_settings(
    config_loader: AbstractConfigLoader, root: Path
) -> tuple[LineageSettings, str]:
    """Read the lineage settings and the tracking URI of the active env.

    Args:
        config_loader: The Kedro context's config loader.
        root: The workspace folder (relative paths and SQLite files resolve there).

    Returns:
        The settings (paths made absolute) and the tracking URI.
    """
    known_patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(known_patterns, dict):
        for key, patterns in _PATTERNS.items():
            known_patterns.setdefault(key, patterns)
    lineage = _section(config_loader, "lineage").get("lineage", {})
    settings = LineageSettings.model_validate(lineage)
    settings = settings.model_copy(
        update={
            "spool_dir": root / settings.spool_dir,
            "fingerprint_cache": root / settings.fingerprint_cache,
        }
    )
    server = _section(config_loader, "mlflow").get("server", {}) or {}
    uri = server.get("mlflow_tracking_uri") or f"sqlite:///{root / 'mlflow.db'}"
    name = server.get("credentials")
    if name:
        try:
            export_tracking_credentials(
                read_credentials(config_loader, str(name)), root
            )
        except BankplatformError as missing:
            # Commands that never reach the server (keys init) still work; a run
            # treats the store as unreachable for this reason (sinks.open_sink).
            settings = settings.model_copy(update={"credentials_problem": str(missing)})
    return settings, absolute_tracking_uri(str(uri), root)


# What a credentials entry for the tracking server may hold (kedro-mlflow's
# convention: the entry named by mlflow.yml `server.credentials` is exported as
# environment variables, which MLflow's client reads).
TRACKING_CREDENTIALS = frozenset(
    {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
    }
)


def export_tracking_credentials(entry: dict[str, str], root: Path) -> None:
    """Put the tracking server's credentials where MLflow's client reads them
    (an operator's own environment variables win); a relative CA path is the
    workspace's.

    Raises:
        BankplatformError: A key MLflow's client would not read (a typo would
            otherwise pass silently and the server answer 401).
    """
    unknown = sorted(set(entry) - TRACKING_CREDENTIALS)
    if unknown:
        msg = f"tracking credentials: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(TRACKING_CREDENTIALS))}"
        raise BankplatformError(msg)
    for key, value in entry.items():
        relative = (
            key == "MLFLOW_TRACKING_SERVER_CERT_PATH" and not Path(value).is_absolute()
        )
        os.environ.setdefault(key, str(root / value) if relative else value)


def absolute_tracking_uri(uri: str, root: Path) -> str:
    """Anchor a relative SQLite tracking URI at the workspace folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return f"{prefix}{root / uri.removeprefix(prefix)}"
    return uri


def unreachable_reason(uri: str, timeout_s: float) -> str | None:
    """Why the tracking store cannot be used now, or ``None`` when it can.

    Args:
        uri: Tracking URI.
        timeout_s: Seconds to wait for a server.

    Returns:
        A one-line reason, or ``None``.
    """
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return f"folder {folder} of the SQLite store is missing or not writable"
    saved = {
        k: os.environ.get(k)
        for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    }
    os.environ.update(
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT=str(int(timeout_s)),
    )
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # any failure to talk to the store makes it unusable
        lines = str(error).strip().splitlines()
        return lines[0][:200] if lines else type(error).__name__
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return None


def describe_sink(reason: str | None) -> str:
    """The ``lineage.sink`` tag: where this run's lineage went first."""
    return "mlflow" if reason is None else f"spool ({reason})"


def _section(config_loader: AbstractConfigLoader, key: str) -> dict[str, Any]:
    try:
        return dict(config_loader[key] or {})
    except MissingConfigException:
        return {}
    except KeyError as error:
        msg = f"lineage: cannot read {key}.yml ({error})"
        raise BankplatformError(msg) from None
