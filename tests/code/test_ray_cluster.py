"""The local Ray start's own timeout (Ray's fixed 30 s fails on a busy machine)."""

from __future__ import annotations

import pytest

from bankplatform.ray_cluster import (
    DEFAULT_START_TIMEOUT_S,
    START_TIMEOUT_ENV,
    RayStartTimeout,
    start_timeout_s,
)

pytestmark = pytest.mark.unit


def test_the_start_timeout_defaults_to_ten_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(START_TIMEOUT_ENV, raising=False)
    assert start_timeout_s() == DEFAULT_START_TIMEOUT_S == 600.0
    monkeypatch.setenv(START_TIMEOUT_ENV, "90.5")
    assert start_timeout_s() == 90.5


@pytest.mark.parametrize("text", ["soon", "0", "-5", "nan"])
def test_a_start_timeout_that_is_not_a_positive_number_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(START_TIMEOUT_ENV, text)
    with pytest.raises(RayStartTimeout) as refused:
        start_timeout_s()
    assert str(refused.value) == (
        f"{START_TIMEOUT_ENV} must be a positive number of seconds, not {text!r}"
    )
