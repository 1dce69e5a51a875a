"""Roles and identities: deny by default, one enforcement function, denials audited."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bankplatform.errors import BankplatformError
from bankplatform.keyservice.audit_log import AuditLog
from bankplatform.keyservice.decisions import enforce
from bankplatform.keyservice.local_kms import LocalKeyring
from bankplatform.project import env_config_loader
from bankplatform.security.policy import (
    AccessDenied,
    AccessPolicy,
    Action,
    IdentityError,
    Principal,
)
from bankplatform.security.runtime import WorkspaceSecurity, open_security
from bankplatform.security.settings import load_access_policy, load_security_settings
from tests.conftest import REPO, make_workspace

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
    # Monitoring may put the previous champion back, never promote a new one.
    assert holders_of[Action.ROLLBACK_MODEL] == {
        "model_risk_officer",
        "monitoring_service",
    }
    assert holders_of[Action.CLOSE_REVIEW] == {"model_validator", "model_risk_officer"}
    assert holders_of[Action.MONITOR_MODEL] == {"monitoring_service"}
    assert policy.pipelines["monitoring"].service == "svc-monitoring"
    assert holders_of[Action.ISSUE_TOKENS] == {"platform_admin"}
    assert policy.pipelines["ingestion"].service == "svc-ingestion"
    # Starting ingestion (and so reading raw PII through it) is a data engineer's.
    assert policy.pipelines["ingestion"].run_by == ["data_engineer"]
    assert not any(
        set(roles) & policy.service_roles() for roles in policy.users.values()
    )


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


def test_a_node_acts_as_its_pipelines_service_only_for_who_may_run_it(
    policy: AccessPolicy,
) -> None:
    erin, dana = policy.user("erin.engineer"), policy.user("dana.scientist")
    service = policy.delegate(erin, "ingestion")
    assert (service.name, service.on_behalf_of, service.source) == (
        "svc-ingestion",
        "erin.engineer",
        "service",
    )
    assert policy.permits(service, Action.READ_PII)
    assert policy.delegate(dana, "features").name == "svc-features"
    with pytest.raises(
        AccessDenied, match="dana.scientist .* may not run pipeline ingestion"
    ):
        policy.delegate(dana, "ingestion")
    with pytest.raises(IdentityError, match="pipeline 'reporting' is not declared"):
        policy.delegate(dana, "reporting")


def test_a_policy_naming_unknown_roles_or_services_is_refused() -> None:
    with pytest.raises(ValidationError, match="user eve has unknown role\\(s\\) root"):
        AccessPolicy.model_validate({"roles": {"a": []}, "users": {"eve": ["root"]}})
    with pytest.raises(
        ValidationError, match="pipeline ingestion runs as unknown service svc-x"
    ):
        AccessPolicy.model_validate(
            {
                "roles": {},
                "pipelines": {"ingestion": {"service": "svc-x", "run_by": []}},
            }
        )
    with pytest.raises(ValidationError, match="user eve holds service role\\(s\\) svc"):
        AccessPolicy.model_validate(
            {
                "roles": {"svc": []},
                "users": {"eve": ["svc"]},
                "services": {"s": ["svc"]},
            }
        )
    with pytest.raises(ValidationError, match="Input should be 'run_pipeline'"):
        AccessPolicy.model_validate({"roles": {"a": ["fly"]}})


def _security(root: Path, env: str) -> WorkspaceSecurity:
    return open_security(env_config_loader(root, env), root, env)


@pytest.mark.parametrize(
    ("env", "variables", "expected"),
    [
        ("local", {}, "local-developer"),
        ("local", {"BANKPLATFORM_USER": "audrey.auditor"}, "audrey.auditor"),
        ("test", {"BANKPLATFORM_USER": "dana.scientist"}, "dana.scientist"),
    ],
)
def test_developer_envs_take_the_user_variable(
    monkeypatch: pytest.MonkeyPatch,
    service_workspace: Path,
    env: str,
    variables: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.delenv("BANKPLATFORM_USER", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    principal = _security(service_workspace, env).starter()
    assert (principal.name, principal.source) == (expected, "user")


@pytest.mark.parametrize(
    ("env", "user", "expected"),
    [
        (
            "local",
            "mallory",
            "user 'mallory' is not declared in security.yml (access.users)",
        ),
        # prod's keys are elsewhere (.bankplatform-prod/): no developer key opens it.
        ("prod", "paul.admin", "no master key: set BANKPLATFORM_MASTER_KEY or run"),
    ],
)
def test_identity_is_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
    service_workspace: Path,
    env: str,
    user: str | None,
    expected: str,
) -> None:
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.delenv("BANKPLATFORM_USER", raising=False)
    if user:
        monkeypatch.setenv("BANKPLATFORM_USER", user)
    with pytest.raises(BankplatformError) as caught:
        _security(service_workspace, env).starter()
    assert str(caught.value).startswith(expected)


def test_a_bad_token_is_refused_even_in_local(
    monkeypatch: pytest.MonkeyPatch, service_workspace: Path
) -> None:
    monkeypatch.setenv("BANKPLATFORM_TOKEN", "not.a.token")
    monkeypatch.setenv("BANKPLATFORM_USER", "local-developer")  # a token wins
    with pytest.raises(IdentityError, match="^token rejected: "):
        _security(service_workspace, "local").starter()


def test_prod_has_its_own_keyring_issuer_and_audience() -> None:
    """Finding 2: a token minted in a developer env is worthless in prod."""
    local = load_security_settings(env_config_loader(REPO, "local"), REPO, "local")
    prod = load_security_settings(env_config_loader(REPO, "prod"), REPO, "prod")
    assert (local.trust_domain, prod.trust_domain) == ("developer", "production")
    assert local.keyring.parent != prod.keyring.parent
    assert local.audit_log != prod.audit_log
    assert (prod.token_issuer, prod.token_audience) != (
        local.token_issuer,
        local.token_audience,
    )
    assert prod.keyservice_socket != local.keyservice_socket
    assert prod.token_max_ttl_minutes <= local.token_max_ttl_minutes


def test_a_production_workspace_needs_a_token_whatever_the_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Finding 2: `--env test` cannot lower what the manifest imposes."""
    root = make_workspace(tmp_path / "workspace")
    manifest = root / ".kedro.yml"
    manifest.write_text(manifest.read_text() + "production: true\n")
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.setenv("BANKPLATFORM_USER", "local-developer")
    with pytest.raises(IdentityError) as caught:
        _security(root, "test").starter()
    # The service of a production workspace writes no local session credential.
    assert str(caught.value) == (
        "env test needs a signed token in $BANKPLATFORM_TOKEN; "
        "an admin issues one with `bankplatform token issue`"
    )
    assert not (root / ".bankplatform" / "keyservice-test.session").exists()
