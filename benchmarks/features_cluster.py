"""The snapshots step as Ray Data tasks on a two-node cluster against the local path.

A fresh workspace generates and ingests its extract (100k customers; `--quick`:
5k), then runs `kedro run --pipelines features --nodes build_customer_features_node`
alternately with `features.engine: local` (the baseline: one process, a chunk of
customers at a time) and `features.engine: ray` on a two-node cluster started on
this machine as `conf/prod` runs it (`ray start --head` plus `ray start --address`,
one CPU each, TLS and token authentication), each run in its own process.
Measured: the node's own seconds (its lineage metric), the process's wall time and
peak RSS (the driver's only on the cluster: the workers are the cluster's), and
that both write the same table. Medians of 3.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

import scale
import training_cluster

REPEATS = 3
NODE = "build_customer_features_node"
TABLE = "data/04_feature/customer_features.parquet"


def _engine(folder: Path, engine: str) -> None:
    """The whole ``features`` section in ``conf/local`` (a partial one would replace it)."""
    base = yaml.safe_load((folder / "conf/base/parameters_features.yml").read_text())
    base["features"].update(engine=engine, require_cluster=engine == "ray")
    (folder / "conf/local/parameters_features.yml").write_text(yaml.safe_dump(base))


def _node_seconds(folder: Path) -> float:
    with sqlite3.connect(folder / "mlflow.db") as db:
        ((value,),) = db.execute(
            "SELECT value FROM metrics WHERE key = ? ORDER BY timestamp DESC LIMIT 1",
            (f"node_seconds.{NODE}",),
        ).fetchall()
    return float(value)


def _step(folder: Path, engine: str, environment: dict[str, str]) -> list[float]:
    _engine(folder, engine)
    command = ["kedro", "run", "--pipelines", "features", "--nodes", NODE]
    seconds, peak = scale._run(folder, command, environment)
    return [_node_seconds(folder), seconds, peak]


def main(quick: bool = False) -> None:
    """Workspace, cluster, alternating runs, medians and the ratio."""
    customers = 5_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-features-ray-") as tmp:
        folder = Path(tmp) / "workspace"
        folder.mkdir()
        found = scale._workspace(folder, customers)
        scale._run(folder, ["kedro", "run", "--pipelines", "ingestion"])
        # Ray's socket paths must stay short: its folder goes right under /tmp.
        cluster = Path(tempfile.mkdtemp(prefix="rb-"))
        environment = training_cluster._cluster_environment(cluster)
        port = training_cluster._free_port()
        runs: dict[str, list[list[float]]] = {"local": [], "ray": []}
        try:
            training_cluster._start(environment, cluster / "ray", port)
            on_cluster = {**environment, "RAY_ADDRESS": f"127.0.0.1:{port}"}
            for _ in range(REPEATS):
                runs["local"].append(_step(folder, "local", environment))
                local = pq.read_table(folder / TABLE)
                runs["ray"].append(_step(folder, "ray", on_cluster))
                same = pq.read_table(folder / TABLE).equals(local)
        finally:  # `ray stop` stops every Ray of this user: run benchmarks alone
            subprocess.run(
                [str(scale.BIN / "ray"), "stop", "--force"],
                env=environment,
                capture_output=True,
                check=False,
                timeout=120,
            )
            shutil.rmtree(cluster, ignore_errors=True)
    median = {
        engine: [statistics.median(r[i] for r in rows) for i in range(3)]
        for engine, rows in runs.items()
    }
    print(
        f"  {customers:,} customers ({found['transactions']:,.0f} transactions), "
        f"median of {REPEATS}, alternating; the same table written: {same}"
    )
    labels = {
        "local": "local path (one process)",
        "ray": "Ray Data, two nodes of 1 CPU",
    }
    for engine, (node, wall, peak) in median.items():
        print(
            f"    {labels[engine]:<30} node {node:7.1f} s   process {wall:7.1f} s   "
            f"{peak:7,.0f} MiB peak RSS (driver)"
        )
    print(
        f"  ratio Ray Data / local: node time {median['ray'][0] / median['local'][0]:.2f}x, "
        f"driver peak RSS {median['ray'][2] / median['local'][2]:.2f}x"
    )
