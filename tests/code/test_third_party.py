"""Third-party noise is filtered at its source; our own warnings and debug mode are not."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.third_party import (
    DEBUG_ENV_VAR,
    LIBRARY_SETTINGS,
    quiet_start,
    quiet_third_party_warnings,
)

pytestmark = pytest.mark.unit


def _shown(monkeypatch: pytest.MonkeyPatch, debug: bool) -> list[str]:
    if debug:
        monkeypatch.setenv(DEBUG_ENV_VAR, "1")
    else:
        monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        warnings.warn(
            "register_new_resolver() is deprecated", UserWarning, stacklevel=1
        )
        warnings.warn(
            "fetch_arrow_table() is deprecated, use to_arrow_table() instead.",
            DeprecationWarning,
            stacklevel=1,
        )
        warnings.warn("gate thresholds differ from base", UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


def test_known_noise_is_filtered_and_our_warnings_still_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _shown(monkeypatch, debug=False) == ["gate thresholds differ from base"]


def test_debug_mode_shows_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(_shown(monkeypatch, debug=True)) == 3


def test_the_noise_stays_filtered_after_feast_is_opened(
    monkeypatch: pytest.MonkeyPatch, workspace_security: object, tmp_path: Path
) -> None:
    """Feast's import puts a "once" filter for every DeprecationWarning in front of
    all others, which let ibis's warning through during every features run."""
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        warnings.simplefilter("once", DeprecationWarning)  # what importing Feast does
        FeatureStoreDataset(filepath=str(tmp_path / "store"), project="testbank").load()
        warnings.warn(
            "fetch_arrow_table() is deprecated, use to_arrow_table() instead.",
            DeprecationWarning,
            stacklevel=1,
        )
    assert [
        str(w.message) for w in caught if "fetch_arrow_table" in str(w.message)
    ] == []


def test_a_compiler_warning_is_filtered_by_the_library_s_path_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    message = "invalid escape sequence '\\d'"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        for path in (
            "/venv/lib/python3.11/site-packages/evidently/descriptors/text_match.py",
            "/work/src/bankplatform/monitoring/drift.py",
        ):
            warnings.warn_explicit(message, DeprecationWarning, path, 118)
    assert [w.filename for w in caught] == [
        "/work/src/bankplatform/monitoring/drift.py"
    ]


def test_start_up_sets_library_log_levels_unless_a_user_chose_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")
    with warnings.catch_warnings():
        quiet_start()
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert set(LIBRARY_SETTINGS) == {
        "MLFLOW_LOGGING_LEVEL",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
    }


def test_kedro_calls_the_start_up_before_its_plugins() -> None:
    from importlib.metadata import entry_points

    found = [
        e.value for e in entry_points(group="kedro.init") if e.name == "bankplatform"
    ]
    assert found == ["bankplatform.third_party:quiet_start"]


def test_noise_stays_hidden_when_a_library_pushes_the_filters_aside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow wraps its PythonModel checks in ``simplefilter("once", UserWarning)``,
    ahead of every filter: the display hook still knows the noise."""
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    site = "/venv/lib/python3.11/site-packages"
    with warnings.catch_warnings(record=True) as caught:
        quiet_third_party_warnings()
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # what the library does, or worse
            warnings.warn_explicit(
                "Add type hints to the `predict` method to enable data validation",
                UserWarning,
                f"{site}/mlflow/pyfunc/utils/data_validation.py",
                187,
            )
            warnings.warn_explicit(
                "Support for class-based `config` is deprecated",
                DeprecationWarning,
                f"{site}/kedro_mlflow/config/kedro_mlflow_config.py",
                22,
            )
            warnings.warn_explicit(
                "Support for class-based `config` is deprecated",
                DeprecationWarning,
                f"{site}/otherlib/config.py",
                22,
            )
            warnings.warn("gate thresholds differ from base", UserWarning, stacklevel=1)
    assert [(str(w.message)[:30], Path(w.filename).name) for w in caught] == [
        ("Support for class-based `confi", "config.py"),
        ("gate thresholds differ from ba", "test_third_party.py"),
    ]
