"""The package stage on a real workspace: a validator's approval packages the
version into a bundle the key service signs (OpenSSF model-signing), the promotion
names the same digest, the bundle verifies offline with OpenSSF's own tool, and the
scoring service's loader runs the bundle, never the shared ``mlruns/`` files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bankplatform.security.policy import AccessDenied
from bankplatform.serving.models import load_served, servable_version
from tests.conftest import run_command
from tests.helpers import acting_as, audit_records, champion_workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "credit_default_pd"


@pytest.fixture(scope="module")
def workspace(
    governed_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The governed workspace with version 1 approved and promoted to champion."""
    return champion_workspace(governed_workspace, tmp_path_factory.mktemp("bundles"))


def _allowed(root: Path, action: str, version: int = 1) -> list[dict[str, Any]]:
    return [
        r
        for r in audit_records(root)
        if r["action"] == action
        and r["resource"] == f"model:{MODEL}/{version}"
        and r["outcome"] == "allowed"
    ]


def _package(root: Path, user: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_command(
        ["bankplatform", "model", "package", MODEL, "1", *extra, "--env", "test"],
        root,
        extra_env={"BANKPLATFORM_USER": user},
    )


def test_approval_and_promotion_name_one_signed_bundle_verified_offline(
    workspace: Path, tmp_path: Path
) -> None:
    """The package stage as CI runs it: the test workspace's bundle is built again
    (same inputs, same digest), exported and verified with OpenSSF's tool; what it
    holds is checked against the audit log and the lock."""
    (approval,) = _allowed(workspace, "model.approve")
    (promotion,) = _allowed(workspace, "model.promote")
    (registration,) = _allowed(workspace, "model.register")
    digest = approval["details"]["bundle_digest"]
    assert len(digest) == 64 and promotion["details"]["bundle_digest"] == digest

    out = tmp_path / "export"
    done = _package(workspace, "victor.validator", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"bundle sha256:{digest}" in done.stdout
    assert "the approval names this bundle" in done.stdout
    folder = out / digest / f"{MODEL}-v1"
    names = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    )
    for required in (
        "model/MLmodel",
        "model/pd_model.py",
        "model/artifacts/booster.ubj",
        "requirements.lock",
        "feature_service.json",
        "evidence/gate_report.json",
        "evidence/hashes.json",
        "sbom.cdx.json",
        "provenance.json",
    ):
        assert required in names, names
    assert (folder / "requirements.lock").read_bytes() == (
        workspace / "requirements.lock"
    ).read_bytes()

    # OpenSSF model-signing's own command verifies it with the exported public key.
    verify = [
        sys.executable,
        "-m",
        "model_signing",
        "verify",
        "key",
        "--signature",
        str(out / digest / "model.sig"),
        "--public_key",
        str(out / "bundle-signing.pub"),
        str(folder),
    ]
    checked = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    statement = json.loads(
        __import__("base64").b64decode(
            json.loads((out / digest / "model.sig").read_text())["dsseEnvelope"][
                "payload"
            ]
        )
    )
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["sha256"] == digest
    assert len(statement["predicate"]["resources"]) == len(names)

    # Provenance: the audit log's facts, not the registry's tags.
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["training"] == {
        "trainer": registration["details"]["trainer"],
        "registered_by": registration["actor"],
        "mlflow_run_id": registration["details"]["run_id"],
        "kedro_run_id": registration["details"]["kedro_run_id"],
    }
    assert provenance["approver"] == "victor.validator"
    assert (
        provenance["model"]["artefact_sha256"]
        == (registration["details"]["artefact_sha256"])
    )
    assert provenance["gates"]["status"] == "passed"
    inputs = provenance["lineage_as_recorded"]["inputs"]
    assert inputs and all(len(v) == 64 for v in inputs.values())
    assert (
        provenance["lineage_as_recorded"]["training_lock_sha256"]
        == (provenance["environment"]["requirements_lock_sha256"])
    )
    # The SBOM: CycloneDX 1.6, the model with its registered hash, every pin.
    sbom = json.loads((folder / "sbom.cdx.json").read_text())
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.6")
    model = sbom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [
        {"alg": "SHA-256", "content": registration["details"]["artefact_sha256"]}
    ]
    pins = [
        line
        for line in (workspace / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith(("#", " "))
    ]
    assert len(sbom["components"]) == len(pins)
    assert {"name": "xgboost"}.items() <= next(
        c for c in sbom["components"] if c["name"] == "xgboost"
    ).items()
    feature_service = json.loads((folder / "feature_service.json").read_text())
    assert feature_service["name"] == registration["details"]["feature_service"]
    assert (
        feature_service["version"] == registration["details"]["feature_service_version"]
    )

    # One byte changed in the exported copy: OpenSSF's tool refuses it.
    booster = folder / "model" / "artifacts" / "booster.ubj"
    booster.write_bytes(booster.read_bytes()[:-1] + b"\x00")
    refused = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert refused.returncode != 0


def test_only_a_validator_packages_and_each_refusal_is_audited(
    workspace: Path,
) -> None:
    for user, why in (
        ("dana.scientist", "may not package a model (needs approve_model)"),
        ("rita.riskofficer", "may not package a model (needs approve_model)"),
    ):
        done = _package(workspace, user)
        assert done.returncode == 1
        assert why in done.stderr and len(done.stderr.strip().splitlines()) == 1
        denied = [
            r
            for r in audit_records(workspace)
            if r["action"] == "model.package"
            and r["outcome"] == "denied"
            and r["actor"] == user
        ]
        assert denied and why in denied[-1]["details"]["reason"]


def test_a_swapped_champion_file_never_runs_and_scores_equal_the_registered_model(
    workspace: Path, tmp_path: Path
) -> None:
    """The first attack: a line appended to the champion's ``python_model.py`` in
    the shared ``mlruns/`` and a second registration with the new hash. The second
    registration is refused; the scoring service's loader runs the signed bundle,
    so the planted line never runs, and its scores equal the registered model's."""
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    registered = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    location = client.get_model_version_download_uri(MODEL, "1")
    shared = Path(location.removeprefix("file://")) / "pd_model.py"
    assert shared.is_file() and workspace in shared.parents, location
    marker = tmp_path / "planted-line-ran"
    shared.write_text(
        shared.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n"
    )
    # What the attack relied on: MLflow itself now runs the planted line.
    mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    assert marker.read_text() == "ran"
    marker.unlink()
    with acting_as(workspace, "dana.scientist") as security:
        from bankplatform.security.client import acting_for
        from bankplatform.security.runtime import granted_run

        with (
            granted_run(security, ["training"]),
            acting_for("training"),
            pytest.raises(AccessDenied, match="registered already"),
        ):
            security.audit_log().append(
                "model.register",
                f"model:{MODEL}/1",
                "allowed",
                {"trainer": "dana.scientist", "artefact_sha256": "0" * 64},
            )
    with acting_as(workspace, "victor.validator") as security:
        records = list(security.audit_log().records(resource=f"model:{MODEL}/"))
        servable = servable_version(client, MODEL, "champion", records)
        assert servable is not None and servable.version == 1
        served = load_served(MODEL, servable, "champion", records, security.bundles())
    assert not marker.exists()
    # The bounds the version was judged at travel in its signed gate report.
    assert served.judged_at == (0.15, 0.25)
    assert (
        served.bundle_digest
        == _allowed(workspace, "model.promote")[0]["details"]["bundle_digest"]
    )
    # 200 applicants: the book's customer features, loan terms varied.
    frame = pd.read_parquet(
        workspace / "data" / "04_feature" / "customer_features.parquet"
    ).head(200)
    design = served.model
    rows = np.arange(len(frame), dtype=float)
    inputs = pd.DataFrame(
        {
            name: pd.Series(
                [
                    design.categories[name][i % len(design.categories[name])]
                    for i in range(len(frame))
                ]
            )
            if name in design.categories
            else frame[name].astype("float64").to_numpy()
            if name in frame
            else 1_000.0 + 97.0 * rows
            for name in design.features
        }
    )
    expected = np.asarray(registered.predict(inputs), dtype=float)
    got = np.asarray(design.predict(None, inputs), dtype=float)
    assert got.shape == expected.shape == (200,)
    assert np.max(np.abs(got - expected)) <= 1e-12
