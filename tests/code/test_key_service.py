"""The key and audit service's boundary, over its real Unix socket: who may call,
whose name goes into the record, and what a client cannot switch off."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import shutil
import stat
import time
from pathlib import Path

import httpx
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from bankplatform.errors import BankplatformError
from bankplatform.keyservice.admin import PolicyChange
from bankplatform.project import env_config_loader
from bankplatform.security.client import act_for_node, acting_for, acting_pipeline
from bankplatform.security.envelope import key_context
from bankplatform.security.kms import KeyManagementError
from bankplatform.security.policy import AccessDenied
from bankplatform.security.runtime import (
    WorkspaceSecurity,
    acting_in_run,
    guard_dataset,
    open_security,
)
from tests.conftest import make_workspace

pytestmark = pytest.mark.unit


def _service_up(security: WorkspaceSecurity) -> None:
    """Start the service if it went idle: an uncached call (``starter()`` caches the
    identity, so it would not notice a service that stopped after its idle time)."""
    assert security.service().call("GET", "/v1/whoami")["name"] == "local-developer"


def _raw(security: WorkspaceSecurity) -> httpx.Client:
    _service_up(security)
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(security.settings.keyservice_socket)),
        base_url="http://keyservice",
    )


def test_every_route_but_healthz_needs_a_credential(
    workspace_security: WorkspaceSecurity,
) -> None:
    raw = _raw(workspace_security)
    assert raw.get("/healthz").json() == {"status": "ok", "env": "test"}
    for method, path in [
        ("GET", "/v1/whoami"),
        ("POST", "/v1/keys/unwrap"),
        ("POST", "/v1/audit/records"),
        ("GET", "/v1/audit/records"),
        ("POST", "/v1/tokens"),
    ]:
        answer = raw.request(method, path, json={})
        assert answer.status_code == 401, path
        assert answer.json() == {
            "error": "no credential: send a bearer token ($BANKPLATFORM_TOKEN)"
        }
    forged = raw.get("/v1/whoami", headers={"Authorization": "Local not-the-secret"})
    assert forged.status_code == 401
    assert (
        forged.json()["error"]
        == "local session credential does not match this key service"
    )


def test_the_socket_and_the_session_credential_are_the_owners_only(
    workspace_security: WorkspaceSecurity,
) -> None:
    _service_up(workspace_security)
    for path in (
        workspace_security.settings.keyservice_socket,
        workspace_security.settings.session_file,
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_record_names_the_proven_identity_not_the_one_sent(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    log = workspace_security.audit_log()
    # A caller that puts names of its choosing on the wire.
    written = workspace_security.service().call(
        "POST",
        "/v1/audit/records",
        {
            "actor": "victor.validator",
            "on_behalf_of": "rita.riskofficer",
            "action": "model.note",
            "resource": "model:credit_default_pd/1",
            "outcome": "allowed",
        },
    )
    mine = [
        r
        for r in log.records(resource="model:credit_default_pd/1")
        if r["seq"] == written["seq"]
    ]
    assert [(r["actor"], r["on_behalf_of"]) for r in mine] == [("dana.scientist", None)]


def test_a_data_scientist_reads_no_audit_log_and_appends_no_odd_actions(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    with pytest.raises(AccessDenied, match="may not read_audit_log on audit_log"):
        list(workspace_security.audit_log().records())
    with pytest.raises(AccessDenied, match="may not read_audit_log"):
        workspace_security.audit_log().verify()


def test_the_decision_comes_from_the_service_catalog_not_the_caller(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1/3: a dataset object without metadata (or a caller who says
    "unclassified") gets the service's decision for the catalog entry."""
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    with pytest.raises(AccessDenied, match="may not read_pii on dataset:customers_raw"):
        guard_dataset("customers_raw", "read")
    with pytest.raises(
        AccessDenied, match="not a pii or confidential dataset of the workspace catalog"
    ):
        guard_dataset("made_up_dataset", "read")
    guard_dataset("customer_features", "read")  # confidential: a data scientist's


