"""The package stage: how long packaging the demo model takes, how long the scoring
service's bundle check takes at start, and how big a bundle is.

On a governed workspace (5k customers, ``kedro run --env test``, version 1 approved
and promoted: ``scoring_service.governed_workspace``), in-process, medians:

- package: ``lifecycle.package`` (gather the files, the key service checks them
  against the audit log, writes the provenance, signs with model-signing, keeps
  the bundle). Baseline: downloading the model's files from MLflow and hashing them,
  the least any packaging does.
- verification at service start: fetch the bundle from the key service, unpack it,
  verify the signature over every file, hash the model files. Baseline: what the
  service did before bundles (download from MLflow, hash). Target (issue 24): < 1 s.
- the whole load (verification and MLflow's pyfunc load) against the old load.
- the bundle's size, and the model files' share of it.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring_service import governed_workspace

MODEL = "credit_default_pd"


def _median_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm: imports, connections
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(quick: bool = False) -> None:
    """Run the package-stage benchmark and print its figures."""
    repeats = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="bankplatform-bench-bundles-") as folder:
        root = governed_workspace(Path(folder))
        os.chdir(root)
        os.environ["BANKPLATFORM_USER"] = "victor.validator"
        os.environ.pop("BANKPLATFORM_TOKEN", None)
        import mlflow
        import mlflow.artifacts
        import mlflow.pyfunc
        from mlflow.tracking import MlflowClient

        from bankplatform.governance import lifecycle
        from bankplatform.project import env_config_loader
        from bankplatform.security.bundles import unpack, verify_bundle
        from bankplatform.security.runtime import open_security
        from bankplatform.serving.models import load_served, servable_version
        from bankplatform.training.registry import artefact_sha256

        uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        security = open_security(env_config_loader(root, "test"), root, "test")
        g = lifecycle.Governed(client, security, security.starter(), root, MODEL)
        records = list(security.audit_log().records(resource=f"model:{MODEL}/"))
        servable = servable_version(client, MODEL, "champion", records)
        if servable is None:
            raise SystemExit("the workspace has no champion")
        bundles = security.bundles()

        def download_and_hash() -> str:
            with tempfile.TemporaryDirectory() as scratch:
                local = mlflow.artifacts.download_artifacts(
                    f"models:/{MODEL}/1", dst_path=scratch
                )
                return artefact_sha256(Path(local))

        def verify() -> str:
            with tempfile.TemporaryDirectory() as scratch:
                verified = verify_bundle(
                    unpack(bundles.archive(servable.bundle_digest), Path(scratch)),
                    bundles.public_key(),
                )
                return artefact_sha256(verified.model_folder)

        def old_load() -> object:
            with tempfile.TemporaryDirectory() as scratch:
                local = mlflow.artifacts.download_artifacts(
                    f"models:/{MODEL}/1", dst_path=scratch
                )
                artefact_sha256(Path(local))
                return mlflow.pyfunc.load_model(local)

        packaged = lifecycle.package(g, 1)
        if packaged["digest"] != servable.bundle_digest:
            raise SystemExit(
                "packaging again gave another digest than the approved one"
            )
        baseline = _median_seconds(download_and_hash, repeats)
        package = _median_seconds(lambda: lifecycle.package(g, 1), repeats)
        check = _median_seconds(verify, repeats)
        load = _median_seconds(
            lambda: load_served(MODEL, servable, "champion", records, bundles), repeats
        )
        before = _median_seconds(old_load, repeats)
        sizes = _sizes(
            root / ".bankplatform" / "bundles" / servable.bundle_digest / "bundle"
        )
    _report(sizes, baseline, package, check, load, before)


def _sizes(bundle: Path) -> tuple[int, int, int]:
    files = [p for p in bundle.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    model = sum(p.stat().st_size for p in files if "/model/" in p.as_posix())
    return len(files), size, model


def _report(
    sizes: tuple[int, int, int],
    baseline: float,
    package: float,
    check: float,
    load: float,
    before: float,
) -> None:
    count, size, model = sizes
    print(
        f"bundle: {count} files, {size:,} bytes ({model:,} bytes of model files, {model / size:.0%})"
    )
    print(
        f"baseline (download the model from MLflow and hash it): {baseline * 1000:.1f} ms"
    )
    print(
        f"package (files, key service checks, provenance, signature, store): {package * 1000:.1f} ms  ratio {package / baseline:.1f}x"
    )
    print(
        f"verification at service start (fetch, unpack, signature, hash): {check * 1000:.1f} ms  ratio {check / baseline:.2f}x  target < 1000 ms: {'met' if check < 1 else 'MISSED'}"
    )
    print(
        f"load from the bundle (verification + pyfunc load): {load * 1000:.1f} ms; before bundles (download, hash, pyfunc load): {before * 1000:.1f} ms  ratio {load / before:.2f}x"
    )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
