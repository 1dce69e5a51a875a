"""Data residency: ``pii`` data stays in the ``on_prem`` zone.

Catalog entries carry ``metadata: {zone: on_prem | cloud, classification: pii |
confidential | internal}``; nodes that run outside the bank (the GPU training
burst) are tagged ``cloud``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro.pipeline import Pipeline

from bankplatform.errors import BankplatformError

CLOUD = "cloud"
RAY = "ray"
OBJECT_STORES = frozenset(
    {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "http", "https"}
)


class ResidencyViolation(BankplatformError):
    """A run would move pii data into the cloud zone."""


def residency_violations(
    pipeline: Pipeline,
    metadata: Callable[[str], dict[str, Any]],
    ray_address: str | None = None,
) -> list[str]:
    """Every way the pipeline would move pii data into the cloud zone.

    A dataset is pii if the catalog says so, or if it is an unclassified
    (in-memory or undeclared) output of a node that reads pii: pii flows through
    it. A dataset is in the cloud zone if the catalog says so or its ``filepath``
    is on an object store (``s3://``, ``gs://``, ``abfs://`` ...). A node runs in
    the cloud if it is tagged ``cloud``, or tagged ``ray`` while ``ray_address``
    points at a Ray cluster that is not on this machine.

    Args:
        pipeline: The pipeline about to run.
        metadata: A dataset's catalog entry by name: ``metadata`` keys plus
            ``filepath`` when it has one (empty if none).
        ray_address: ``$RAY_ADDRESS`` of the run.

    Returns:
        One sentence per violation, in node order; empty when the run may go.
    """
    pii = _pii_datasets(pipeline, metadata)
    found: list[str] = []
    for name in sorted(pipeline.datasets()):
        if _is_pii(metadata(name)) and _in_cloud(metadata(name)):
            found.append(
                f"dataset {name} is classified pii but placed in the cloud zone{_where(metadata(name))}"
            )
    remote_ray = _remote(ray_address)
    for node in pipeline.nodes:
        pii_inputs = [name for name in node.inputs if name in pii]
        if not pii_inputs:
            continue
        if CLOUD in node.tags:
            found.append(
                f"node {node.name} is tagged cloud and reads pii dataset(s) {', '.join(pii_inputs)}"
            )
        elif RAY in node.tags and remote_ray:
            found.append(
                f"node {node.name} runs on the Ray cluster at {ray_address} and reads pii dataset(s) {', '.join(pii_inputs)}"
            )
        for output in node.outputs:
            if _in_cloud(metadata(output)):
                found.append(
                    f"node {node.name} would save pii data from {', '.join(pii_inputs)} into cloud-zone dataset {output}"
                )
    return found


def _pii_datasets(
    pipeline: Pipeline, metadata: Callable[[str], dict[str, Any]]
) -> set[str]:
    """Classified pii, plus unclassified outputs of nodes that read pii (in order)."""
    pii = {name for name in pipeline.datasets() if _is_pii(metadata(name))}
    for node in pipeline.nodes:  # Kedro orders nodes topologically
        if any(name in pii for name in node.inputs):
            pii.update(
                output
                for output in node.outputs
                if "classification" not in metadata(output)
            )
    return pii


def _in_cloud(entry: dict[str, Any]) -> bool:
    path = str(entry.get("filepath", ""))
    protocol = path.split("://", 1)[0].lower() if "://" in path else ""
    return entry.get("zone") == CLOUD or protocol in OBJECT_STORES


def _where(entry: dict[str, Any]) -> str:
    path = str(entry.get("filepath", ""))
    return f" ({path})" if "://" in path else ""


def _remote(ray_address: str | None) -> bool:
    if not ray_address or ray_address in {"local", "auto"}:
        return False
    host = ray_address.split("://")[-1].rsplit(":", 1)[0]
    return host not in {"127.0.0.1", "localhost", "::1", "[::1]"}


def _is_pii(metadata: dict[str, Any]) -> bool:
    return metadata.get("classification") == "pii"
