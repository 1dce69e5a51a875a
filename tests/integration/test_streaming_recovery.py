"""The booking stream's consumer killed with SIGKILL at random moments under a
publishing load: every event counted once, values equal to the batch's."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BIN, command_env
from tests.streams import (
    ENV,
    assert_online_equals_batch,
    bankplatform,
    counted_events,
    primary_tables,
    stream_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_at_random_points_loses_and_doubles_nothing(
    streaming_workspace: Path,
) -> None:
    root = streaming_workspace
    env = {**command_env(), "KEDRO_ENV": ENV}
    publisher = subprocess.Popen(
        [
            str(BIN / "bankplatform"),
            "simulate",
            "bookings",
            "--rate",
            "250",
            "--seconds",
            "12",
            "--env",
            ENV,
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(11)  # noqa: S311 - when to kill, not a secret
    kills = 0
    # The first consumer starts the ledger from the batch; then kill -9, again and again.
    for _ in range(4):
        consumer = subprocess.Popen(
            [str(BIN / "bankplatform"), "stream", "--env", ENV],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(6.0, 9.0) if kills == 0 else rng.uniform(1.0, 3.5))
        if consumer.poll() is None:
            os.kill(consumer.pid, signal.SIGKILL)
            kills += 1
        consumer.wait(30)
    out, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err[-2000:]
    assert kills >= 3
    bankplatform(root, "stream", "--until-idle", "3")
    _, accounts, transactions = primary_tables(root)
    events = counted_events(
        root, accounts, pd.to_datetime(transactions["booked_at"]).max()
    )
    with sqlite3.connect(stream_settings(root).ledger) as db:
        counted = db.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchone()
    assert counted == (len(events), len(events))
    assert len(events) >= 2_000
    assert_online_equals_batch(root)
