"""Roles and identities: deny by default, one enforcement function, denials audited."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bankplatform.project import env_config_loader
from bankplatform.security.audit import AuditLog
from bankplatform.security.kms import LocalKeyring, create_master_key_file
from bankplatform.security.policy import (
    AccessDenied,
    AccessPolicy,
    Action,
    IdentityError,
    Principal,
    enforce,
)
from bankplatform.security.runtime import WorkspaceSecurity, open_security
from bankplatform.security.settings import load_access_policy
from tests.conftest import REPO

pytestmark = pytest.mark.unit


@pytest.fixture
def policy() -> AccessPolicy:
    return load_access_policy(env_config_loader(REPO, "local"))


def test_the_shipped_roles_follow_design(policy: AccessPolicy) -> None:
    assert set(policy.roles) >= {
        "data_scientist",
        "model_validator",
        "model_risk_officer",
        "platform_admin",
        "scoring_client",
        "auditor",
    }
    holders_of = {
        action: {role for role, actions in policy.roles.items() if action in actions}
        for action in Action
    }
    # Raw PII: the ingestion service only.
    assert holders_of[Action.READ_PII] == {"ingestion_service"}
    assert holders_of[Action.SCORE] == {"scoring_client"}
    assert holders_of[Action.APPROVE_MODEL] == {"model_validator"}
    assert holders_of[Action.PROMOTE_MODEL] == {"model_risk_officer"}
    assert holders_of[Action.ISSUE_TOKENS] == {"platform_admin"}
    assert policy.pipelines["ingestion"] == "svc-ingestion"


def test_deny_by_default_and_every_decision_is_audited(
    policy: AccessPolicy, tmp_path: Path
) -> None:
    ring = LocalKeyring(tmp_path / "keyring.json", os.urandom(32))
    ring.initialise()
    log = AuditLog(tmp_path / "audit.jsonl", ring)
    dana = policy.user("dana.scientist")
    enforce(policy, dana, Action.RUN_PIPELINE, "pipeline:ingestion", log)
    with pytest.raises(AccessDenied) as caught:
        enforce(policy, dana, Action.READ_PII, "dataset:customers_raw", log)
    assert str(caught.value) == (
        "access denied: dana.scientist (roles: data_scientist) may not read_pii on dataset:customers_raw"
    )
    nobody = Principal("ghost", frozenset({"no_such_role"}), "token")
    for action in Action:
        assert not policy.permits(nobody, action)
    first, second = log.records()
    assert (first["action"], first["outcome"]) == ("run_pipeline", "allowed")
    assert (second["actor"], second["action"], second["outcome"]) == (
        "dana.scientist",
        "read_pii",
        "denied",
    )
    assert log.verify().ok


def test_a_node_acts_as_its_pipelines_service(policy: AccessPolicy) -> None:
    dana = policy.user("dana.scientist")
    service = policy.service_for({"ingestion"}, dana)
    assert (service.name, service.on_behalf_of, service.source) == (
        "svc-ingestion",
        "dana.scientist",
        "service",
    )
    assert policy.permits(service, Action.READ_PII)
    assert policy.service_for({"reporting"}, dana) is dana


def test_a_policy_naming_unknown_roles_or_services_is_refused() -> None:
    with pytest.raises(ValidationError, match="user eve has unknown role\\(s\\) root"):
        AccessPolicy.model_validate({"roles": {"a": []}, "users": {"eve": ["root"]}})
    with pytest.raises(
        ValidationError, match="pipeline ingestion runs as unknown service svc-x"
    ):
        AccessPolicy.model_validate({"roles": {}, "pipelines": {"ingestion": "svc-x"}})
    with pytest.raises(ValidationError, match="Input should be 'run_pipeline'"):
        AccessPolicy.model_validate({"roles": {"a": ["fly"]}})


def _security(env: str) -> WorkspaceSecurity:
    return open_security(env_config_loader(REPO, "local"), REPO, env)


@pytest.mark.parametrize(
    ("env", "variables", "expected"),
    [
        ("local", {}, "local-developer"),
        ("local", {"BANKPLATFORM_USER": "audrey.auditor"}, "audrey.auditor"),
        ("test", {"BANKPLATFORM_USER": "dana.scientist"}, "dana.scientist"),
    ],
)
def test_developer_envs_take_the_user_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, variables: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.delenv("BANKPLATFORM_USER", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert _security(env).starter().name == expected


@pytest.mark.parametrize(
    ("env", "user", "expected"),
    [
        (
            "local",
            "mallory",
            "user 'mallory' is not declared in security.yml (access.users)",
        ),
        (
            "prod",
            "paul.admin",
            "env prod needs a signed token in $BANKPLATFORM_TOKEN ($BANKPLATFORM_USER counts only in envs local, test)",
        ),
        ("prod", None, "env prod needs a signed token in $BANKPLATFORM_TOKEN;"),
    ],
)
def test_identity_is_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, env: str, user: str | None, expected: str
) -> None:
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.delenv("BANKPLATFORM_USER", raising=False)
    if user:
        monkeypatch.setenv("BANKPLATFORM_USER", user)
    with pytest.raises(IdentityError) as caught:
        _security(env).starter()
    assert str(caught.value).startswith(expected)


def test_a_bad_token_is_refused_even_in_local(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    security = _security("local")
    master = tmp_path / "master.key"
    create_master_key_file(master)
    security.settings = security.settings.model_copy(
        update={"keyring": tmp_path / "keyring.json", "master_key_file": master}
    )
    security.key_service().initialise()
    monkeypatch.setenv("BANKPLATFORM_TOKEN", "not.a.token")
    monkeypatch.setenv("BANKPLATFORM_USER", "local-developer")  # a token wins
    with pytest.raises(IdentityError, match="^token rejected: "):
        security.starter()
