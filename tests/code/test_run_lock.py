"""Runs of one workspace lock what they read (shared) and write (exclusive):
all or nothing, in name order, released with the process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bankplatform.runs.file_locks import FileRunLocks
from bankplatform.runs.holders import Holder, Mode
from bankplatform.runs.lock import WorkspaceBusy, acquire, lock_wants

pytestmark = pytest.mark.unit
ALICE = Holder("alice", "features", 101, "host-a", "2026-11-29T19:00:00Z")
BOB = Holder("bob", "features", 102, "host-a", "2026-11-29T19:00:03Z")


def test_outputs_are_written_inputs_read_and_a_shared_store_written() -> None:
    persisted = {"customers_primary", "customer_features", "feature_store"}
    wants = lock_wants(
        inputs=["customers_primary", "feature_store", "params:features"],
        outputs=["customer_features", "in_memory_frame"],
        persisted=persisted.__contains__,
        metadata=lambda name: {"run_lock": "exclusive"}
        if name == "feature_store"
        else {},
    )
    assert wants == {
        "customer_features": Mode.WRITE,
        "customers_primary": Mode.READ,
        "feature_store": Mode.WRITE,
    }


def test_readers_share_and_a_writer_waits_for_them(tmp_path: Path) -> None:
    first, second, third = (FileRunLocks(tmp_path) for _ in range(3))
    assert first.try_acquire({"a": Mode.WRITE, "b": Mode.READ}, ALICE) is None
    assert second.try_acquire({"b": Mode.READ}, BOB) is None
    assert third.try_acquire({"b": Mode.WRITE}, BOB) == "b"
    assert third.try_acquire({"a": Mode.READ}, BOB) == "a"
    first.release()
    second.release()
    assert third.try_acquire({"a": Mode.READ, "b": Mode.WRITE}, BOB) is None


def test_a_refused_run_holds_nothing(tmp_path: Path) -> None:
    """All or nothing: the locks taken before the busy one are given back."""
    holder, refused, later = (FileRunLocks(tmp_path) for _ in range(3))
    assert holder.try_acquire({"z": Mode.WRITE}, ALICE) is None
    assert refused.try_acquire({"a": Mode.WRITE, "z": Mode.READ}, BOB) == "z"
    assert later.try_acquire({"a": Mode.WRITE}, BOB) is None


def test_the_refusal_says_who_holds_what_and_since_when(tmp_path: Path) -> None:
    holder = FileRunLocks(tmp_path)
    alice = Holder.now("alice", "features")
    assert holder.try_acquire({"customer_features": Mode.WRITE}, alice) is None
    with pytest.raises(WorkspaceBusy) as refused:
        acquire(FileRunLocks(tmp_path), {"customer_features": Mode.WRITE}, BOB, 0)
    assert str(refused.value) == (
        "workspace busy: this run would write customer_features, held by "
        f"alice (kedro run features, pid {alice.pid} on {alice.host}) since {alice.since}; "
        "nothing of this run has run (wait for it, or set runs.lock_wait_seconds)"
    )
    holder.release()
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_waiting_run_starts_when_the_holder_ends(tmp_path: Path) -> None:
    holder = FileRunLocks(tmp_path)
    assert holder.try_acquire({"training_set": Mode.WRITE}, ALICE) is None
    timer = threading.Timer(0.6, holder.release)
    timer.start()
    started = time.monotonic()
    waiting = FileRunLocks(tmp_path)
    acquire(waiting, {"training_set": Mode.READ}, BOB, wait_seconds=10)
    waited = time.monotonic() - started
    timer.join()
    assert 0.5 <= waited < 5
    with pytest.raises(WorkspaceBusy, match="after waiting 0.3 s"):
        acquire(FileRunLocks(tmp_path), {"training_set": Mode.WRITE}, ALICE, 0.3)


def test_a_killed_run_leaves_no_lock_and_is_not_named(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bankplatform.runs.file_locks import FileRunLocks\n"
        "from bankplatform.runs.holders import Holder, Mode\n"
        "locks = FileRunLocks(Path(sys.argv[1]))\n"
        "blocked = locks.try_acquire({'a': Mode.WRITE}, Holder.now('carol', 'ingestion'))\n"
        "print(blocked or 'held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    probe = FileRunLocks(tmp_path)
    assert probe.try_acquire({"a": Mode.READ}, BOB) == "a"
    assert [h.user for h in probe.holders("a")] == ["carol"]
    child.kill()
    child.wait(timeout=10)
    assert probe.holders("a") == []  # its record is left, its process is gone
    assert probe.try_acquire({"a": Mode.WRITE}, BOB) is None


def test_a_run_started_by_the_holder_works_under_its_locks(tmp_path: Path) -> None:
    """Monitoring's retrain is a child process of the monitoring run."""
    parent = FileRunLocks(tmp_path)
    here = Holder.now("mona.monitoring", "monitoring")
    assert parent.try_acquire({"monitoring_references": Mode.READ}, here) is None
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bankplatform.runs.file_locks import FileRunLocks\n"
        "from bankplatform.runs.holders import Holder, Mode\n"
        "locks = FileRunLocks(Path(sys.argv[1]))\n"
        "wants = {'monitoring_references': Mode.WRITE, 'trained_model': Mode.WRITE}\n"
        "print(locks.try_acquire(wants, Holder.now('mona.monitoring', 'training')))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.stdout.strip() == "None", child.stderr
    # Anyone else still waits for the holder.
    assert FileRunLocks(tmp_path).try_acquire(
        {"monitoring_references": Mode.WRITE}, BOB
    ) == ("monitoring_references")


def test_invalid_lock_settings_are_one_line() -> None:
    from bankplatform.errors import BankplatformError
    from bankplatform.runs.lock import load_run_lock_settings

    class _Loader(dict[str, object]):  # what the settings read of a config loader
        def __init__(self, **sections: object) -> None:
            super().__init__(**sections)
            self.config_patterns: dict[str, list[str]] = {}

    loader = _Loader(runs={"runs": {"lock_wait_seconds": -1}})
    with pytest.raises(BankplatformError) as refused:
        load_run_lock_settings(loader)
    assert str(refused.value) == (
        "runs.yml: lock_wait_seconds: Input should be greater than or equal to 0"
    )
    assert loader.config_patterns["runs"] == ["runs*", "runs*/**"]
