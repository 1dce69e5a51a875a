"""Run the benchmarks: `make bench`, or `python benchmarks/run.py [NAME ...] [--quick]`.

Each benchmark prints its measurements and a ratio against a baseline measured in
the same run (medians; these machines are noisy, so never one absolute time).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audit_log
import encrypted_parquet
import evidence_notebooks
import feature_snapshots
import feature_store
import features_cluster
import generation
import gpu_training
import ingestion
import key_service
import lineage_overhead
import model_bundles
import monitoring_drift
import online_load
import production_stores
import scale
import scoring_service
import streaming
import training_cluster
import training_on_ray
from bankplatform.third_party import quiet_third_party_warnings

BENCHMARKS = {
    "generation": generation.main,
    "ingestion": ingestion.main,
    "lineage": lineage_overhead.main,
    "audit": audit_log.main,
    "encryption": encrypted_parquet.main,
    "keyservice": key_service.main,
    "features": feature_store.main,
    "snapshots": feature_snapshots.main,
    "features_cluster": features_cluster.main,
    "training": training_on_ray.main,
    "training_cluster": training_cluster.main,
    "evidence": evidence_notebooks.main,
    "scoring": scoring_service.main,
    "bundles": model_bundles.main,
    "gpu": gpu_training.main,
    "monitoring": monitoring_drift.main,
    "prod": production_stores.main,
    "scale": scale.main,
    "stream": streaming.main,
    "online_load": online_load.main,
}


def main() -> None:
    """Parse the command line and run the chosen benchmarks in order."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, to check the code"
    )
    args = parser.parse_args()
    quiet_third_party_warnings()
    # The figures are the output; Kedro's per-dataset INFO lines would bury them.
    logging.getLogger("kedro").setLevel(logging.WARNING)
    for name in args.names or list(BENCHMARKS):
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        BENCHMARKS[name](quick=args.quick)
        print(f"== {name} done in {time.perf_counter() - started:.0f} s\n", flush=True)


if __name__ == "__main__":
    main()
