"""One writer per dataset across the runs of a workspace.

Before any node runs, a Kedro run takes a shared lock on every persisted dataset
it reads and an exclusive lock on every dataset it writes, and on every dataset
whose catalog metadata says ``run_lock: exclusive`` (the Feast store: opening it
can register or materialise). A second run that needs one of them in a
conflicting mode waits up to ``runs.lock_wait_seconds`` and is then refused, in
one line that says which dataset, who holds it and since when; no node of it
has run, so nothing is half-written, and its lineage run and audit record say
why. Locks are taken in name order (no deadlock between two runs) and all at
once or not at all.

A run started by a running one (monitoring's retrain, a child process the
parent waits for) works under its parent's locks: a dataset held only by the
process's own parent is not waited for.

Two stores behind one interface: ``FileRunLocks`` (``flock`` on files under the
workspace, for the embedded default: a crashed run's locks go with its process)
and ``PostgresRunLocks`` (PostgreSQL advisory locks, for runs on several hosts:
they go with the run's connection).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bankplatform.errors import BankplatformError, settings_error
from bankplatform.project import pipeline_names
from bankplatform.security.hooks import catalog_metadata
from bankplatform.security.runtime import active_security

POLL_SECONDS = 0.25
EXCLUSIVE_METADATA = "exclusive"


class Mode(str, Enum):
    """How a run uses a dataset: ``read`` may be shared, ``write`` may not."""

    READ = "read"
    WRITE = "write"


class WorkspaceBusy(BankplatformError):
    """Another run holds a dataset this run needs."""


@dataclass(frozen=True)
class Holder:
    """Who holds locks, for the message a refused run gets."""

    user: str
    pipelines: str
    pid: int
    host: str
    since: str
    run_id: str = field(default_factory=lambda: f"{os.getpid()}-{time.time_ns()}")

    @classmethod
    def now(cls, user: str, pipelines: str) -> Holder:
        """This process, from now on."""
        since = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(user, pipelines, os.getpid(), socket.gethostname(), since)

    def describe(self) -> str:
        """``alice (kedro run features, pid 42 on host) since ...``."""
        return f"{self.user} (kedro run {self.pipelines}, pid {self.pid} on {self.host}) since {self.since}"


class RunLocks(Protocol):
    """Takes and releases one run's dataset locks."""

    def try_acquire(self, wants: Mapping[str, Mode], holder: Holder) -> str | None:
        """Take every lock, or none: ``None``, or the first dataset held by another run."""
        ...  # pragma: no cover

    def holders(self, dataset: str) -> list[Holder]:
        """The runs that hold a lock on ``dataset`` now."""
        ...  # pragma: no cover

    def release(self) -> None:
        """Give back every lock this run took (idempotent)."""
        ...  # pragma: no cover


def lock_wants(
    inputs: Iterable[str],
    outputs: Iterable[str],
    persisted: Callable[[str], bool],
    metadata: Callable[[str], Mapping[str, Any]],
) -> dict[str, Mode]:
    """What a run must lock: persisted datasets, write for outputs and for those
    marked ``run_lock: exclusive``, read for the other inputs."""
    wants: dict[str, Mode] = {}
    for name in outputs:
        if persisted(name):
            wants[name] = Mode.WRITE
    for name in inputs:
        if name in wants or not persisted(name):
            continue
        exclusive = metadata(name).get("run_lock") == EXCLUSIVE_METADATA
        wants[name] = Mode.WRITE if exclusive else Mode.READ
    return dict(sorted(wants.items()))


def acquire(
    locks: RunLocks,
    wants: Mapping[str, Mode],
    holder: Holder,
    wait_seconds: float,
) -> None:
    """Take every lock of ``wants``, waiting up to ``wait_seconds``.

    Raises:
        WorkspaceBusy: Still held by another run when the wait is over.
    """
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    while True:
        blocked = locks.try_acquire(wants, holder)
        if blocked is None:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    others = locks.holders(blocked)
    locks.release()
    who = "; ".join(h.describe() for h in others) or "a run that is starting"
    waited = f" after waiting {wait_seconds:g} s" if wait_seconds > 0 else ""
    verb = "write" if wants[blocked] is Mode.WRITE else "read"
    msg = (
        f"workspace busy: this run would {verb} {blocked}, held by {who}{waited}; "
        "nothing of this run has run (wait for it, or set runs.lock_wait_seconds)"
    )
    raise WorkspaceBusy(msg)


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
                if dataset in entry.pop("datasets", {}) and _alive(entry):
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


