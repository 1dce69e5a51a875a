"""Data residency rules on real Kedro pipelines: pii never reaches the cloud zone."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from bankplatform.project import env_config_loader
from bankplatform.security.hooks import catalog_metadata
from bankplatform.security.residency import residency_violations
from tests.conftest import REPO

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


def test_pii_through_an_unclassified_in_memory_dataset_is_still_pii() -> None:
    """Finding 9: a memory dataset between the pii table and a cloud node."""
    found = _violations(
        Node(_identity, "customers_accepted", "scratch", name="copy_node"),
        Node(_identity, "scratch", "model", name="burst_node", tags="cloud"),
    )
    assert found == ["node burst_node is tagged cloud and reads pii dataset(s) scratch"]


def test_an_object_store_path_is_the_cloud_zone_whatever_the_label() -> None:
    entries = {
        **METADATA,
        "exported": {
            "zone": "on_prem",
            "classification": "pii",
            "filepath": "s3://bank-exports/customers.parquet",
        },
    }
    found = residency_violations(
        Pipeline(
            [Node(_identity, "customers_accepted", "exported", name="export_node")]
        ),
        lambda n: entries.get(n, {}),
    )
    assert found == [
        "dataset exported is classified pii but placed in the cloud zone (s3://bank-exports/customers.parquet)",
        "node export_node would save pii data from customers_accepted into cloud-zone dataset exported",
    ]


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("ray://gpu-burst.cloud.example:10001", True),
        ("10.1.2.3:6379", True),
        ("127.0.0.1:6379", False),
        ("local", False),
        (None, False),
    ],
)
def test_a_ray_node_on_a_remote_cluster_may_not_read_pii(
    address: str | None, refused: bool
) -> None:
    pipeline = Pipeline(
        [Node(_identity, "customers_accepted", "model", name="train_node", tags="ray")]
    )
    found = residency_violations(pipeline, lambda n: METADATA.get(n, {}), address)
    assert bool(found) is refused
    if refused:
        assert found == [
            f"node train_node runs on the Ray cluster at {address} and reads pii dataset(s) customers_accepted"
        ]


@pytest.mark.parametrize(
    "env",
    sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir()),
)
def test_the_shipped_pipelines_burst_to_the_cloud_without_pii(env: str) -> None:
    """The registered pipelines, with each env's resolved catalog: only training
    is tagged cloud, and no pipeline moves pii there."""
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(REPO)
    from bankplatform.pipeline_registry import register_pipelines

    conf = env_config_loader(REPO, env)["catalog"]
    # The entries' secrets are not needed to place them: empty stand-ins.
    names = {
        e["credentials"]
        for e in conf.values()
        if isinstance(e, dict) and "credentials" in e
    }
    catalog = DataCatalog.from_config(conf, credentials={name: {} for name in names})

    def metadata(name: str) -> dict[str, Any]:
        return catalog_metadata(catalog, name)

    pipelines = register_pipelines()
    default = pipelines["__default__"]
    assert [n.name for n in default.nodes if "cloud" in n.tags] == [
        "train_credit_default_model_node"
    ]
    assert {
        name: residency_violations(p, metadata) for name, p in pipelines.items()
    } == {name: [] for name in pipelines}
    # The check sees the catalog's pii: the same pipeline all tagged cloud is refused.
    everywhere = Pipeline([n.tag("cloud") for n in default.nodes])
    refused = residency_violations(everywhere, metadata)
    assert (
        "node check_customers_contract_node is tagged cloud and reads pii dataset(s) customers_raw"
        in refused
    )
