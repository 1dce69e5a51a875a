"""The connection to Ray that training and the features step share: a running one
(a notebook's), the cluster at ``$RAY_ADDRESS``, or a local one started here."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import ray
import ray._private.services as ray_services

from bankplatform.errors import BankplatformError

logger = logging.getLogger(__name__)

START_TIMEOUT_ENV = "BANKPLATFORM_RAY_START_TIMEOUT_S"
# Measured here: 13 s on a quiet 2-core machine, 45 s beside 4 busy-looping
# processes, over Ray's own fixed 30 s beside 10. Ten minutes survives a fully
# loaded machine; a start that never comes still ends.
DEFAULT_START_TIMEOUT_S = 600.0
# Ray's own start takes about this long on a quiet machine: say why we wait after it.
_QUIET_START_S = 15.0


class RayClusterRequired(BankplatformError):
    """The env computes on a Ray cluster only and none was named."""


class RayStartTimeout(BankplatformError):
    """A local Ray's node did not register within the start timeout."""


def start_timeout_s() -> float:
    """How long a local Ray start may take: ``$BANKPLATFORM_RAY_START_TIMEOUT_S``
    seconds, 600 by default.

    Raises:
        RayStartTimeout: The variable is not a positive number.
    """
    text = os.environ.get(START_TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_START_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        msg = f"{START_TIMEOUT_ENV} must be a positive number of seconds, not {text!r}"
        raise RayStartTimeout(msg)
    return seconds


@contextmanager
def ray_connection(
    num_cpus: int, require_cluster: bool = False, setting: str = "require_cluster"
) -> Iterator[dict[str, float]]:
    """Connect to Ray: reuse a running one (a notebook's), ``$RAY_ADDRESS``, or start
    a local one (token authentication on, no dashboard) unless ``require_cluster``.
    Only what was started here is shut down. A cluster with TLS needs
    ``RAY_USE_TLS`` and its certificates in the environment (Ray reads them).

    Args:
        num_cpus: CPUs of a Ray started here.
        require_cluster: Refuse to start one here.
        setting: The parameter that asked for a cluster, named in the refusal.

    Yields:
        The cluster's resources.

    Raises:
        RayClusterRequired: ``require_cluster`` and no ``$RAY_ADDRESS``.
    """
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if require_cluster and not address:
            msg = f"this env computes on a Ray cluster only ({setting}): set RAY_ADDRESS to the cluster's head"
            raise RayClusterRequired(msg)
        if address:
            # Ray's "Connecting to existing Ray cluster" lines are INFO.
            ray.init(
                address=address, log_to_driver=False, logging_level=logging.WARNING
            )
        else:
            _start_local_ray(num_cpus, start_timeout_s())
        started = True
    try:
        yield dict(ray.cluster_resources())  # type: ignore[no-untyped-call]
    finally:
        if started:
            ray.shutdown()


def alive_nodes() -> int:
    """How many nodes of the connected cluster are alive."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return len([node for node in nodes if node.get("Alive")])


def _start_local_ray(num_cpus: int, timeout_s: float) -> None:
    """Start a local Ray, taking up to ``timeout_s`` in all.

    On a busy machine Ray's own start fails in two ways: its node has a fixed 30 s
    to register with the GCS, and its raylet exits when an agent (a Python process)
    has not written its port within a fixed 15 s. Here each ask for the node's
    record waits as long as the raylet lives, and a start whose raylet exited is
    tried again, until ``timeout_s`` has passed.

    Raises:
        RayStartTimeout: No start succeeded within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    attempt = 1
    while True:
        failure = _start_once(num_cpus, deadline, timeout_s)
        if failure is None:
            return
        ray.shutdown()
        left = deadline - time.monotonic()
        if left <= 0:
            msg = (
                f"the local Ray did not start within {timeout_s:.0f} s ({failure}; "
                f"a busy machine? raise {START_TIMEOUT_ENV})"
            )
            raise RayStartTimeout(msg)
        attempt += 1
        logger.warning(
            "the local Ray did not start (%s): starting it again, attempt %d, "
            "%.0f s left of %s=%.0f",
            failure,
            attempt,
            left,
            START_TIMEOUT_ENV,
            timeout_s,
        )


def _start_once(num_cpus: int, deadline: float, timeout_s: float) -> str | None:
    """One ``ray.init`` with a patient node lookup: ``None``, or why it failed."""
    failure: list[str] = []
    lookup = ray_services.get_node
    ray_services.get_node = _patient(lookup, num_cpus, deadline, timeout_s, failure)
    try:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _system_config={"worker_register_timeout_seconds": int(timeout_s)},
        )
    except Exception as error:
        if "timed out during startup" not in str(error):
            raise
        return failure[0] if failure else "its node did not register"
    finally:
        ray_services.get_node = lookup
    return None


def _patient(
    lookup: Callable[[str, str], dict[str, Any]],
    num_cpus: int,
    deadline: float,
    timeout_s: float,
    failure: list[str],
) -> Callable[[str, str], dict[str, Any]]:
    """``lookup`` retried while the raylet lives, until ``deadline``; why it gave up
    goes into ``failure``."""
    started = time.monotonic()

    def patient_lookup(gcs_address: str, node_id: str) -> dict[str, Any]:
        said = False
        while True:
            try:
                return lookup(gcs_address, node_id)
            except RuntimeError:
                if not _raylet_alive():
                    failure.append("its raylet exited while starting")
                    raise
                if time.monotonic() > deadline:
                    failure.append("its node did not register")
                    raise
                waited = time.monotonic() - started
                if waited > _QUIET_START_S and not said:
                    logger.warning(
                        "waiting for the local Ray (%d CPUs) to register its node: "
                        "%.0f s so far, up to %s=%.0f",
                        num_cpus,
                        waited,
                        START_TIMEOUT_ENV,
                        timeout_s,
                    )
                    said = True
                time.sleep(0.5)

    return patient_lookup


def _raylet_alive() -> bool:
    """Whether a raylet this process started is running (not exited, not a zombie)."""
    for child in psutil.Process().children():
        try:
            if child.name() == "raylet" and child.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            continue
    return False