def held_by_parent(holders: list[Holder]) -> bool:
    """Whether only the run that started this process holds a dataset: it waits
    for this one (monitoring's retrain), so this one works under its locks."""
    here = socket.gethostname()
    return bool(holders) and all(
        h.pid == os.getppid() and h.host == here for h in holders
    )


def _alive(entry: Mapping[str, Any]) -> bool:
    if entry.get("host") != socket.gethostname():
        return True  # another host's run: its record is all we know
    try:
        os.kill(int(entry["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLockSettings(BaseModel):
    """``runs:`` in ``conf/<env>/runs.yml``.

    Attributes:
        lock_wait_seconds: How long a run waits for a dataset another run holds.
        lock_store: A folder (relative to the workspace) or a ``postgresql://`` URL
            (no password in it; a relative ``sslrootcert`` is the workspace's).
        lock_store_credentials: For a PostgreSQL store: the credentials entry
            whose ``password`` the lock store's user logs in with.
    """

    model_config = ConfigDict(extra="forbid")

    lock_wait_seconds: float = Field(default=0.0, ge=0.0, le=86_400.0)
    lock_store: str = ".bankplatform-run/locks"
    lock_store_credentials: str | None = None


def load_run_lock_settings(config_loader: Any) -> RunLockSettings:
    """The env's ``runs:`` section (defaults when the env has none)."""
    patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(patterns, dict):
        patterns.setdefault("runs", ["runs*", "runs*/**"])
    try:
        section = dict(config_loader["runs"] or {}).get("runs", {})
    except MissingConfigException:
        section = {}
    try:
        return RunLockSettings.model_validate(section)
    except ValidationError as error:
        raise settings_error("runs.yml", error) from None


def open_run_locks(
    settings: RunLockSettings, root: Path, config_loader: Any = None
) -> RunLocks:
    """The lock store the settings name: PostgreSQL for a ``postgresql://`` URL
    (runs on several hosts), else a folder of the workspace."""
    if settings.lock_store.startswith(("postgresql://", "postgres://")):
        from bankplatform.config_loader import read_credentials  # noqa: PLC0415
        from bankplatform.runs.postgres_locks import PostgresRunLocks  # noqa: PLC0415

        password = None
        if settings.lock_store_credentials:
            entry = read_credentials(config_loader, settings.lock_store_credentials)
            password = entry.get("password")
        dsn = settings.lock_store.replace("sslrootcert=.", f"sslrootcert={root}/.")
        return PostgresRunLocks(dsn, workspace=str(root), password=password)
    return FileRunLocks(root / settings.lock_store)


class RunLockHook:
    """Takes the run's dataset locks before any node runs; gives them back at its end.

    Args:
        on_refused: Told of a refusal (the run's lineage and audit close it),
            since Kedro calls no ``on_pipeline_error`` for a run that never started.
    """

    def __init__(
        self, on_refused: Callable[[Exception, dict[str, Any], Any], None]
    ) -> None:
        self._on_refused = on_refused
        self._context: Any = None
        self._locks: RunLocks | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Keep the context: its config loader has the lock settings."""
        self._context = context

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Lock what the run reads and writes, waiting as configured.

        Raises:
            WorkspaceBusy: Another run still holds one of them.
        """
        root = Path(run_params["project_path"])
        settings = load_run_lock_settings(self._context.config_loader)
        wants = lock_wants(
            pipeline.inputs(),
            pipeline.all_outputs(),
            lambda name: _persisted(catalog, name),
            lambda name: catalog_metadata(catalog, name),
        )
        holder = Holder.now(
            active_security().starter().name, "+".join(pipeline_names(run_params))
        )
        locks = open_run_locks(settings, root, self._context.config_loader)
        try:
            acquire(locks, wants, holder, settings.lock_wait_seconds)
        except WorkspaceBusy as error:
            self._on_refused(error, run_params, pipeline)
            raise
        self._locks = locks

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Release the run's locks."""
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        """Release the run's locks (what it wrote stays as Kedro left it)."""
        self._release()

    def _release(self) -> None:
        locks, self._locks = self._locks, None
        if locks is not None:
            locks.release()


def _persisted(catalog: Any, name: str) -> bool:
    if name.startswith("params:") or name == "parameters" or name not in catalog:
        return False
    return not isinstance(catalog.get(name), MemoryDataset)
