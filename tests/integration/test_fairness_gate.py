"""The fairness gate on real pipeline runs: with the generator's group bias on, the
gate fails and the version cannot be approved (off, it passes: see
test_evaluation_pipeline, which shares the unbiased workspace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import governed_extract, run_command
from tests.pipelines import run_in_memory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
MODEL = "credit_default_pd"
FAIRNESS_GATES = ("disparate_impact", "equal_opportunity")
GROUP_BIAS = 3.0


@pytest.fixture(scope="module")
def biased_workspace(
    tmp_path_factory: pytest.TempPathFactory, worker_ray: None
) -> Path:
    """The whole default pipeline, in this process, on 5k customers with a bias."""
    root = governed_extract(
        tmp_path_factory.mktemp("biased") / "workspace", group_bias=GROUP_BIAS
    )
    run_in_memory(root)
    return root


def _gates(root: Path) -> dict[str, dict[str, object]]:
    outcome = json.loads((root / "data/08_reporting/gate_outcome.json").read_text())
    return {g["name"]: g for g in outcome["gates"]}


def test_with_group_bias_the_fairness_gate_fails_and_blocks_approval(
    biased_workspace: Path,
) -> None:
    gates = _gates(biased_workspace)
    failed = [name for name in FAIRNESS_GATES if not gates[name]["passed"]]
    assert failed, {name: gates[name]["value"] for name in FAIRNESS_GATES}
    assert "gender" in str(gates[failed[0]]["detail"])
    client = MlflowClient(f"sqlite:///{biased_workspace / 'mlflow.db'}")
    version = client.get_model_version(MODEL, "1")
    assert version.tags["gate_status"] == "failed"
    assert failed[0] in version.tags["gate.failed"].split(",")
    result = run_command(
        ["bankplatform", "model", "approve", MODEL, "1", "--env", "test"],
        biased_workspace,
        extra_env={"BANKPLATFORM_USER": "victor.validator"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        "Error: gates failed for version 1 (failed: "
    )
    assert failed[0] in result.stderr
