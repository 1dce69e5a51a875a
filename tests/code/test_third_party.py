"""Third-party noise is filtered at its source; our own warnings and debug mode are not."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bankplatform.datasets import FeatureStoreDataset
from bankplatform.third_party import DEBUG_ENV_VAR, quiet_third_party_warnings

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
