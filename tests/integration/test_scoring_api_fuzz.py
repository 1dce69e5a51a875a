"""Schemathesis against the real scoring service: at least 1,000 generated cases
from /openapi.json with a valid admin token, every check on (status codes and
bodies as documented, negative data rejected, Allow headers), and no response
of 500 or above."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, REPO, command_env
from tests.helpers import champion_workspace, start_service, token

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


def _status_codes(event: Any, found: Counter[int]) -> None:
    if isinstance(event, dict):
        if isinstance(event.get("status_code"), int):
            found[event["status_code"]] += 1
        for value in event.values():
            _status_codes(value, found)
    elif isinstance(event, list):
        for value in event:
            _status_codes(value, found)


def test_schemathesis_finds_no_server_error_in_1000_cases(
    governed_workspace: Path, tmp_path: Path
) -> None:
    import subprocess

    root = champion_workspace(governed_workspace, tmp_path)
    service = start_service(root)
    # Each route family with the token of the role that may call it (a wrong
    # role is refused before the body is read, and that is tested elsewhere).
    runs = [
        (
            "origination-system",
            "scoring_client",
            "^/v1/(score|models|decisions/.*/appeal)$",
        ),
        ("uma.underwriter", "credit_underwriter", "^/v1/decisions/.*/override$"),
        ("paul.admin", "platform_admin", "^/(v1/admin/.*|healthz)$"),
    ]
    reports = []
    try:
        for user, role, paths in runs:
            report = tmp_path / f"schemathesis-{role}.ndjson"
            run = subprocess.run(
                [
                    str(BIN / "st"),
                    "--config-file",
                    str(REPO / "tests" / "integration" / "schemathesis.toml"),
                    "run",
                    f"{service.url}/openapi.json",
                    "-H",
                    f"Authorization: Bearer {token(root, user, role)}",
                    "--include-path-regex",
                    paths,
                    "--checks",
                    "all",
                    "--max-examples",
                    "200",
                    "--seed",
                    "20261129",
                    "--report",
                    "ndjson",
                    "--report-ndjson-path",
                    str(report),
                ],
                cwd=tmp_path,
                env=command_env(),
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert run.returncode == 0, run.stdout[-4000:]
            reports.append(report)
    finally:
        service.stop()
    found: Counter[int] = Counter()
    for report in reports:
        for line in report.read_text().splitlines():
            _status_codes(json.loads(line), found)
    assert sum(found.values()) >= 1_000, found
    assert not [code for code in found if code >= 500], found
    assert found[200] > 0 and found[422] > 0  # both accepted and refused cases ran
    assert "Traceback" not in service.log.read_text()