def test_an_interrupted_run_leaves_no_service_identity_behind(
    workspace_security: WorkspaceSecurity,
) -> None:
    """Finding 8: KeyboardInterrupt is not an Exception, so no hook cleared the
    thread's service identity; it is honoured only while a Kedro task runs."""
    seen: list[str] = []

    def interrupted(value: int) -> int:
        act_for_node("ingestion")  # what AccessHook does for a node
        seen.append(acting_pipeline())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SequentialRunner().run(
            Pipeline([Node(interrupted, "x", "y", name="interrupted_node")]),
            DataCatalog({"x": MemoryDataset(1)}),
        )
    assert seen == ["ingestion"]
    assert acting_pipeline() == ""
    assert workspace_security.acting_principal().name == "local-developer"


def test_a_service_started_on_demand_stops_when_its_workspace_is_gone(
    tmp_path: Path,
) -> None:
    root = make_workspace(tmp_path / "workspace")
    security = open_security(env_config_loader(root, "test"), root, "test")
    assert security.starter().name == "local-developer"
    socket = security.settings.keyservice_socket
    assert socket.exists()
    shutil.rmtree(root / ".bankplatform")
    deadline = time.monotonic() + 10
    while socket.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not socket.exists()


def test_a_malformed_key_request_is_a_one_line_refusal(
    workspace_security: WorkspaceSecurity,
) -> None:
    keys = workspace_security.key_service()
    with acting_in_run("ingestion"), pytest.raises(KeyManagementError) as caught:
        keys.unwrap(1, b"\x00\x01\x02", key_context("customers_raw"))
    assert str(caught.value) == (
        "data key does not unwrap with key version 1 (wrong key, dataset or damaged)"
    )
    raw = _raw(workspace_security)
    answer = raw.post(
        "/v1/keys/unwrap",
        json={"dataset": "customers_raw", "version": "one", "wrapped": "x"},
        headers={
            "Authorization": f"Local {workspace_security.settings.session_file.read_text()}"
        },
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad request: version: Input should be a valid integer, unable to parse string as an integer"
    }


