"""`bankplatform audit`: verify never writes on top of a chain it found broken;
`show --tail` refuses absurd lengths in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_command
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def _audit(root: Path) -> Path:
    return root / ".bankplatform" / "audit" / "audit.jsonl"


def test_verify_records_a_check_only_on_an_intact_chain(workspace_dir: Path) -> None:
    first = run_command(
        ["bankplatform", "audit", "verify", "--env", "test"], workspace_dir
    )
    assert first.returncode == 0, first.stderr
    # The service's first start installed its policy: the log's first record.
    assert first.stdout.strip() == "audit log intact: 1 records, 1 signed checkpoints"
    lines = _audit(workspace_dir).read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == [
        "policy.install",
        "read_audit_log",
    ]
    # The service checkpoints its head once appends pause (1 s): wait for the check's
    # record to be signed, so nothing legitimate is still to come.
    checkpoints = _audit(workspace_dir).with_name("audit.jsonl.checkpoints")
    wait_for(
        lambda: [json.loads(c)["seq"] for c in checkpoints.read_text().splitlines()]
        == [1, 2],
        what="the idle checkpoint of the check's record",
    )
    # Edit the check's record: the next verify finds it and appends nothing.
    edited = lines[1].replace('"actor":"local-developer"', '"actor":"mallory"')
    assert edited != lines[1]
    _audit(workspace_dir).write_text(lines[0] + "\n" + edited + "\n")
    signed = checkpoints.read_text()
    broken = run_command(
        ["bankplatform", "audit", "verify", "--env", "test"], workspace_dir
    )
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        "Error: audit log NOT intact: record seq 2: content does not match its hash (edited)"
    )
    assert _audit(workspace_dir).read_text() == lines[0] + "\n" + edited + "\n"
    assert checkpoints.read_text() == signed


def test_show_tail_refuses_an_absurd_length_in_one_line(workspace_dir: Path) -> None:
    result = run_command(
        [
            "bankplatform",
            "audit",
            "show",
            "--tail",
            "99999999999999999999",
            "--env",
            "test",
        ],
        workspace_dir,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value for '--tail'" in result.stderr.strip().splitlines()[-1]
