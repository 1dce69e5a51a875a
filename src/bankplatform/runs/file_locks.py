"""The embedded default's lock store: ``flock`` on files under the workspace (a
crashed run's locks go with its process)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from bankplatform.runs.holders import Holder, Mode, alive, held_by_parent


class FileRunLocks:
    """``flock`` on ``<folder>/<dataset>.lock``; each holding run described in
    ``<folder>/runs/<run id>.json`` while it holds them."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._held: list[int] = []
        self._record: Path | None = None

    def try_acquire(self, wants: Mapping[str, Mode], holder: Holder) -> str | None:
        """Take every lock, or none (see ``RunLocks``)."""
        (self._folder / "runs").mkdir(parents=True, exist_ok=True)
        for name, mode in sorted(wants.items()):
            handle = os.open(self._lock_file(name), os.O_RDWR | os.O_CREAT, 0o600)
            flags = fcntl.LOCK_EX if mode is Mode.WRITE else fcntl.LOCK_SH
            try:
                fcntl.flock(handle, flags | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                if self._held_by_parent(name):
                    continue  # a run started by the run that holds it (a retrain)
                self.release()
                return name
            self._held.append(handle)
        record = self._folder / "runs" / f"{holder.run_id}.json"
        text = json.dumps(
            {**asdict(holder), "datasets": {k: v.value for k, v in wants.items()}}
        )
        staging = record.with_suffix(".tmp")
        staging.write_text(text)
        staging.replace(record)
        self._record = record
        return None

    def holders(self, dataset: str) -> list[Holder]:
        """Live runs whose record names ``dataset`` (a crashed run's record is skipped)."""
        found = []
        for record in sorted((self._folder / "runs").glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                entry = json.loads(record.read_text())
                if dataset in entry.pop("datasets", {}) and alive(entry):
                    found.append(Holder(**entry))
        return found

    def _held_by_parent(self, dataset: str) -> bool:
        return held_by_parent(self.holders(dataset))

    def release(self) -> None:
        """Unlock and forget this run's record."""
        if self._record is not None:
            self._record.unlink(missing_ok=True)
            self._record = None
        for handle in self._held:
            os.close(handle)  # closing the descriptor releases its flock
        self._held = []

    def _lock_file(self, name: str) -> Path:
        return self._folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"
