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


class ResidencyViolation(BankplatformError):
    """A run would move pii data into the cloud zone."""


def residency_violations(
    pipeline: Pipeline, metadata: Callable[[str], dict[str, Any]]
) -> list[str]:
    """Every way the pipeline would move pii data into the cloud zone.

    Args:
        pipeline: The pipeline about to run.
        metadata: A dataset's catalog metadata by name (empty if none).

    Returns:
        One sentence per violation, in node order; empty when the run may go.
    """
    found: list[str] = []
    for name in sorted(pipeline.datasets()):
        if _is_pii(metadata(name)) and metadata(name).get("zone") == CLOUD:
            found.append(
                f"dataset {name} is classified pii but placed in the cloud zone"
            )
    for node in pipeline.nodes:
        pii_inputs = [name for name in node.inputs if _is_pii(metadata(name))]
        if not pii_inputs:
            continue
        if CLOUD in node.tags:
            found.append(
                f"node {node.name} is tagged cloud and reads pii dataset(s) {', '.join(pii_inputs)}"
            )
        for output in node.outputs:
            if metadata(output).get("zone") == CLOUD:
                found.append(
                    f"node {node.name} would save pii data from {', '.join(pii_inputs)} into cloud-zone dataset {output}"
                )
    return found


def _is_pii(metadata: dict[str, Any]) -> bool:
    return metadata.get("classification") == "pii"
