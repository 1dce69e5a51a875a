"""Where a run comes from: git state, acting identity, notebook, locked environment."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from bankplatform.security.runtime import acting_identity

LOCK_FILE = "requirements.lock"


def git_state(root: Path) -> dict[str, str]:
    """Commit, branch and dirty flag of the workspace's git checkout.

    Args:
        root: The workspace folder.

    Returns:
        ``git.commit``, ``git.branch`` and ``git.dirty`` (``"unknown"`` outside git).
    """
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {
            "git.commit": "unknown",
            "git.branch": "unknown",
            "git.dirty": "unknown",
        }
    status = _git(root, "status", "--porcelain", "--untracked-files=no") or ""
    return {
        "git.commit": commit,
        "git.branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD") or "unknown",
        "git.dirty": str(bool(status.strip())).lower(),
    }


def describe(root: Path) -> dict[str, str]:
    """Provenance tags of a run started now in ``root``: git, user, notebook, lock."""
    found = {**git_state(root), "user": acting_identity()}
    notebook = notebook_path()
    if notebook:
        found["notebook.path"] = notebook
    lock_sha = lock_file_sha256(root)
    if lock_sha:
        found["env.lock_sha256"] = lock_sha
    return found


def notebook_path() -> str | None:
    """The notebook a run was started from, when it was started from Jupyter."""
    return os.environ.get("BANKPLATFORM_NOTEBOOK") or os.environ.get("JPY_SESSION_NAME")


def lock_file_sha256(root: Path) -> str | None:
    """sha256 of the workspace's lock file (the resolved environment), if present."""
    lock = root / LOCK_FILE
    if not lock.is_file():
        return None
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
            ["git", *args],  # noqa: S607 - git from PATH, as developers run it
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
