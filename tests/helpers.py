"""Helpers of the scoring-service tests: a real server on loopback, tokens and
audit records through the workspace's real key service, real challenger
versions in the workspace's MLflow registry.

Checks here raise ``AssertionError`` explicitly: ``assert`` in a helper module
would be stripped under ``PYTHONOPTIMIZE=1``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from tests.conftest import BIN, REPO, command_env

MODEL = "credit_default_pd"


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningService:
    """A ``bankplatform serve`` process of a workspace."""

    root: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        """An HTTP client of the service, with a bearer token if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0, **options)

    def stop(self) -> None:
        """Stop the server (it writes what it queued first)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_service(
    root: Path,
    *args: str,
    scheme: str = "http",
    verify: Any = True,
    sigint_ignored: bool = False,
) -> RunningService:
    """Start ``bankplatform serve --env test`` on a free port and wait for ``/healthz``
    (``sigint_ignored``: as a script's ``bankplatform serve ... &`` starts it)."""
    port = free_port()
    log = root / f"serve-{port}.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [
                str(BIN / "bankplatform"),
                "serve",
                "--env",
                "test",
                "--port",
                str(port),
                *args,
            ],
            cwd=root,
            env=command_env(),
            stdout=stream,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint if sigint_ignored else None,  # noqa: PLW1509
        )
    url = f"{scheme}://127.0.0.1:{port}"
    # As long as the service itself may take to start (a local Ray's start is allowed
    # BANKPLATFORM_RAY_START_TIMEOUT_S, 600 s by default, on a loaded machine).
    from bankplatform.ray_cluster import start_timeout_s

    patience = max(180.0, start_timeout_s())
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"serve exited {process.returncode}: {log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/healthz", verify=verify, timeout=2).status_code == 200:
                return RunningService(root, url, process, log)
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError(
        f"serve did not answer within {patience:.0f} s: {log.read_text()[-3000:]}"
    )


@contextmanager
def acting_as(root: Path, user: str) -> Iterator[Any]:
    """The workspace's test-env security as a declared user (developer session)."""
    from bankplatform.project import env_config_loader
    from bankplatform.security.runtime import open_security

    saved = {
        k: os.environ.pop(k, None) for k in ("BANKPLATFORM_TOKEN", "BANKPLATFORM_USER")
    }
    os.environ["BANKPLATFORM_USER"] = user
    try:
        yield open_security(env_config_loader(root, "test"), root, "test")
    finally:
        os.environ.pop("BANKPLATFORM_USER", None)
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


def token(root: Path, user: str, *roles: str, minutes: int = 60) -> str:
    """A token the key service issues (to local-developer's request, an admin)."""
    with acting_as(root, "local-developer") as security:
        signed, _ = security.tokens().issue(
            user, list(roles), timedelta(minutes=minutes)
        )
    return str(signed)