def test_only_the_holder_of_an_action_records_it_as_allowed(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody writes "approved" into the log for somebody else: an allowed record
    of a governed action needs that action, scoring records the scoring service."""
    log = workspace_security.audit_log()
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    with pytest.raises(AccessDenied, match="may not record allowed model.approve"):
        log.append("model.approve", "model:credit_default_pd/7", "allowed")
    with pytest.raises(AccessDenied, match="may not record denied scoring.request"):
        log.append_many([("scoring.request", "scoring", "denied", {})])
    # Her own refusal is hers to record; a validator's rejection is his.
    log.append("model.approve", "model:credit_default_pd/7", "denied")
    monkeypatch.setenv("BANKPLATFORM_USER", "victor.validator")
    log.append("model.reject", "model:credit_default_pd/7", "allowed")


def test_an_approval_names_a_bundle_the_service_packaged_and_nobody_writes_a_package(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validator's approval (a risk officer's promotion) names the digest of a
    bundle the key service signed for that very version; an allowed model.package
    record is the service's alone. Each refusal is audited."""
    log = workspace_security.audit_log()
    monkeypatch.setenv("BANKPLATFORM_USER", "victor.validator")
    for details in ({}, {"bundle_digest": "ab" * 32}):
        with pytest.raises(
            AccessDenied, match="names no bundle the key service packaged for it"
        ):
            log.append("model.approve", "model:credit_default_pd/8", "allowed", details)
    with pytest.raises(BankplatformError, match="written by the key service itself"):
        log.append(
            "model.package",
            "model:credit_default_pd/8",
            "allowed",
            {"bundle_digest": "ab" * 32},
        )
    monkeypatch.setenv("BANKPLATFORM_USER", "rita.riskofficer")
    with pytest.raises(
        AccessDenied, match="names no bundle the key service packaged for it"
    ):
        log.append(
            "model.promote",
            "model:credit_default_pd/8",
            "allowed",
            {"bundle_digest": "ab" * 32},
        )
    denied = [
        r
        for r in log.records(resource="model:credit_default_pd/8")
        if r["outcome"] == "denied"
    ]
    assert [r["action"] for r in denied] == [
        "model.approve",
        "model.approve",
        "model.promote",
    ]
    assert not any(
        r["action"] == "model.package"
        for r in log.records(resource="model:credit_default_pd/8")
    )


def test_a_version_is_registered_once_and_by_the_training_service_only(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data scientist holds register_model, but states a registration only as the
    training pipeline's service; a second registration of a version (a new artefact
    hash after approval) is refused, and both refusals are audited."""
    log = workspace_security.audit_log()
    resource = f"model:credit_default_pd/{time.time_ns()}"
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    with pytest.raises(
        AccessDenied,
        match=r"only the training service \(svc-training\) registers a model version, not dana.scientist",
    ):
        log.append("model.register", resource, "allowed", {"artefact_sha256": "a" * 64})
    with acting_in_run("training"):
        first = log.append(
            "model.register", resource, "allowed", {"artefact_sha256": "a" * 64}
        )
        with pytest.raises(AccessDenied, match="is registered already"):
            log.append(
                "model.register", resource, "allowed", {"artefact_sha256": "b" * 64}
            )
        with pytest.raises(BankplatformError, match="recorded alone, not in a batch"):
            log.append_many([("model.register", resource, "allowed", {})])
    monkeypatch.setenv("BANKPLATFORM_USER", "audrey.auditor")
    written = list(log.records(resource=resource))
    assert [(r["actor"], r["on_behalf_of"], r["outcome"]) for r in written] == [
        ("dana.scientist", None, "denied"),
        ("svc-training", "dana.scientist", "allowed"),
        ("svc-training", "dana.scientist", "denied"),
    ]
    assert written[1]["seq"] == first["seq"]
    assert written[1]["details"] == {"artefact_sha256": "a" * 64}
    assert written[2]["details"]["reason"] == (
        f"{resource} is registered already: a version is registered once"
    )


def test_a_batch_is_one_contiguous_run_of_records_and_the_chain_holds(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKPLATFORM_USER", "local-developer")
    log = workspace_security.audit_log()
    entries = [("note.batch", f"batch:{i}", "allowed", {"i": i}) for i in range(250)]
    first, last = log.append_many(entries)  # type: ignore[arg-type]
    assert last - first == 249
    written = [r for r in log.records(resource="batch:") if first <= r["seq"] <= last]
    assert [r["details"]["i"] for r in written] == list(range(250))
    assert {r["actor"] for r in written} == {"local-developer"}
    assert log.verify().ok


def test_a_service_verifies_client_tokens_only_with_verify_tokens(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from bankplatform.security.client import serve_as
    from bankplatform.security.policy import IdentityError
    from bankplatform.security.runtime import granted_run

    monkeypatch.setenv("BANKPLATFORM_USER", "local-developer")
    client_token, _ = workspace_security.tokens().issue(
        "origination-system", ["scoring_client"], timedelta(minutes=5)
    )
    with pytest.raises(AccessDenied, match="may not verify_tokens"):
        workspace_security.tokens().verify(client_token)
    monkeypatch.setattr("bankplatform.security.client._process_pipeline", "")
    # The scoring service's identity, started by an admin (with its run credential).
    with granted_run(workspace_security, ["scoring"]):
        serve_as("scoring")
        try:
            verdict = workspace_security.tokens().verify(client_token)
            with pytest.raises(IdentityError, match="signature does not verify"):
                workspace_security.tokens().verify(client_token[:-4] + "AAAA")
        finally:
            serve_as("")
    assert (verdict["name"], verdict["roles"], verdict["actions"]) == (
        "origination-system",
        ["scoring_client"],
        ["appeal_decision", "score"],
    )
    # Someone who may not start the scoring service gets no run credential for it.
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    with pytest.raises(AccessDenied, match="may not run pipeline scoring"):
        with granted_run(workspace_security, ["scoring"]):
            pass


def test_the_service_decides_from_its_installed_policy_not_the_workspace_conf(
    tmp_path: Path,
) -> None:
    """The first finding: a data scientist added read_pii to her role in the
    workspace's conf/ and restarted the service. The service decides from its own
    installed copy; the edit changes nothing until the keyholder installs it,
    which shows and audits every difference."""
    import yaml

    from bankplatform.keyservice.authority import KeyAuthority
    from tests.conftest import run_command

    root = make_workspace(tmp_path / "workspace")
    first = KeyAuthority(root, "test")  # first start: conf/'s policy installed
    dana = first.policy.user("dana.scientist")
    with pytest.raises(AccessDenied, match="may not read_pii"):
        first.dataset_access(dana, "customers_raw", "read")
    conf = root / "conf" / "base" / "security.yml"
    security = yaml.safe_load(conf.read_text())
    before = list(security["access"]["roles"]["data_scientist"])
    security["access"]["roles"]["data_scientist"].append("read_pii")
    conf.write_text(yaml.safe_dump(security))
    restarted = KeyAuthority(root, "test")
    with pytest.raises(AccessDenied, match="may not read_pii"):
        restarted.dataset_access(
            restarted.policy.user("dana.scientist"), "customers_raw", "read"
        )
    change = (
        f"access.roles.data_scientist: {json.dumps(before)} -> "
        f"{json.dumps([*before, 'read_pii'])}"
    )
    assert restarted.policy_status()["differences"] == [change]
    shown = run_command(["bankplatform", "keys", "policy", "--env", "test"], root)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"  {change}",
        "env test: conf/ differs from the installed policy in 1 place(s); "
        "`bankplatform keys policy --install` installs it "
        "(two people: a proposal, then a second admin's install)",
    ]
    # A tier 1 workspace: the first admin's install is a proposal of this exact
    # document; the same admin cannot complete it; a data scientist cannot either.
    install = ["bankplatform", "keys", "policy", "--env", "test", "--install"]
    proposed = run_command(install, root, extra_env={"BANKPLATFORM_USER": "paul.admin"})
    assert proposed.returncode == 0, proposed.stderr
    assert proposed.stdout.splitlines()[-1].startswith(
        "env test: proposed by paul.admin (sha256 "
    )
    again = run_command(install, root, extra_env={"BANKPLATFORM_USER": "paul.admin"})
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: paul.admin proposed this policy change; a second platform admin "
        "installs it (two people: the installed policy's tier asks for it)"
    )
    by_dana = run_command(
        install, root, extra_env={"BANKPLATFORM_USER": "dana.scientist"}
    )
    assert by_dana.returncode == 1
    assert by_dana.stderr.strip() == (
        "Error: dana.scientist (roles: data_scientist) may not manage_keys: "
        "installing a policy is a platform admin's"
    )
    restarted.refresh_policy()  # still the old copy in force
    with pytest.raises(AccessDenied, match="may not read_pii"):
        restarted.dataset_access(dana, "customers_raw", "read")
    installed = install_workspace_policy_as(root, "nora.admin")
    assert (installed.differences, installed.installed) == ([change], True)
    assert installed.proposed_by == "paul.admin"
    # The running service takes the installed copy up at its next request.
    restarted.refresh_policy()
    assert (
        restarted.dataset_access(
            restarted.policy.user("dana.scientist"), "customers_raw", "read"
        )
        == "pii"
    )
    records = [
        r
        for r in restarted.audit.records()
        if r["action"] in ("policy.install", "policy.propose")
    ]
    assert [
        (r["action"], r["actor"], r["outcome"], r["details"].get("initial", False))
        for r in records
    ] == [
        ("policy.install", "keyservice", "allowed", True),
        ("policy.propose", "paul.admin", "allowed", False),
        ("policy.install", "paul.admin", "denied", False),
        ("policy.install", "nora.admin", "allowed", False),
    ]
    assert records[-1]["details"]["differences"] == [change]
    assert records[-1]["details"]["proposed_by"] == "paul.admin"
    assert (
        records[-1]["details"]["sha256"]
        == records[1]["details"]["sha256"]
        == restarted.policy_status()["installed_sha256"]
    )
    # Lowering the tier in the manifest (the client's file) is itself a change
    # that takes two people: the installed copy's rule decides.
    manifest = root / ".kedro.yml"
    manifest.write_text(manifest.read_text().replace("tier_1", "tier_3"))
    lowered = install_workspace_policy_as(root, "paul.admin")
    assert (lowered.installed, lowered.installers) == (False, 2)
    assert lowered.differences == ['rules.model_risk_tier: "tier_1" -> "tier_3"']


def install_workspace_policy_as(root: Path, admin: str) -> PolicyChange:
    from bankplatform.keyservice.admin import install_workspace_policy

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BANKPLATFORM_USER", admin)
        patch.delenv("BANKPLATFORM_TOKEN", raising=False)
        return install_workspace_policy(root, "test", apply=True)


def test_a_client_sends_no_credential_to_a_listener_of_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second finding: someone put their own socket where the key service's
    should be. Before any credential goes out, the client checks who listens
    (SO_PEERCRED) against the key service's OS user, and refuses in one line; the
    impostor receives nothing."""
    import socket
    import threading

    from bankplatform.security.client import KeyServiceClient, KeyServiceUnavailable
    from bankplatform.security.settings import SecuritySettings

    path = tmp_path / "impostor.sock"
    received: list[bytes] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(1.0)
                try:
                    received.append(connection.recv(65536))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    settings = SecuritySettings(keyservice_socket=path).anchored(tmp_path, "test")
    settings = settings.model_copy(update={"keyservice_socket": path})
    client = KeyServiceClient(tmp_path, "test", settings)
    monkeypatch.setenv("BANKPLATFORM_TOKEN", "a-token-worth-stealing")
    monkeypatch.setenv("BANKPLATFORM_KEYSERVICE_USER", "nobody")
    me = getpass.getuser()
    with pytest.raises(KeyServiceUnavailable) as refused:
        client.call("GET", "/v1/whoami")
    assert str(refused.value) == (
        f"the socket {path} is served by {me} (uid {os.getuid()}), not the key "
        f"service's user nobody (uid {pwd.getpwnam('nobody').pw_uid}): no credential "
        "sent (set $BANKPLATFORM_KEYSERVICE_USER to the service's OS user on a shared host)"
    )
    listener.close()
    assert not any(b"a-token-worth-stealing" in chunk for chunk in received)


def test_a_service_identity_needs_the_run_credential_of_a_run_its_caller_started(
    workspace_security: WorkspaceSecurity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The third finding: whoever may start monitoring sent the pipeline header
    from a plain script and wrote svc-monitoring's records. The header alone now
    grants nothing: the key service grants a run credential when a run starts,
    bound to the run's pipelines and starter, and it ends with the run."""
    from bankplatform.security.runtime import granted_run

    log = workspace_security.audit_log()
    resource = f"monitoring:credit_default_pd/{time.time_ns()}"
    monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    with (
        acting_for("monitoring"),
        pytest.raises(
            AccessDenied, match="needs the run credential the key service grants"
        ),
    ):
        log.append("monitoring.action", resource, "allowed", {"action": "none"})
    with granted_run(workspace_security, ["monitoring"], "run-42") as credential:
        with acting_for("monitoring"):
            written = log.append(
                "monitoring.action", resource, "allowed", {"action": "none"}
            )
        with (
            acting_for("evaluation"),
            pytest.raises(
                AccessDenied, match="run run-42 was granted monitoring, not evaluation"
            ),
        ):
            log.append("model.evaluate", "model:credit_default_pd/9", "allowed", {})
        # The same credential in another person's hands grants nothing.
        monkeypatch.setenv("BANKPLATFORM_USER", "erin.engineer")
        with (
            acting_for("monitoring"),
            pytest.raises(
                AccessDenied, match="granted to dana.scientist, not erin.engineer"
            ),
        ):
            log.append("monitoring.action", resource, "allowed", {})
        monkeypatch.setenv("BANKPLATFORM_USER", "dana.scientist")
    assert (written["seq"] > 0, bool(credential)) == (True, True)
    # Ended with the run: the environment no longer holds it, and it grants nothing.
    monkeypatch.setenv("BANKPLATFORM_RUN_CREDENTIAL", credential)
    with acting_for("monitoring"), pytest.raises(AccessDenied, match="none, or ended"):
        log.append("monitoring.action", resource, "allowed", {})
    records = list(log.records(resource=resource))
    assert [(r["actor"], r["outcome"]) for r in records] == [
        ("svc-monitoring", "allowed")
    ]
    monkeypatch.setenv("BANKPLATFORM_USER", "local-developer")
    refusals = [
        r
        for r in log.records(resource="pipeline:")
        if r["action"] == "pipeline.act" and r["outcome"] == "denied"
    ][-4:]
    assert [r["actor"] for r in refusals] == [
        "dana.scientist",
        "dana.scientist",
        "erin.engineer",
        "dana.scientist",
    ]
