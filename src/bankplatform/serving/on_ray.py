"""The same scoring app under Ray Serve, for a cluster (``bankplatform serve --engine ray``).

Each replica builds its own ``ScoringService`` in the workspace (the builder
runs on the replica), acting as ``svc-scoring`` with the starter's credential,
which reaches the replicas as environment variables of the job. Serve's
per-request access log is off: it tripled p99 here, and the audit log already
holds every request.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

import ray
from ray import serve
from ray.exceptions import RayError
from ray.serve.config import HTTPOptions
from ray.serve.schema import LoggingConfig

from bankplatform.ray_cluster import START_TIMEOUT_ENV, start_timeout_s
from bankplatform.serving.app import create_app
from bankplatform.serving.listener import write_listener_key
from bankplatform.serving.server import (
    ServeOptions,
    ServiceWorkspace,
    ServingError,
    build_service,
    freeze_loaded_objects,
    listening,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

_LOG = logging.getLogger(__name__)
# Serve's controller checks that its HTTP proxy is ready within 5 s and healthy
# within 10 s, and kills it otherwise: on a busy machine the proxy's start takes
# longer, and the service never came up (seen beside two busy-looping processes).
_SERVE_PATIENCE = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
}
# Passed to the replicas: who started the service, how Feast and Kedro behave.
_FORWARDED = (
    "BANKPLATFORM_TOKEN",
    "BANKPLATFORM_USER",
    "BANKPLATFORM_MASTER_KEY",
    "PYTHONOPTIMIZE",
    "KEDRO_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
)


def build_app(
    workspace: ServiceWorkspace, listener: tuple[bytes, int] | None = None
) -> FastAPI:
    """Build the scoring app on a replica (runs inside the Ray actor) from the
    workspace env the command validated (pickled with it; its key service client
    reconnects on the replica); ``listener``: the proof key and port clients
    check (``serving.listener``)."""
    os.chdir(workspace.root)
    app = create_app(build_service(workspace))
    app.state.listener = listener
    freeze_loaded_objects()
    return app


def serve_ray(options: ServeOptions, *, blocking: bool = True) -> None:
    """Deploy one replica of the scoring app on Ray Serve (``RAY_ADDRESS`` or a local
    Ray); ``blocking``: serve until SIGINT or SIGTERM, then remove it.

    Raises:
        ServingError: ``--tls`` (terminate TLS at the cluster's ingress instead).
    """
    settings, tls = listening(options)
    if tls:
        msg = "--engine ray serves HTTP behind the cluster's ingress; terminate TLS there, or use --engine uvicorn --tls"
        raise ServingError(msg)
    for name, seconds in _SERVE_PATIENCE.items():
        os.environ.setdefault(name, seconds)  # an operator's own value wins
    env_vars = {
        k: os.environ[k] for k in (*_FORWARDED, *_SERVE_PATIENCE) if k in os.environ
    }
    ray.init(
        address=os.environ.get("RAY_ADDRESS"),
        runtime_env={"env_vars": env_vars},
        log_to_driver=False,
        include_dashboard=False,
    )
    stop = threading.Event()
    if blocking:  # after ray.init, which sets its own SIGTERM handler
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stop.set())
    _start_serve(HTTPOptions(host=settings.host, port=settings.port))
    workspace = options.workspace
    listener = (write_listener_key(workspace.root, settings.port), settings.port)

    def builder() -> FastAPI:  # evaluated on the replica: a builder takes no arguments
        return build_app(workspace, listener)

    deployment = serve.deployment(
        serve.ingress(builder)(),
        name="scoring",
        num_replicas=1,
        max_ongoing_requests=64,
        logging_config=LoggingConfig(enable_access_log=False),
    )
    application = deployment.bind()  # type: ignore[attr-defined]  # a Deployment: serve.deployment's overloads hide it
    serve.run(application, name="scoring", route_prefix="/")
    if blocking:
        _serve_until(stop)


def _start_serve(http: HTTPOptions) -> None:
    """Start Serve, waiting for its HTTP proxy as long as a local Ray start may take
    (Serve's driver gives up after a fixed 60 s; on a busy machine the proxy, a
    Python process, can take longer).

    Raises:
        ServingError: The proxy did not come up in time, or its actor died.
    """
    deadline = time.monotonic() + start_timeout_s()
    while True:
        try:
            serve.start(http_options=http)
            return
        except TimeoutError as error:
            if time.monotonic() > deadline:
                msg = f"Ray Serve did not start: {error} (a busy machine? raise {START_TIMEOUT_ENV})"
                raise ServingError(msg) from None
            _LOG.warning("waiting for Ray Serve's HTTP proxy to start (%s)", error)
        except RayError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            msg = f"Ray Serve did not start: {type(error).__name__}: {first}"
            raise ServingError(msg) from None


def _serve_until(stop: threading.Event) -> None:
    """Serve until SIGINT or SIGTERM, then remove the app and leave Ray (a Ray
    started here stops with it; a cluster keeps its other Serve apps).

    The handlers are our own: a service started in the background by a script
    (``bankplatform serve ... &``) inherits SIGINT ignored, and Serve's own wait
    only reacts to Python's ``KeyboardInterrupt``, so Ctrl-C or ``kill -INT``
    would never reach it.
    """
    try:
        while not stop.wait(1.0):
            pass
    finally:
        serve.delete("scoring")
        ray.shutdown()
