"""``WorkspaceContext``: an env read and validated once, and handed to a Kedro run's
nodes as the catalog's ``workspace``."""

from __future__ import annotations

import pickle
from pathlib import Path

import pydantic
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from bankplatform.context import CATALOG_ENTRY, WorkspaceContext, workspace_context

pytestmark = pytest.mark.unit


def test_the_context_holds_the_env_s_validated_settings(workspace_dir: Path) -> None:
    ctx = workspace_context(env="test", start=workspace_dir)
    base = yaml.safe_load((workspace_dir / "conf/base/governance.yml").read_text())
    test = yaml.safe_load((workspace_dir / "conf/test/governance.yml").read_text())
    assert ctx.root == workspace_dir
    assert (ctx.env, ctx.model_name) == ("test", "credit_default_pd")
    assert ctx.governance.protected_attributes == ["gender", "age_band"]
    expected_cut_off = (test.get("governance") or {}).get(
        "decision_cut_off", base["governance"]["decision_cut_off"]
    )
    assert ctx.governance.decision_cut_off == expected_cut_off
    assert ctx.tracking_uri == f"sqlite:///{workspace_dir / 'mlflow.db'}"
    assert ctx.serving.decision_log.is_absolute()
    assert ctx.serving.decision_log.is_relative_to(workspace_dir)
    assert ctx.security.env == "test"
    assert ctx.security.root == workspace_dir


def test_a_typo_in_a_setting_stops_the_context(workspace_dir: Path) -> None:
    governance = workspace_dir / "conf/test/governance.yml"
    text = yaml.safe_load(governance.read_text()) or {}
    text.setdefault("governance", {})["decison_cut_off"] = 0.2  # the typo
    governance.write_text(yaml.safe_dump(text))
    with pytest.raises(pydantic.ValidationError, match="decison_cut_off"):
        workspace_context(env="test", start=workspace_dir)


def test_a_kedro_session_s_nodes_get_the_same_context(workspace_dir: Path) -> None:
    bootstrap_project(workspace_dir)
    with KedroSession.create(project_path=workspace_dir, env="test") as session:
        context = session.load_context()
        given = context.catalog.load(CATALOG_ENTRY)
        again = context.catalog.load(CATALOG_ENTRY)
    assert isinstance(given, WorkspaceContext)
    assert given is again  # handed as it is, never copied
    assert (given.root, given.env) == (workspace_dir, "test")
    assert given == workspace_context(env="test", start=workspace_dir)


def test_the_context_pickles_without_its_open_client(workspace_dir: Path) -> None:
    # A ParallelRunner pickles every dataset of the catalog, the context included.
    ctx = workspace_context(env="test", start=workspace_dir)
    assert ctx.security.service() is ctx.security.service()  # opened and cached
    copy = pickle.loads(pickle.dumps(ctx))  # noqa: S301 - our own bytes
    assert copy == ctx
    assert copy.security.service() is not ctx.security.service()
