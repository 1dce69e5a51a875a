"""``BackgroundSink``: a sink's writes on one background thread, off the pipeline's path.

Every tracking-store transaction is an fsync; on a disk busy with the pipeline's own
output each can take tens of milliseconds. Nodes should not wait for them, so the
hook hands its calls to this thread, in order, and waits only when the run ends.
If the store fails mid-run, every call so far is replayed into the fallback (the
spool) and the rest follow it there: lineage is never dropped silently.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from bankplatform.errors import BankplatformError
from bankplatform.lineage.sinks import InputRecord, LineageSink

logger = logging.getLogger(__name__)

_Call = tuple[str, tuple[Any, ...]]


class LineageWriteError(BankplatformError):
    """The tracking store failed during the run and there was no fallback."""


class BackgroundSink:
    """Applies another sink's calls on a worker thread; ``finish`` waits for all."""

    def __init__(
        self, inner: LineageSink, fallback: Callable[[], LineageSink] | None
    ) -> None:
        self._inner = inner
        self._fallback = fallback
        self._calls: list[_Call] = []
        self._queue: queue.Queue[_Call | None] = queue.Queue()
        self._error: Exception | None = None
        self._thread = threading.Thread(
            target=self._work, name="lineage-writer", daemon=True
        )
        self._thread.start()

    def start(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        self._put("start", experiment, run_name, tags)
        return "pending"

    def set_tags(self, tags: dict[str, str]) -> None:
        self._put("set_tags", tags)

    def log_params(self, params: dict[str, str]) -> None:
        self._put("log_params", params)

    def log_inputs(self, inputs: list[InputRecord]) -> None:
        self._put("log_inputs", inputs)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._put("log_metrics", metrics)

    def log_texts(self, texts: dict[str, str]) -> None:
        self._put("log_texts", texts)

    def finish(
        self, status: str, metrics: dict[str, float], tags: dict[str, str]
    ) -> None:
        self._put("finish", status, metrics, tags)
        self._drain()

    def _put(self, name: str, *args: Any) -> None:
        self._queue.put((name, args))

    def _drain(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            msg = f"lineage: the tracking store failed during the run ({self._error})"
            raise LineageWriteError(msg)

    def _work(self) -> None:
        while (call := self._queue.get()) is not None:
            self._calls.append(call)
            try:
                getattr(self._inner, call[0])(*call[1])
            except Exception as error:  # the store failed: keep the lineage elsewhere
                self._fail_over(error)

    def _fail_over(self, error: Exception) -> None:
        if self._fallback is None:
            self._error = self._error or error
            return
        logger.warning(
            "lineage: tracking store failed (%s); spooling this run",
            str(error).splitlines()[0],
        )
        self._inner = self._fallback()
        self._fallback = None
        for name, args in self._calls:
            getattr(self._inner, name)(*args)
