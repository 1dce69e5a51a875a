"""`make lint` refuses a secret in any file git would commit; the repository
itself holds none beyond the audited baseline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO

pytestmark = pytest.mark.unit


def _scan(files: list[str]) -> subprocess.CompletedProcess[str]:
    """As `make lint` runs it: from the repository, the baseline by its own name."""
    return subprocess.run(
        [str(BIN / "detect-secrets-hook"), "--baseline", ".secrets.baseline", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_repository_holds_no_unaudited_secret() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(tracked) > 200  # the scan saw the repository, not an empty list
    assert "src/bankplatform/security/kms.py" in tracked
    done = _scan(tracked)
    assert done.returncode == 0, done.stdout[-2000:]
    baseline = json.loads((REPO / ".secrets.baseline").read_text())
    findings = [f for items in baseline["results"].values() for f in items]
    assert all(f["is_secret"] is False for f in findings)


def test_a_committed_key_is_refused(tmp_path: Path) -> None:
    leak = tmp_path / "settings.py"
    # A made-up key in AWS's documented example shape, written at test time.
    key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    leak.write_text(f'AWS_ACCESS_KEY_ID = "{key}"\n')
    done = _scan([str(leak)])
    assert done.returncode == 1
    assert "Secret Type: AWS Access Key" in done.stdout
