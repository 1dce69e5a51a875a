"""Training and the features step through a real two-node Ray cluster with token
authentication and TLS on every link (`ray start --head` plus a second `ray start
--address`, each with one CPU): two Ray Train workers land on the two nodes; the
snapshots computed by Ray Data tasks equal the local path's; an env that requires
a cluster refuses to start a local Ray."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import command_env, copy_workspace, run_command
from tests.servers import RayClusterTLS, node_ip_address, start_ray_cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@dataclass
class Cluster:
    root: Path
    ray: RayClusterTLS


@pytest.fixture(scope="module")
def cluster(
    featured_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("ray_cluster") / "workspace"
    copy_workspace(featured_workspace, root)
    hosts = ["127.0.0.1", "localhost", node_ip_address()]
    made = run_command(
        ["bankplatform", "tls", "init", "--env", "test", "--service", "ray"]
        + [x for host in hosts for x in ("--host", host)],
        root,
    )
    assert made.returncode == 0, made.stderr
    # Two workers of one CPU each on a cluster that must exist: one per node.
    parameters = root / "conf/test/parameters_training.yml"
    training = yaml.safe_load(parameters.read_text())
    training["training"].update(workers=2, cpus_per_worker=1, require_cluster=True)
    parameters.write_text(yaml.safe_dump(training))
    # Snapshots as Ray Data tasks on the same cluster, never on a local Ray.
    features_file = root / "conf/test/parameters_features.yml"
    features = yaml.safe_load(features_file.read_text())
    features["features"].update(engine="ray", require_cluster=True)
    features_file.write_text(yaml.safe_dump(features))
    tls = root / ".bankplatform-tls"
    ray = start_ray_cluster(
        tls / "ray.crt", tls / "ray.key", tls / "ca.crt", command_env()
    )
    try:
        yield Cluster(root, ray)
    finally:
        ray.stop()


def test_the_cluster_speaks_tls_only(cluster: Cluster) -> None:
    host, port = cluster.ray.address.split(":")
    ca = cluster.root / ".bankplatform-tls/ca.crt"
    trust = ssl.create_default_context(cafile=str(ca))
    trust.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        trust.wrap_socket(raw, server_hostname=host) as secured,
    ):
        assert secured.version() in {"TLSv1.2", "TLSv1.3"}
    # gRPC in clear (the HTTP/2 preface) gets no answer but a closed connection.
    with socket.create_connection((host, int(port)), timeout=10) as plain:
        plain.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        try:
            answer = plain.recv(64)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x00\x00")  # no HTTP/2 frame came back


def test_training_runs_on_both_nodes_of_the_cluster(cluster: Cluster) -> None:
    done = run_command(
        ["kedro", "run", "--pipelines", "training", "--env", "test"],
        cluster.root,
        timeout=900,
        extra_env={**cluster.ray.environment, "RAY_ADDRESS": cluster.ray.address},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(
        (cluster.root / "data/08_reporting/training_report.json").read_text()
    )
    assert report["api"] == "ray_train"
    assert report["metrics"]["ray_nodes"] == 2.0
    assert 0.6 <= report["metrics"]["auc_out_of_time"] <= 0.93


def test_without_a_cluster_the_env_refuses_a_local_ray(cluster: Cluster) -> None:
    done = run_command(
        ["kedro", "run", "--pipelines", "training", "--env", "test"], cluster.root
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: run failed: this env computes on a Ray cluster only "
        "(training.require_cluster): set RAY_ADDRESS to the cluster's head"
    )


def test_the_features_step_runs_as_ray_data_tasks_on_the_cluster(
    cluster: Cluster,
) -> None:
    """The featured workspace computed its snapshots locally; recomputed by Ray
    Data tasks on the cluster (each opening the encrypted transactions itself,
    through the key service), the table written is the same."""
    table = cluster.root / "data/04_feature/customer_features.parquet"
    local = pq.read_table(table)
    done = run_command(
        [
            *("kedro", "run", "--pipelines", "features", "--env", "test"),
            *("--nodes", "build_customer_features_node"),
        ],
        cluster.root,
        timeout=600,
        extra_env={**cluster.ray.environment, "RAY_ADDRESS": cluster.ray.address},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    on_ray = pq.read_table(table)
    assert on_ray.num_rows == local.num_rows > 0
    assert on_ray.equals(local)
    assert "Traceback" not in done.stderr
