"""Where lineage goes: MLflow, or a local spool file while MLflow is unreachable.

Both sinks take the same calls in the same order, and write each one as it comes,
so a run that fails half-way keeps what was recorded before it failed. A spool
file replays into MLflow, call by call, with ``replay_spool``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from bankplatform.errors import BankplatformError
from bankplatform.lineage.settings import LineageSettings, unreachable_reason

SPOOL_SUFFIX = ".jsonl"
REPLAYED_SUFFIX = ".replayed"


@dataclass(frozen=True)
class InputRecord:
    """One input dataset of a run, as MLflow's dataset entity wants it."""

    name: str
    digest: str
    source: str
    profile: str


class LineageSink(Protocol):
    """What the lineage hook writes to. Calls are few and batched: on a busy disk
    every tracking-store transaction waits for an fsync."""

    def start(self, experiment: str, run_name: str, tags: dict[str, str]) -> str: ...
    def log_texts(self, texts: dict[str, str]) -> None: ...
    def finish(
        self, status: str, metrics: dict[str, float], tags: dict[str, str]
    ) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_params(self, params: dict[str, str]) -> None: ...
    def log_inputs(self, inputs: list[InputRecord]) -> None: ...
    def log_metrics(self, metrics: dict[str, float]) -> None: ...


class MlflowSink:
    """Writes straight to an MLflow tracking store by run id (thread- and process-safe:
    no global "active run")."""

    def __init__(self, tracking_uri: str) -> None:
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id = ""

    def start(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        found = self._client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id if found else self._client.create_experiment(experiment)
        )
        run = self._client.create_run(experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        self._client.log_batch(
            self.run_id, tags=[RunTag(k, v) for k, v in tags.items()]
        )

    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[start : start + 100])

    def log_inputs(self, inputs: list[InputRecord]) -> None:
        datasets = [
            DatasetInput(
                dataset=Dataset(
                    name=record.name,
                    digest=record.digest,
                    source_type="local",
                    source=record.source,
                    profile=record.profile,
                ),
                tags=[InputTag("mlflow.data.context", "input")],
            )
            for record in inputs
        ]
        self._client.log_inputs(self.run_id, datasets=datasets)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        items = _metrics(metrics)
        for start in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[start : start + 500])

    def log_texts(self, texts: dict[str, str]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            for artifact_file, text in texts.items():
                target = Path(folder) / artifact_name(artifact_file)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            self._client.log_artifacts(self.run_id, folder)

    def finish(
        self, status: str, metrics: dict[str, float], tags: dict[str, str]
    ) -> None:
        self._client.log_batch(
            self.run_id,
            metrics=_metrics(metrics),
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self._client.set_terminated(self.run_id, status)


class SpoolSink:
    """Appends each call as one JSON line to ``<spool_dir>/<id>.jsonl``."""

    def __init__(self, spool_dir: Path) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = f"spooled-{uuid.uuid4().hex}"
        self.path = spool_dir / f"{self.run_id}{SPOOL_SUFFIX}"

    def _append(self, op: str, **payload: Any) -> None:
        line = json.dumps({"op": op, "at": time.time(), **payload}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(line + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    def start(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        self._append("start", experiment=experiment, run_name=run_name, tags=tags)
        return self.run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        self._append("set_tags", tags=tags)

    def log_params(self, params: dict[str, str]) -> None:
        self._append("log_params", params=params)

    def log_inputs(self, inputs: list[InputRecord]) -> None:
        self._append("log_inputs", inputs=[asdict(record) for record in inputs])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._append("log_metrics", metrics=metrics)

    def log_texts(self, texts: dict[str, str]) -> None:
        self._append("log_texts", texts=texts)

    def finish(
        self, status: str, metrics: dict[str, float], tags: dict[str, str]
    ) -> None:
        self._append("finish", status=status, metrics=metrics, tags=tags)


def _metrics(metrics: dict[str, float]) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in metrics.items()]


class LineageRefused(BankplatformError):
    """The env requires lineage and the tracking store cannot take it."""


def open_sink(
    settings: LineageSettings, tracking_uri: str, env: str
) -> tuple[LineageSink, str | None]:
    """The sink for a run starting now: MLflow if reachable, else as the env says.

    Args:
        settings: The env's lineage settings.
        tracking_uri: The env's tracking store.
        env: Kedro env name (for the refusal message).

    Returns:
        The sink, and why MLflow was unreachable (``None`` if it was not).

    Raises:
        LineageRefused: MLflow is unreachable and the env refuses to run without it.
    """
    reason = settings.credentials_problem or unreachable_reason(
        tracking_uri, settings.probe_timeout_s
    )
    if reason is None:
        return MlflowSink(tracking_uri), None
    if settings.when_unreachable == "refuse":
        msg = f"lineage: tracking store {tracking_uri} is unreachable ({reason}); env {env} refuses to run without lineage"
        raise LineageRefused(msg)
    return SpoolSink(settings.spool_dir), reason


_ARTIFACT = re.compile(r"[A-Za-z0-9_.\-/]{1,300}")
_REPLAYABLE = frozenset(
    {
        "start",
        "set_tags",
        "log_params",
        "log_inputs",
        "log_metrics",
        "log_texts",
        "finish",
    }
)


def replay_spool(spool_dir: Path, tracking_uri: str) -> list[str]:
    """Send every spooled run to MLflow, oldest first; each file once.

    Args:
        spool_dir: Folder of ``*.jsonl`` spool files.
        tracking_uri: The tracking store to send them to.

    Returns:
        The MLflow run ids created, one per spool file.

    Raises:
        BankplatformError: A spool file is unreadable; files before it stay replayed.
    """
    created = []
    for spool in sorted(
        spool_dir.glob(f"*{SPOOL_SUFFIX}"), key=lambda p: p.stat().st_mtime
    ):
        sink = MlflowSink(tracking_uri)
        try:
            calls = [
                json.loads(line)
                for line in spool.read_text(encoding="utf-8").splitlines()
                if line
            ]
        except ValueError as error:
            msg = f"{spool}: not a lineage spool file ({error})"
            raise BankplatformError(msg) from None
        for call in calls:  # every call checked before any is sent
            _check(call, spool.stem)
        for call in calls:
            _apply(sink, call, spool.stem)
        spool.rename(spool.with_suffix(REPLAYED_SUFFIX))
        created.append(sink.run_id)
    return created


def _check(call: Any, spool_id: str) -> None:
    op = call.get("op") if isinstance(call, dict) else None
    if op not in _REPLAYABLE:
        msg = f"spool {spool_id}: unknown operation {str(op)[:40]!r}"
        raise BankplatformError(msg)
    if op == "log_texts":
        for name in call.get("texts", {}):
            try:
                artifact_name(name)
            except BankplatformError as error:
                msg = f"spool {spool_id}: {error}"
                raise BankplatformError(msg) from None


def artifact_name(name: str) -> str:
    """A relative artifact path of plain segments (``lineage/x.json``), else an error.

    Raises:
        BankplatformError: Absolute, ``..``, empty segments or odd characters (a
            spool file naming ``/home/admin/.bashrc`` must not write there).
    """
    parts = name.split("/")
    if not _ARTIFACT.fullmatch(name) or any(part in {"", ".", ".."} for part in parts):
        msg = f"not an artifact name: {name[:80]!r}"
        raise BankplatformError(msg)
    return name


def _apply(sink: MlflowSink, call: dict[str, Any], spool_id: str) -> None:
    op = call["op"]
    if op == "start":
        tags = {
            **call["tags"],
            "lineage.spool_id": spool_id,
            "lineage.replayed": "true",
        }
        sink.start(call["experiment"], call["run_name"], tags)
    elif op == "log_inputs":
        sink.log_inputs([InputRecord(**record) for record in call["inputs"]])
    elif op == "log_texts":
        sink.log_texts(call["texts"])
    elif op == "finish":
        sink.finish(call["status"], call["metrics"], call["tags"])
    else:
        getattr(sink, op)(call[op.split("_", 1)[1]])
