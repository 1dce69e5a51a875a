"""The connection to Ray that training and the features step share: a running one
(a notebook's), the cluster at ``$RAY_ADDRESS``, or a local one started here."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from bankplatform.errors import BankplatformError


class RayClusterRequired(BankplatformError):
    """The env computes on a Ray cluster only and none was named."""


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
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
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
