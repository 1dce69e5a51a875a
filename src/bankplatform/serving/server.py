"""Start the scoring service: build it for a workspace env, then serve it with
uvicorn (one machine) or Ray Serve (a cluster).

The process acts as the ``scoring`` pipeline's service identity (``svc-scoring``)
on behalf of the person who starts it, which the key service grants only to a
``platform_admin``. A production workspace refuses to listen without TLS.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import mlflow
import uvicorn
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from bankplatform.errors import BankplatformError
from bankplatform.feature_repo.definitions import FEATURE_SERVICES
from bankplatform.feature_repo.services import service_features
from bankplatform.features.settings import FeaturesParameters
from bankplatform.governance.settings import GovernanceSettings
from bankplatform.manifest import WorkspaceManifest
from bankplatform.security.client import RUN_CREDENTIAL_ENV_VAR, serve_as
from bankplatform.security.runtime import WorkspaceSecurity, activate
from bankplatform.serving.app import create_app
from bankplatform.serving.listener import remove_listener_key, write_listener_key
from bankplatform.serving.scoring import OnlineFeatures
from bankplatform.serving.service import ScoringService, ServingContext
from bankplatform.serving.settings import ServingSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

SERVICE_PIPELINE = "scoring"
_RENEW_SECONDS = 3600.0
_LOG = logging.getLogger(__name__)


class ServingError(BankplatformError):
    """The scoring service cannot start; the message says why."""


class ServiceWorkspace(Protocol):
    """What the service reads of its workspace env, validated once by the command
    that starts it (``bankplatform.context.WorkspaceContext`` is one)."""

    @property
    def root(self) -> Path: ...
    @property
    def env(self) -> str: ...
    @property
    def manifest(self) -> WorkspaceManifest: ...
    @property
    def serving(self) -> ServingSettings: ...
    @property
    def governance(self) -> GovernanceSettings: ...
    @property
    def tracking_uri(self) -> str: ...
    @property
    def security(self) -> WorkspaceSecurity: ...
    @property
    def params(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: the CLI's flags over the env's ``serving.yml``."""

    workspace: ServiceWorkspace
    tls: bool | None = None
    port: int | None = None
    host: str | None = None


def build_service(workspace: ServiceWorkspace) -> ScoringService:
    """The scoring service of a workspace env, its models loaded.

    Raises:
        ServingError: No served champion can be loaded, or the starter may not run it.
    """
    security = workspace.security
    activate(security)
    # The key service grants svc-scoring only to whoever may start it, for this
    # service's lifetime: the credential is renewed while it runs.
    _hold_run_credential(security)
    serve_as(SERVICE_PIPELINE)
    security.whoami()
    service_name = FeaturesParameters.model_validate(
        workspace.params.get("features", {})
    ).feature_service
    mlflow.set_tracking_uri(workspace.tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store = _feature_store(workspace.root, workspace.env)
    context = ServingContext(
        settings=workspace.serving,
        security=security,
        registry=MlflowClient(tracking_uri=workspace.tracking_uri),
        features=OnlineFeatures(
            store, service_features(FEATURE_SERVICES[service_name])
        ),
        model_name=workspace.manifest.model_name,
        cut_off=workspace.governance.decision_cut_off,
        refer_up_to=workspace.governance.refer_up_to(),
    )
    return ScoringService(context)


def _hold_run_credential(security: WorkspaceSecurity) -> None:
    """Take a run credential for the scoring pipeline and renew it hourly (each
    renewal lasts a day) in a background thread for as long as the process lives."""
    credential = security.start_run(f"serve-{uuid.uuid4().hex}", [SERVICE_PIPELINE])
    os.environ[RUN_CREDENTIAL_ENV_VAR] = credential

    def renew() -> None:
        while True:
            time.sleep(_RENEW_SECONDS)
            try:
                security.renew_run(credential)
            except Exception as error:  # the next hour tries again
                _LOG.warning("run credential not renewed: %s", type(error).__name__)

    threading.Thread(target=renew, name="run-credential", daemon=True).start()


def _feature_store(root: Path, env: str) -> Any:
    """The env's Feast store, loaded through its Kedro catalog (paths resolved there)."""

    bootstrap_project(root)
    session = KedroSession.create(project_path=root, env=env)
    try:
        return session.load_context().catalog.load("feature_store")
    finally:
        session.close()


def listening(options: ServeOptions) -> tuple[ServingSettings, bool]:
    """The env's serving settings with the CLI's flags applied, and whether TLS is on.

    Raises:
        ServingError: A production workspace without TLS, or TLS without its files.
    """
    manifest = options.workspace.manifest
    settings = options.workspace.serving
    updates: dict[str, Any] = {}
    if options.port is not None:
        updates["port"] = options.port
    if options.host is not None:
        updates["host"] = options.host
    settings = settings.model_copy(update=updates)
    tls = settings.tls if options.tls is None else options.tls
    if manifest.production and not tls:
        msg = "a production workspace serves over TLS only: start with --tls (and `bankplatform tls init` or the bank's certificate)"
        raise ServingError(msg)
    if tls and not (settings.tls_cert.is_file() and settings.tls_key.is_file()):
        msg = f"TLS needs {settings.tls_cert} and {settings.tls_key}: run `bankplatform tls init`"
        raise ServingError(msg)
    return settings, tls


def serve_uvicorn(options: ServeOptions) -> None:
    """Serve with uvicorn, one worker, no access log (the audit log has every request).

    The port is bound first (a port another process holds stops the start in one
    line, before any model loads); on plain HTTP a listener key is written once
    bound, so clients can check who answers before they send a token.

    Raises:
        ServingError: The port cannot be bound.
    """
    settings, tls = listening(options)
    os.chdir(options.workspace.root)
    listener = _bind(settings.host, settings.port)
    try:
        service = build_service(options.workspace)
    except BaseException:
        listener.close()
        raise
    app: FastAPI = create_app(service)
    root, port = options.workspace.root, listener.getsockname()[1]
    freeze_loaded_objects()
    key = None if tls else write_listener_key(root, port)
    app.state.listener = (key, port) if key else None
    config = uvicorn.Config(
        app,
        access_log=False,
        log_level="warning",
        ssl_certfile=str(settings.tls_cert) if tls else None,
        ssl_keyfile=str(settings.tls_key) if tls else None,
    )
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        if key:
            remove_listener_key(root, port, key)
        service.close()


def freeze_loaded_objects() -> None:
    """Keep what the service loaded out of the garbage collector's full passes.

    MLflow, Feast, pandas, xgboost and the models are some 415,000 tracked
    objects that are never garbage, yet each full collection walked them all:
    613 ms measured here, a pause for every request in flight (the half-second
    stall the 300 req/s benchmark saw now and then). Frozen, they are skipped.
    """
    gc.collect()
    gc.freeze()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            msg = f"port {port} on {host} is taken by another process: stop it, or serve on another port (--port, or serving.port)"
        else:
            msg = f"cannot listen on {host}:{port} ({error.strerror})"
        raise ServingError(msg) from None
    listener.listen(2048)
    return listener
