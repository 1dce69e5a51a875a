"""Training through a real two-node Ray cluster against plain `xgboost.train`.

The production profile's path: `ray start --head` plus a second `ray start
--address` on this machine, TLS on every link and token authentication (as
`conf/prod` runs), `RAY_ADDRESS` pointing at the head, and `train_credit_model`
with two workers of one CPU each, so Ray Train's xgboost collective spans both
nodes. Baseline, in the same process and run: plain `xgboost.train` with two
threads (the same two cores), the same 1M rows x 40 features, out-of-time
split, parameters and rounds. Medians of 3, alternating.

The measuring process is a child started with the cluster's environment (Ray
reads its TLS settings when it connects).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import training_on_ray

REPEATS = 3
BIN = Path(sys.executable).parent


def _cluster_environment(folder: Path) -> dict[str, str]:
    from ray._private import services

    from bankplatform.security.tls import issue_certificate, local_ca

    # Ray's command line advertises this host's address: the certificate names it.
    hosts = ["127.0.0.1", "localhost", str(services.get_node_ip_address())]
    ca = local_ca(folder)
    cert, key = issue_certificate(ca, folder / "ray.crt", folder / "ray.key", hosts)
    return {
        **os.environ,
        "PYTHONOPTIMIZE": "1",
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": str(cert),
        "RAY_TLS_SERVER_KEY": str(key),
        "RAY_TLS_CA_CERT": str(ca.cert_file),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }


def _start(environment: dict[str, str], temp_dir: Path, port: int) -> None:
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    common += ["--disable-usage-stats", "--temp-dir", str(temp_dir)]
    head = ["--head", "--port", str(port), "--include-dashboard", "false"]
    for role in (head, ["--address", f"127.0.0.1:{port}"]):
        subprocess.run(
            [str(BIN / "ray"), "start", *role, *common],
            env=environment,
            capture_output=True,
            check=True,
            timeout=180,
        )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _measure(rows: int, rounds: int) -> dict[str, list[float]]:
    """In the child: plain and through the cluster, alternately."""
    from bankplatform.training.train import train_credit_model

    frame = training_on_ray.synthetic_frame(rows)
    parameters = training_on_ray._parameters(rounds).model_copy(
        update={"workers": 2, "cpus_per_worker": 1, "require_cluster": True}
    )
    times: dict[str, list[float]] = {"plain": [], "cluster": [], "nodes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(REPEATS):
            times["plain"].append(training_on_ray._plain(frame, parameters))
            started = time.perf_counter()
            trained = train_credit_model(
                frame,
                training_on_ray.FEATURES,
                parameters,
                Path(tmp) / str(attempt),
                training_on_ray.ANY_AUC,
            )
            times["cluster"].append(time.perf_counter() - started)
            assert trained.api == "ray_train"  # noqa: S101 - the path measured
            times["nodes"].append(float(trained.metrics["ray_nodes"]))
    return times


def main(quick: bool = False) -> None:
    """Start the two-node cluster, measure in a child process, stop the cluster."""
    rows, rounds = (100_000, 30) if quick else (1_000_000, 100)
    folder = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    environment = _cluster_environment(folder)
    port = _free_port()
    try:
        _start(environment, folder / "ray", port)  # before RAY_ADDRESS is set
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(rows), str(rounds)],
            env={**environment, "RAY_ADDRESS": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        times = json.loads(done.stdout.strip().splitlines()[-1])
    finally:  # `ray stop` stops every Ray of this user: run benchmarks alone
        subprocess.run(
            [str(BIN / "ray"), "stop", "--force"],
            env=environment,
            capture_output=True,
            check=False,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)
    plain, cluster = (
        statistics.median(times["plain"]),
        statistics.median(times["cluster"]),
    )
    print(
        f"  {rows:,} rows x {len(training_on_ray.FEATURES)} features, {rounds} rounds, "
        f"median of {REPEATS}; two nodes of 1 CPU on this machine, TLS and token auth"
    )
    print(f"  plain xgboost.train (2 threads):            {plain:6.2f} s")
    print(
        f"  through the cluster (2 workers, {min(times['nodes']):.0f} nodes): {cluster:6.2f} s"
    )
    print(f"  ratio cluster / plain: {cluster / plain:.2f}x")


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    print(json.dumps(_measure(int(sys.argv[2]), int(sys.argv[3]))))
