"""The real `bankplatform` command line: success, and one-line errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import read_raw, run_command

pytestmark = pytest.mark.integration


def _assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ")
    assert expected in lines[-1]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["workspace"],
        ["workspace", "show"],
        ["workspace", "status"],
        ["data"],
        ["data", "generate"],
        ["stream"],
        ["stream", "status"],
        ["simulate", "bookings"],
    ],
)
def test_every_command_has_help(workspace_dir: Path, command: list[str]) -> None:
    result = run_command(["bankplatform", *command, "--help"], workspace_dir)
    assert result.returncode == 0
    assert "Usage: bankplatform" in result.stdout


def test_workspace_show_prints_the_validated_manifest(workspace_dir: Path) -> None:
    result = run_command(["bankplatform", "workspace", "show"], workspace_dir)
    assert result.returncode == 0, result.stderr
    assert "model_name: credit_default_pd" in result.stdout
    assert "- EU AI Act Annex III 5(b)" in result.stdout


def test_workspace_show_refuses_an_invalid_manifest(workspace_dir: Path) -> None:
    manifest = workspace_dir / ".kedro.yml"
    manifest.write_text(manifest.read_text().replace("tier_1", "tier_7"))
    result = run_command(["bankplatform", "workspace", "show"], workspace_dir)
    assert result.returncode == 1
    _assert_one_line_error(
        result.stderr,
        "field model_risk_tier: Input should be 'tier_1', 'tier_2' or 'tier_3'",
    )


def test_outside_a_workspace_the_error_says_so(tmp_path: Path) -> None:
    result = run_command(["bankplatform", "workspace", "show"], tmp_path)
    assert result.returncode == 1
    _assert_one_line_error(result.stderr, "no bankplatform workspace (.kedro.yml)")


def test_data_generate_writes_the_extract_with_env_defaults(
    workspace_dir: Path,
) -> None:
    result = run_command(
        [
            "bankplatform",
            "data",
            "generate",
            "--env",
            "test",
            "--customers",
            "200",
            "--seed",
            "9",
        ],
        workspace_dir,
    )
    assert result.returncode == 0, result.stderr
    raw = workspace_dir / "data" / "01_raw"
    summary = json.loads((raw / "_extract.json").read_text())
    # --customers overrides, dirty_rate comes from conf/test/parameters_data.yml.
    assert summary["config"]["customers"] == 200
    assert summary["config"]["dirty_rate"] == 0.02
    assert len(read_raw(raw, "customers")) == summary["rows"]["customers"]
    assert not (raw / "customers.parquet").exists()  # raw PII lands encrypted only
    assert f"customers {summary['rows']['customers']:,}" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--customers", "3"],
            "customers: Input should be greater than or equal to 10",
        ),
        (
            ["--dirty-rate", "0.9"],
            "dirty_rate: Input should be less than or equal to 0.2",
        ),
        (["--env", "prod"], "synthetic data generation is disabled in env 'prod'"),
        (["--env", "staging"], "Kedro env 'staging' has no folder"),
    ],
)
def test_data_generate_refuses_bad_input_in_one_line(
    workspace_dir: Path, args: list[str], expected: str
) -> None:
    result = run_command(["bankplatform", "data", "generate", *args], workspace_dir)
    assert result.returncode == 1
    _assert_one_line_error(result.stderr, expected)
    assert not (workspace_dir / "data" / "01_raw" / "customers.parquet.enc").exists()


def test_python_dash_m_is_the_same_command(workspace_dir: Path) -> None:
    result = run_command(
        ["python", "-m", "bankplatform", "workspace", "show"], workspace_dir
    )
    assert result.returncode == 0
    assert "workspace_id: retail-credit-default" in result.stdout


def test_the_stream_commands_refuse_in_one_line_before_there_is_anything_to_stream(
    workspace_dir: Path,
) -> None:
    """An empty workspace: no extract to book on, no stream yet, no primary layer
    to start the ledger from; each says so in one line."""
    published = run_command(
        ["bankplatform", "simulate", "bookings", "--seconds", "1", "--env", "test"],
        workspace_dir,
    )
    assert published.returncode == 1
    _assert_one_line_error(published.stderr, "no extract in this workspace")
    status = run_command(
        ["bankplatform", "stream", "status", "--env", "test"], workspace_dir
    )
    assert status.returncode == 1
    _assert_one_line_error(status.stderr, "no booking stream BOOKINGS")
    consumed = run_command(
        ["bankplatform", "stream", "--until-idle", "1", "--env", "test"], workspace_dir
    )
    assert consumed.returncode == 1
    _assert_one_line_error(consumed.stderr, "the ledger starts from the primary layer")
    from bankplatform.streaming.broker import EmbeddedServer
    from bankplatform.streaming.settings import StreamingSettings

    EmbeddedServer(StreamingSettings().anchored(workspace_dir), workspace_dir).stop()


def test_a_second_key_service_leaves_the_running_one_s_credential(
    workspace_dir: Path,
) -> None:
    """Two clients that each start a key service at once (one killed mid-start, as
    the stream's kill test did): the second is refused at the socket and must not
    overwrite the session credential of the one that serves, or every later
    command fails with "local session credential does not match"."""
    first = run_command(
        ["bankplatform", "audit", "show", "--tail", "1", "--env", "test"], workspace_dir
    )
    assert first.returncode == 0, first.stderr
    session = workspace_dir / ".bankplatform" / "keyservice-test.session"
    before = session.read_text()
    second = run_command(
        ["bankplatform", "keyservice", "--env", "test"], workspace_dir, timeout=60
    )
    assert second.returncode != 0
    assert "a key service is already listening" in second.stderr
    assert session.read_text() == before
    again = run_command(
        ["bankplatform", "audit", "show", "--tail", "1", "--env", "test"], workspace_dir
    )
    assert again.returncode == 0, again.stderr