def install_policy(root: Path, env: str = "test") -> Any:
    """Install the workspace's conf/ policy as a tier 1 workspace's admins do: one
    admin proposes, a second installs (developer domain: ``$BANKPLATFORM_USER``)."""
    from bankplatform.keyservice.admin import install_workspace_policy

    saved = {
        k: os.environ.pop(k, None) for k in ("BANKPLATFORM_TOKEN", "BANKPLATFORM_USER")
    }
    try:
        for admin in ("paul.admin", "nora.admin"):
            os.environ["BANKPLATFORM_USER"] = admin
            change = install_workspace_policy(root, env, apply=True)
        assert change.installed and change.proposed_by == "paul.admin", change
        return change
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def audit_records(root: Path) -> list[dict[str, Any]]:
    """Every record of the workspace's audit log, read from the file."""
    log = root / ".bankplatform" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def register_challenger(
    root: Path, fault: dict[str, Any], base_version: int = 1
) -> int:
    """Register the champion's booster as a new version with ``fault`` injected
    (``tests/faulty_challenger.py``), record it as a training run and a validator
    would through the key service, and give it the ``challenger`` alias."""
    import mlflow
    import mlflow.artifacts

    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import granted_run
    from bankplatform.training.registry import registered_artefact_sha256

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    with tempfile.TemporaryDirectory() as folder:
        base = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{MODEL}/{base_version}", dst_path=folder
            )
        )
        fault_file = Path(folder) / "fault.json"
        fault_file.write_text(json.dumps(fault))
        mlflow.set_experiment(MODEL)
        with mlflow.start_run(run_name=f"faulty-challenger-{fault['kind']}") as run:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(REPO / "tests" / "faulty_challenger.py"),
                artifacts={
                    "booster": str(base / "artifacts" / "booster.ubj"),
                    "design": str(base / "artifacts" / "design.json"),
                    "fault": str(fault_file),
                },
                pip_requirements=[],
            )
        version = int(mlflow.register_model(info.model_uri, MODEL).version)
    digest = registered_artefact_sha256(
        mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}"), MODEL, version
    )
    resource = f"model:{MODEL}/{version}"
    base = _allowed_details(root, f"model:{MODEL}/{base_version}")
    # Registered as a training run registers: the training service, started by her.
    with acting_as(root, "dana.scientist") as security:
        with granted_run(security, ["training"]), acting_for("training"):
            security.audit_log().append(
                "model.register",
                resource,
                "allowed",
                {
                    **base["model.register"],
                    "trainer": "dana.scientist",
                    "run_id": run.info.run_id,
                    "artefact_sha256": digest,
                },
            )
        # Test set-up: the base version's evaluation stands for its own (the
        # evaluation service records it, as the evaluation pipeline would).
        with granted_run(security, ["evaluation"]), acting_for("evaluation"):
            security.audit_log().append(
                "model.evaluate", resource, "allowed", base["model.evaluate"]
            )
    approve_in_process(root, version)
    return version


def approve_in_process(root: Path, version: int) -> str:
    """A validator approves ``version`` with the real lifecycle (it packages and the
    key service signs its bundle); the challenger alias is set."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from bankplatform.governance import lifecycle

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    with acting_as(root, "victor.validator") as security:
        g = lifecycle.Governed(
            MlflowClient(f"sqlite:///{root / 'mlflow.db'}"),
            security,
            security.starter(),
            root,
            MODEL,
        )
        return lifecycle.approve(g, version)


def _allowed_details(root: Path, resource: str) -> dict[str, dict[str, Any]]:
    """The details of the latest allowed record of each action on ``resource``."""
    found: dict[str, dict[str, Any]] = {}
    for record in audit_records(root):
        if record.get("resource") == resource and record.get("outcome") == "allowed":
            found[str(record["action"])] = dict(record.get("details") or {})
    return found


def wait_for(condition: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``condition()`` until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


def champion_workspace(governed: Path, folder: Path) -> Path:
    """A copy of a governed workspace where a validator approved version 1 and a
    risk officer promoted it (the real lifecycle commands)."""
    from tests.conftest import copy_workspace

    root = folder / "workspace"
    copy_workspace(governed, root)
    approve_and_promote(root, 1)
    return root


def approve_and_promote(root: Path, version: int) -> None:
    """A validator approves ``version`` and a risk officer promotes it, with the
    real lifecycle commands."""
    from tests.conftest import run_command

    for user, verb in (
        ("victor.validator", "approve"),
        ("rita.riskofficer", "promote"),
    ):
        done = run_command(
            ["bankplatform", "model", verb, MODEL, str(version), "--env", "test"],
            root,
            extra_env={"BANKPLATFORM_USER": user},
        )
        if done.returncode != 0:
            raise AssertionError(done.stderr[-2000:])


@contextmanager
def make_server(
    target: str, variables: dict[str, str], env: dict[str, str], ready: str, log: Path
) -> Iterator[None]:
    """Run ``make TARGET VAR=...`` from the repository (as a user would) until
    ``ready`` answers 200, then stop its whole process group."""
    import signal

    with log.open("wb") as output:
        process = subprocess.Popen(
            [  # noqa: S607 - `make` as a user runs it
                "make",
                "-C",
                str(REPO),
                target,
                *(f"{k}={v}" for k, v in variables.items()),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise AssertionError(
                f"make {target} did not start: {log.read_text()[-3000:]}"
            )
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def start_runs_together(
    root: Path, args: list[str], count: int = 2
) -> list[subprocess.Popen[str]]:
    """``count`` identical commands of the venv started at once in ``root`` (stdout
    and stderr together): two runs racing for one workspace."""
    return [
        subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=root,
            env=command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]


def append_approvals(audit: Any, count: int = 12) -> None:
    """``count`` approval records of one actor (details ``n`` = 0, 1, ...), then
    the head signed: the audit log tests' common history."""
    for number in range(count):
        audit.append(
            "ada",
            "model.approve",
            f"model:credit_default_pd/{number}",
            "allowed",
            {"n": number},
        )
    audit.sign_head()


