"""The workspace manifest: valid, missing and malformed `.kedro.yml`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bankplatform.errors import ManifestError
from bankplatform.manifest import ModelRiskTier, Regulation, load_manifest
from tests.conftest import REPO

pytestmark = pytest.mark.unit


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    shutil.copy(REPO / ".kedro.yml", tmp_path / ".kedro.yml")
    return tmp_path


def _rewrite(folder: Path, old: str, new: str) -> None:
    path = folder / ".kedro.yml"
    path.write_text(path.read_text().replace(old, new))


def test_the_shipped_manifest_is_valid() -> None:
    manifest = load_manifest(REPO)
    assert manifest.model_name == "credit_default_pd"
    assert manifest.model_risk_tier is ModelRiskTier.TIER_1
    assert Regulation.EU_AI_ACT_CREDIT in manifest.regulatory_scope
    assert manifest.default_kedro_env == "local"


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as error:
        load_manifest(tmp_path)
    assert (
        str(error.value) == f"{tmp_path / '.kedro.yml'}: workspace manifest not found"
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("model_risk_tier: tier_1", "model_risk_tier: tier_9", "model_risk_tier"),
        ("  - GDPR", "  - SR 11-7", "regulatory_scope.2"),
        (
            "owning_squad: retail-credit-risk-analytics",
            "owning_squad: Risk Team!",
            "owning_squad",
        ),
        (
            "default_kedro_env: local",
            "default_kedro_env: local\nmodel_tier: 1",
            "model_tier",
        ),
        ("workspace_id: retail-credit-default\n", "", "workspace_id"),
    ],
)
def test_an_invalid_field_is_named_in_one_line(
    manifest_dir: Path, old: str, new: str, field: str
) -> None:
    _rewrite(manifest_dir, old, new)
    with pytest.raises(ManifestError) as error:
        load_manifest(manifest_dir)
    message = str(error.value)
    assert f"field {field}:" in message
    assert "\n" not in message


def test_invalid_yaml_names_the_line(manifest_dir: Path) -> None:
    _rewrite(manifest_dir, "model_risk_tier: tier_1", "model_risk_tier: [tier_1")
    with pytest.raises(ManifestError, match=r"not valid YAML at line \d+$"):
        load_manifest(manifest_dir)


def test_a_list_instead_of_fields_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".kedro.yml").write_text("- a\n- b\n")
    with pytest.raises(ManifestError, match="expected a mapping of fields, got list"):
        load_manifest(tmp_path)
