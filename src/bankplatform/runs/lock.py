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

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bankplatform.errors import BankplatformError, settings_error
from bankplatform.project import pipeline_names
from bankplatform.runs.file_locks import FileRunLocks
from bankplatform.runs.holders import Holder, Mode, RunLocks
from bankplatform.security.hooks import catalog_metadata
from bankplatform.security.runtime import active_security

POLL_SECONDS = 0.25
EXCLUSIVE_METADATA = "exclusive"


class WorkspaceBusy(BankplatformError):
    """Another run holds a dataset this run needs."""


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