def run_processes(
    target: Any, arguments: list[tuple[Any, ...]], timeout: float
) -> None:
    """``target(*args)`` in one spawned process per entry, all at once; each must
    exit 0."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=target, args=args) for args in arguments]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=timeout)
        assert process.exitcode == 0


# Decision lines planted as the scoring service writes them (monitoring, Airflow).
NOT_INPUTS = {
    "application_id",
    "customer_token",
    "event_timestamp",
    "defaulted",
    "gender",
    "age_band",
    "score",
}


def resample(frame: pd.DataFrame, seed: int, rows: int = 600) -> pd.DataFrame:
    picked = np.random.default_rng(seed).choice(len(frame), size=rows, replace=True)
    return frame.iloc[picked].reset_index(drop=True)


def plant_decisions(
    root: Path, day: str, frame: pd.DataFrame, version: int, *, audited: bool = True
) -> list[str]:
    """Write ``frame`` as the scoring service logs decisions, on ``day`` (and, unless
    ``audited`` is false, its request records with each line's hash)."""
    folder = root / "data" / "08_reporting" / "decisions"
    folder.mkdir(parents=True, exist_ok=True)
    inputs = [c for c in frame.columns if c not in NOT_INPUTS]
    # Request ids of their own per day: 8 digits of the day, 24 hexadecimal.
    ids = [f"req_{day.replace('-', '')}{i:024x}" for i in range(len(frame))]
    lines = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        lines.append(
            orjson.dumps(
                {
                    "type": "decision",
                    "request_id": ids[i],
                    "customer_token": row["customer_token"],
                    "score": row["score"],
                    "decision": "approve" if row["score"] <= 0.15 else "decline",
                    "model_version": version,
                    "time": f"{day}T10:{i // 60_000_000:02d}:00.{i:06d}+00:00",
                    "features": {c: row[c] for c in inputs},
                },
                default=str,
            )
        )
    (folder / f"decisions-{day}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    if audited:
        _audit_as_the_scoring_service(root, ids, lines)
    return ids


def _audit_as_the_scoring_service(
    root: Path, ids: list[str], lines: list[bytes]
) -> None:
    """Each line's request record with its hash, as ``bankplatform serve`` writes
    them (the scoring service's identity, started by an admin)."""
    from bankplatform.security.audit import decision_line_sha256
    from bankplatform.security.client import acting_for
    from bankplatform.security.runtime import granted_run

    with (
        acting_as(root, "local-developer") as security,
        granted_run(security, ["scoring"]),
        acting_for("scoring"),
    ):
        security.audit_log().append_many(
            [
                (
                    "scoring.request",
                    f"request:{request_id}",
                    "allowed",
                    {
                        "request_id": request_id,
                        "decision_sha256": decision_line_sha256(line),
                    },
                )
                for request_id, line in zip(ids, lines, strict=True)
            ]
        )


def monitoring_reference(root: Path, version: int) -> pd.DataFrame:
    """A version's reference, as the evaluation kept it (read as a data scientist)."""
    from bankplatform.datasets import EncryptedPartitionsDataset
    from bankplatform.security.runtime import activate

    with acting_as(root, "dana.scientist") as security:
        activate(security)
        partitions = EncryptedPartitionsDataset(
            path=str(root / "data/07_model_output/monitoring_references"),
            dataset="monitoring_references",
        ).load()
        return partitions[f"{MODEL}-v{version}"]()
