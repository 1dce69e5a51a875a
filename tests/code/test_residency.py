"""Data residency rules on real Kedro pipelines: pii never reaches the cloud zone."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.pipeline import Node, Pipeline

from bankplatform.security.residency import residency_violations

pytestmark = pytest.mark.unit
METADATA: dict[str, dict[str, Any]] = {
    "customers_primary": {"zone": "on_prem", "classification": "confidential"},
    "customers_accepted": {"zone": "on_prem", "classification": "pii"},
    "training_set": {"zone": "on_prem", "classification": "confidential"},
    "gpu_scratch": {"zone": "cloud", "classification": "confidential"},
}


def _identity(frame: object) -> object:
    return frame


def _violations(*nodes: Node) -> list[str]:
    return residency_violations(Pipeline(list(nodes)), lambda n: METADATA.get(n, {}))


def test_pseudonymised_data_may_burst_to_the_cloud() -> None:
    assert (
        _violations(
            Node(_identity, "customers_primary", "gpu_scratch", name="stage_node"),
            Node(
                _identity,
                "gpu_scratch",
                "training_set",
                name="train_node",
                tags="cloud",
            ),
        )
        == []
    )


def test_a_cloud_node_may_not_read_pii() -> None:
    assert _violations(
        Node(
            _identity,
            "customers_accepted",
            "training_set",
            name="train_node",
            tags="cloud",
        )
    ) == ["node train_node is tagged cloud and reads pii dataset(s) customers_accepted"]


def test_pii_may_not_be_saved_into_a_cloud_dataset() -> None:
    assert _violations(
        Node(_identity, "customers_accepted", "gpu_scratch", name="stage_node")
    ) == [
        "node stage_node would save pii data from customers_accepted into cloud-zone dataset gpu_scratch"
    ]
