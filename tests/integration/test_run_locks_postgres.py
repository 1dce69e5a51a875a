"""Run locks on PostgreSQL (runs on several hosts): the same rules as the file
store, against a real server over verify-full TLS, and two real `kedro run`."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bankplatform.runs.holders import Holder, Mode
from bankplatform.runs.lock import WorkspaceBusy, acquire
from bankplatform.runs.postgres_locks import PostgresRunLocks
from tests.conftest import copy_workspace
from tests.helpers import start_runs_together
from tests.servers import PostgresTLS, serve_database

pytestmark = [pytest.mark.integration]
ALICE = Holder("alice", "features", 101, "host-a", "2026-11-29T19:00:00Z")
BOB = Holder("bob", "features", 102, "host-b", "2026-11-29T19:00:03Z")
SECRET = secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresTLS]:
    yield from serve_database(tmp_path_factory.mktemp("locks_tls"), "locks", SECRET)


def _dsn(postgres: PostgresTLS) -> str:
    return (
        f"postgresql://locks@127.0.0.1:{postgres.port}/locks"
        f"?sslmode=verify-full&sslrootcert={postgres.ca_cert}"
    )


def _locks(postgres: PostgresTLS, workspace: str = "/srv/ws") -> PostgresRunLocks:
    return PostgresRunLocks(_dsn(postgres), workspace, password=SECRET)


def test_readers_share_a_writer_is_refused_and_all_or_nothing(
    postgres: PostgresTLS,
) -> None:
    first, second, third = (_locks(postgres) for _ in range(3))
    assert first.try_acquire({"a": Mode.WRITE, "b": Mode.READ}, ALICE) is None
    assert second.try_acquire({"b": Mode.READ}, BOB) is None
    assert third.try_acquire({"b": Mode.WRITE}, BOB) == "b"
    assert third.try_acquire({"c": Mode.WRITE, "a": Mode.READ}, BOB) == "a"
    assert _locks(postgres).try_acquire({"c": Mode.WRITE}, BOB) is None  # c went back
    assert [h.user for h in third.holders("b")] == ["alice", "bob"]
    # Another workspace on the same server is another lock space.
    assert _locks(postgres, "/srv/other").try_acquire({"a": Mode.WRITE}, BOB) is None
    with pytest.raises(WorkspaceBusy) as refused:
        acquire(_locks(postgres), {"a": Mode.WRITE}, BOB, 0)
    assert (
        "held by alice (kedro run features, pid 101 on host-a) since 2026-11-29T19:00:00Z"
        in str(refused.value)
    )
    first.release()
    second.release()
    assert third.try_acquire({"a": Mode.WRITE, "b": Mode.WRITE}, BOB) is None
    third.release()


def test_a_killed_run_s_locks_go_with_its_connection(postgres: PostgresTLS) -> None:
    script = (
        "import sys, time\n"
        "from bankplatform.runs.holders import Holder, Mode\n"
        "from bankplatform.runs.postgres_locks import PostgresRunLocks\n"
        "locks = PostgresRunLocks(sys.argv[1], '/srv/ws', password=sys.argv[2])\n"
        "blocked = locks.try_acquire({'k': Mode.WRITE}, Holder.now('carol', 'ingestion'))\n"
        "print(blocked or 'held', flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, _dsn(postgres), SECRET],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    probe = _locks(postgres)
    assert probe.try_acquire({"k": Mode.READ}, BOB) == "k"
    assert [h.user for h in probe.holders("k")] == ["carol"]
    child.kill()
    child.wait(timeout=10)
    import time

    for _ in range(50):  # the server notices the closed connection
        if probe.try_acquire({"k": Mode.WRITE}, BOB) is None:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the killed run's lock was never released")
    assert [h.user for h in probe.holders("k")] == ["bob"]
    probe.release()


def test_two_kedro_runs_on_the_postgres_store(
    postgres: PostgresTLS, featured_workspace: Path, tmp_path: Path
) -> None:
    root = tmp_path / "workspace"
    copy_workspace(featured_workspace, root)
    shutil.rmtree(
        root / ".bankplatform-run/locks", ignore_errors=True
    )  # the file store's
    (root / "conf/test/runs.yml").write_text(
        yaml.safe_dump(
            {
                "runs": {
                    "lock_store": _dsn(postgres),
                    "lock_store_credentials": "run_lock_store",
                }
            }
        )
    )
    (root / "conf/local").mkdir(parents=True, exist_ok=True)
    (root / "conf/local/credentials.yml").write_text(
        yaml.safe_dump({"run_lock_store": {"password": SECRET}})
    )
    runs = start_runs_together(
        root, ["kedro", "run", "--pipelines", "features", "--env", "test"]
    )
    printed = [run.communicate(timeout=600)[0] for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(codes) == [0, 1], printed
    refusal = printed[codes.index(1)].strip().splitlines()[-1]
    holder = runs[codes.index(0)]
    assert refusal.startswith(
        "Error: run failed: workspace busy: this run would write application_features, "
        f"held by local-developer (kedro run features, pid {holder.pid} on "
    ), refusal
    assert not any(SECRET in text for text in printed)
    assert not (root / ".bankplatform-run/locks").exists()  # the server kept them all
