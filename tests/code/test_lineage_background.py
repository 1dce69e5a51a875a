"""BackgroundSink: writes happen in order off the caller's thread; a failing store
fails over to the spool with everything recorded so far."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from bankplatform.lineage.background import BackgroundSink, LineageWriteError
from bankplatform.lineage.sinks import SpoolSink

pytestmark = pytest.mark.unit


class _FlakyStore(SpoolSink):
    """A spool that breaks after a number of calls, recording which thread wrote."""

    def __init__(self, folder: Path, fail_after: int) -> None:
        super().__init__(folder)
        self.calls = 0
        self.fail_after = fail_after
        self.threads: set[str] = set()

    def _append(self, op: str, **payload: object) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls > self.fail_after:
            raise ConnectionError("tracking server went away")
        super()._append(op, **payload)


def _ops(path: Path) -> list[str]:
    return [json.loads(line)["op"] for line in path.read_text().splitlines()]


def test_calls_run_in_order_on_the_writer_thread(tmp_path: Path) -> None:
    store = _FlakyStore(tmp_path / "store", fail_after=100)
    sink = BackgroundSink(store, fallback=None)
    sink.start("credit_default_pd", "ingestion", {"user": "ada"})
    sink.log_params({"ingestion.as_of": "2026-12-31"})
    sink.log_texts({"lineage/pipeline_graph.json": "{}"})
    sink.finish("FINISHED", {"run_seconds": 1.5}, {"kedro.outputs": "x"})
    assert _ops(store.path) == ["start", "log_params", "log_texts", "finish"]
    assert store.threads == {"lineage-writer"}


def test_a_failing_store_fails_over_to_the_spool_with_every_call(
    tmp_path: Path,
) -> None:
    store = _FlakyStore(tmp_path / "store", fail_after=2)
    spools: list[SpoolSink] = []

    def fallback() -> SpoolSink:
        spools.append(SpoolSink(tmp_path / "spool"))
        return spools[0]

    sink = BackgroundSink(store, fallback=fallback)
    sink.start("credit_default_pd", "ingestion", {"user": "ada"})
    sink.log_params({"a": "1"})
    sink.log_metrics({"m": 1.0})
    sink.finish("FINISHED", {"run_seconds": 2.0}, {})
    assert _ops(store.path) == ["start", "log_params"]
    (spool,) = spools
    assert _ops(spool.path) == ["start", "log_params", "log_metrics", "finish"]


def test_without_fallback_the_failure_is_raised_when_the_run_ends(
    tmp_path: Path,
) -> None:
    sink = BackgroundSink(_FlakyStore(tmp_path / "store", fail_after=1), fallback=None)
    sink.start("credit_default_pd", "ingestion", {})
    sink.log_params({"a": "1"})
    with pytest.raises(
        LineageWriteError,
        match=r"tracking store failed during the run \(tracking server went away\)",
    ):
        sink.finish("FINISHED", {}, {})
