"""Every env reads the host's secrets from conf/local, and only credentials."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

from bankplatform.config_loader import WorkspaceConfigLoader

pytestmark = pytest.mark.unit


def _conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    for env in ("base", "local", "prod"):
        (conf / env).mkdir(parents=True)
    (conf / "local" / "credentials.yml").write_text(
        yaml.safe_dump(
            {
                "feast_stores": {"registry_password": "${oc.env:TEST_REGISTRY_SECRET}"},
                "mlflow_tracking": {"MLFLOW_TRACKING_USERNAME": "from-local"},
            }
        )
    )
    (conf / "local" / "catalog.yml").write_text(
        yaml.safe_dump({"scratch": {"type": "x"}})
    )
    (conf / "base" / "catalog.yml").write_text(yaml.safe_dump({"a": {"type": "y"}}))
    return conf


def test_an_env_gets_the_host_s_credentials_and_its_own_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _conf(tmp_path)
    value = secrets.token_hex(8)
    monkeypatch.setenv("TEST_REGISTRY_SECRET", value)
    prod = WorkspaceConfigLoader(conf_source=str(conf), env="prod", base_env="base")
    assert prod["credentials"] == {
        "feast_stores": {"registry_password": value},
        "mlflow_tracking": {"MLFLOW_TRACKING_USERNAME": "from-local"},
    }
    (conf / "prod" / "credentials.yml").write_text(
        yaml.safe_dump({"mlflow_tracking": {"MLFLOW_TRACKING_USERNAME": "from-prod"}})
    )
    prod = WorkspaceConfigLoader(conf_source=str(conf), env="prod", base_env="base")
    assert prod["credentials"]["mlflow_tracking"] == {
        "MLFLOW_TRACKING_USERNAME": "from-prod"
    }
    # Nothing else of conf/local leaks into another env.
    assert prod["catalog"] == {"a": {"type": "y"}}
