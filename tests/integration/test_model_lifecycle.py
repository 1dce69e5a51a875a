"""The governed lifecycle on a real registry and audit log: the maker-checker
matrix, a scripted approve/promote/promote/rollback/decommission sequence through
the command line, its history, edited evidence, the inventory, card and Annex IV
pack, and names a person types."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from bankplatform.governance import lifecycle
from bankplatform.governance.lifecycle import Governed
from bankplatform.governance.registry import GovernanceError
from bankplatform.project import env_config_loader
from bankplatform.security.policy import AccessDenied
from bankplatform.security.runtime import open_security
from tests.conftest import REPO, copy_workspace, run_command
from tests.helpers import audit_records, install_policy
from tests.pipelines import run_in_memory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
MODEL = "credit_default_pd"
# Who may do what (security.yml): validators approve and reject, risk officers
# promote, roll back and decommission; nobody else.
PERMITTED = {
    "approve": {"victor.validator"},
    "reject": {"victor.validator"},
    "promote": {"rita.riskofficer"},
    "rollback": {"rita.riskofficer"},
    "decommission": {"rita.riskofficer"},
}
USERS = [
    "local-developer",
    "dana.scientist",
    "victor.validator",
    "rita.riskofficer",
    "paul.admin",
    "audrey.auditor",
    "scheduler",
]


@pytest.fixture(scope="module")
def workspace(
    governed_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("lifecycle") / "workspace"
    copy_workspace(governed_workspace, root)
    return root


def _governed(root: Path, user: str, monkeypatch: pytest.MonkeyPatch) -> Governed:
    """The lifecycle as ``user``: the key service proves who acts, not the caller."""
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.setenv("BANKPLATFORM_USER", user)
    security = open_security(env_config_loader(root, "test"), root, "test")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return Governed(client, security, security.starter(), root, MODEL)


def _attempt(g: Governed, action: str) -> str:
    if action == "approve":
        return lifecycle.approve(g, 1)
    if action == "reject":
        return lifecycle.reject(g, 1, "matrix")
    if action == "promote":
        return lifecycle.promote(g, 1)
    if action == "rollback":
        return lifecycle.rollback(g)
    return lifecycle.decommission(g, 1, "matrix")


def _cli(root: Path, user: str, *args: str) -> tuple[int, str, str]:
    result = run_command(
        ["bankplatform", "model", *args, "--env", "test"],
        root,
        extra_env={"BANKPLATFORM_USER": user},
    )
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def _audit(root: Path) -> list[dict[str, object]]:
    log = root / ".bankplatform" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize(
    ("user", "action"),
    # The permitted pairs are exercised by the scripted sequence below.
    [(u, a) for a in sorted(PERMITTED) for u in USERS if u not in PERMITTED[a]],
)
def test_every_role_without_the_permission_is_refused_and_audited(
    workspace: Path, user: str, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = _governed(workspace, user, monkeypatch)
    before = len(_audit(workspace))
    with pytest.raises(AccessDenied) as caught:
        _attempt(g, action)
    assert str(caught.value).startswith(f"access denied: {user} (roles: ")
    (record,) = _audit(workspace)[before:]
    assert (record["actor"], record["action"], record["outcome"]) == (
        user,
        f"model.{action}",
        "denied",
    )
    assert str(record["details"]["reason"]).startswith("lacks ")  # type: ignore[index]


@pytest.mark.parametrize(
    ("user", "attempt", "error", "reason", "resource"),
    [
        (
            "victor.validator",
            lambda g: lifecycle.reject(g, 1, "   "),
            GovernanceError,
            "a reason is required",
            f"model:{MODEL}/1",
        ),
        (
            "victor.validator",
            lambda g: lifecycle.reject(g, 1, "drift\x00"),
            GovernanceError,
            "reason contains control characters",
            f"model:{MODEL}/1",
        ),
        # A blank reason does not hide the missing role: the role is checked first.
        (
            "victor.validator",
            lambda g: lifecycle.decommission(g, 1, ""),
            AccessDenied,
            "lacks decommission_model",
            f"model:{MODEL}/1",
        ),
        (
            "victor.validator",
            lambda g: lifecycle.approve(replace(g, named="../../x"), 1),
            GovernanceError,
            "invalid model name '../../x'",
            f"model:{MODEL}/1",
        ),
        (
            "rita.riskofficer",
            lambda g: lifecycle.promote(replace(g, named="fraud_model"), 1),
            GovernanceError,
            "unknown model 'fraud_model'",
            f"model:{MODEL}/1",
        ),
        # No alias is held yet: the refusal names the model, never a version 0.
        (
            "rita.riskofficer",
            lifecycle.rollback,
            GovernanceError,
            f"{MODEL} has no previous champion to roll back to",
            f"model:{MODEL}",
        ),
    ],
    ids=[
        "empty-reason",
        "control-character",
        "blank-reason-no-role",
        "path-name",
        "other-model",
        "rollback-nothing",
    ],
)
def test_every_refusal_is_audited_once_under_the_version_it_names(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    user: str,
    attempt: Callable[[Governed], str],
    error: type[Exception],
    reason: str,
    resource: str,
) -> None:
    g = _governed(workspace, user, monkeypatch)
    before = len(_audit(workspace))
    with pytest.raises(error):
        attempt(g)
    (record,) = _audit(workspace)[before:]
    assert (record["actor"], record["outcome"], record["resource"]) == (
        user,
        "denied",
        resource,
    )
    assert str(record["details"]["reason"]).startswith(reason)  # type: ignore[index]


def test_a_validator_who_trained_the_version_may_not_approve_it(
    governed_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "workspace"
    copy_workspace(governed_workspace, workspace)
    # The trainer (local-developer) is also made a validator in this copy's policy.
    access = yaml.safe_load((REPO / "conf" / "base" / "security.yml").read_text())
    access["access"]["users"]["local-developer"].append("model_validator")
    (workspace / "conf" / "test" / "security.yml").write_text(
        yaml.safe_dump({"access": access["access"]})
    )
    # conf/ is not in force until the keyholder installs it into the key service.
    install_policy(workspace)
    g = _governed(workspace, "local-developer", monkeypatch)
    with pytest.raises(GovernanceError) as caught:
        lifecycle.approve(g, 1)
    assert str(caught.value) == (
        "local-developer trained this version and may not approve it "
        "(maker-checker: a second person must)"
    )
    assert _audit(workspace)[-1]["outcome"] == "denied"


def _approve_and_promote_first(root: Path) -> None:
    """Version 1 approved (its bundle packaged and signed, the digest in the
    approval) and promoted (the same digest in the promotion)."""
    approved = _cli(root, "victor.validator", "approve", MODEL, "1")[1]
    (approval,) = [
        r
        for r in _audit(root)
        if r["action"] == "model.approve" and r["outcome"] == "allowed"
    ]
    digest = approval["details"]["bundle_digest"]  # type: ignore[index]
    size = sum(
        p.stat().st_size
        for p in (root / ".bankplatform/bundles" / str(digest) / "bundle").rglob("*")
        if p.is_file() and p.name != "model.sig"
    )
    assert approved == (
        f"approved {MODEL} version 1: it is the challenger (promotion needs a model risk officer); "
        f"bundle sha256:{digest} ({size:,} bytes, signed by the key service)"
    )
    assert _cli(root, "rita.riskofficer", "promote", MODEL, "1")[1] == (
        f"promoted {MODEL} version 1 to champion"
    )
    (promotion,) = [
        r
        for r in _audit(root)
        if r["action"] == "model.promote" and r["outcome"] == "allowed"
    ]
    assert promotion["details"]["bundle_digest"] == digest  # type: ignore[index]


def test_the_scripted_lifecycle_and_its_exact_history(
    workspace: Path, worker_ray: None
) -> None:
    root = workspace
    _approve_and_promote_first(root)
    # A second version, trained and evaluated against the champion.
    run_in_memory(root, "training", "evaluation")
    report = json.loads((root / "data/08_reporting/gate_outcome.json").read_text())
    assert report["version"] == 2
    regression = next(g for g in report["gates"] if g["name"] == "champion_regression")
    assert regression["detail"] == "AUC drop against champion version 1"
    assert report["measurements"]["champion"]["version"] == 1
    # Same data, parameters and seed: the same model, so no drop at all.
    first = json.loads(
        (root / f"data/08_reporting/governance/{MODEL}/1/gate_report.json").read_text()
    )
    assert (
        report["measurements"]["champion"]["metrics"]["auc"]
        == (first["measurements"]["performance"]["out_of_time"]["auc"])
    )
    assert regression["value"] == 0.0
    # Edited evidence blocks approval until it matches again.
    page = root / f"data/08_reporting/governance/{MODEL}/2/model_validation.html"
    original = page.read_bytes()
    page.write_bytes(original.replace(b"passed", b"PASSED", 1))
    code, _, error = _cli(root, "victor.validator", "approve", MODEL, "2")
    assert code == 1
    assert error == (
        f"Error: evidence data/08_reporting/governance/{MODEL}/2/model_validation.html "
        "was changed after evaluation: re-run the evaluation"
    )
    page.write_bytes(original)
    # Gates judged under other thresholds than the approver's env resolves (as a
    # run with a private conf/local override would be) block approval too.
    settings = root / "conf" / "test" / "governance.yml"
    shipped = settings.read_text()
    settings.write_text(shipped.replace("threshold: 0.60", "threshold: 0.65"))
    code, _, error = _cli(root, "victor.validator", "approve", MODEL, "2")
    assert (code, error) == (
        1,
        "Error: the gates were judged with settings that differ from env test's "
        "governance.yml: gates.discrimination.threshold 0.6 instead of 0.65; "
        "re-run the evaluation under them",
    )
    settings.write_text(shipped)
    assert _cli(root, "victor.validator", "approve", MODEL, "2")[0] == 0
    assert _cli(root, "rita.riskofficer", "promote", MODEL, "2")[1] == (
        f"promoted {MODEL} version 2 to champion (version 1 is now previous)"
    )
    assert _cli(root, "rita.riskofficer", "rollback", MODEL)[1] == (
        f"rolled back {MODEL}: version 1 is champion again (version 2 no longer serves)"
    )
    # A second rollback has nothing to go back to: refused under the champion.
    assert _cli(root, "rita.riskofficer", "rollback", MODEL)[2] == (
        f"Error: {MODEL} has no previous champion to roll back to"
    )
    refused = _audit(root)[-1]
    assert (refused["action"], refused["outcome"], refused["resource"]) == (
        "model.rollback",
        "denied",
        f"model:{MODEL}/1",
    )
    assert (
        _cli(
            root,
            "rita.riskofficer",
            "decommission",
            MODEL,
            "2",
            "--reason",
            "rolled back: drift",
        )[1]
        == f"decommissioned {MODEL} version 2: it can never be served again"
    )
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_model_version(MODEL, "2").tags["status"] == "decommissioned"
    # The tag is a copy for MLflow's UI: deleting it (anyone with registry access
    # can) undoes nothing, the audit log's decommission record decides.
    client.delete_model_version_tag(MODEL, "2", "status")
    for user, action in (
        ("victor.validator", "approve"),
        ("rita.riskofficer", "promote"),
    ):
        code, _, error = _cli(root, user, action, MODEL, "2")
        assert (code, error) == (
            1,
            "Error: the version is decommissioned: it can never be approved, promoted or served again",
        )
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 1
    code, history, _ = _cli(root, "audrey.auditor", "history", MODEL)
    assert code == 0
    # "<alias> version <v> <since> -> <until|now>  (by ...)", by start time.
    tenures = [line.split()[:6] for line in history.splitlines()]
    assert [(t[0], t[2], t[5] == "now") for t in tenures] == [
        ("challenger", "1", False),
        ("champion", "1", False),
        ("challenger", "2", False),
        ("champion", "2", False),
        ("previous", "1", False),
        ("champion", "1", True),
    ]
    since = {(t[0], t[2], t[5] == "now"): t[3] for t in tenures}
    until = {(t[0], t[2], t[5] == "now"): t[5] for t in tenures}
    # Each tenure ends exactly when the change that replaced it was made.
    assert until[("challenger", "1", False)] == since[("champion", "1", False)]
    assert until[("champion", "1", False)] == since[("champion", "2", False)]
    assert since[("previous", "1", False)] == since[("champion", "2", False)]
    assert until[("champion", "2", False)] == since[("champion", "1", True)]
    assert until[("previous", "1", False)] == since[("champion", "1", True)]


def test_forged_registry_tags_are_shown_as_disagreements_never_as_facts(
    workspace: Path,
) -> None:
    """Anyone with registry access can edit a version's tags: the inventory and the
    card show the audit log's trainer and gate verdict, and name the forged tags."""
    root = workspace
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (register,) = [
        r
        for r in audit_records(root)
        if r["action"] == "model.register"
        and r["resource"] == f"model:{MODEL}/1"
        and r["outcome"] == "allowed"
    ]
    trainer = register["details"]["trainer"]
    before = client.get_model_version(MODEL, "1").tags
    client.set_model_version_tag(MODEL, "1", "trainer", "mallory.insider")
    client.set_model_version_tag(MODEL, "1", "gate_status", "failed")
    try:
        code, listing, _ = _cli(root, "audrey.auditor", "list")
        assert code == 0
        row = next(line for line in listing.splitlines() if line.split()[0] == "1")
        assert trainer in row and "mallory" not in row
        assert " passed " in row
        assert (
            f"version 1: trainer tag says 'mallory.insider', the audit log '{trainer}'; the audit log's is shown"
            in listing.splitlines()
        )
        assert (
            "version 1: gate_status tag says 'failed', the audit log 'passed'; the audit log's is shown"
            in listing.splitlines()
        )
        code, card, _ = _cli(root, "audrey.auditor", "card", MODEL, "1")
        assert code == 0
        assert f"| trained by | {trainer} |" in card
        assert "| trained as | svc-training |" in card
        assert (
            f"- trainer tag says 'mallory.insider', the audit log '{trainer}'" in card
        )
    finally:
        for tag in ("trainer", "gate_status"):
            client.set_model_version_tag(MODEL, "1", tag, before[tag])


def test_the_inventory_card_and_annex_iv_pack(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = workspace
    code, listing, _ = _cli(root, "audrey.auditor", "list")
    assert code == 0
    rows = {line.split()[0]: line for line in listing.splitlines()[1:-1]}
    assert "in production (champion)" in rows["1"]
    assert "decommissioned" in rows["2"]
    assert "passed" in rows["1"]
    # A year and a day after its approval, the serving version is overdue (tier_1:
    # yearly review); the decommissioned one never is.
    from datetime import UTC, datetime, timedelta

    from bankplatform.governance.inventory import model_inventory
    from bankplatform.manifest import load_manifest

    g = _governed(root, "audrey.auditor", monkeypatch)
    later = datetime.now(UTC).date() + timedelta(days=367)
    inventory = {
        e.version: e
        for e in model_inventory(
            g.client, load_manifest(root), g.security.audit_log().records(), 12, later
        )
    }
    assert (inventory[1].overdue, inventory[2].overdue) == (True, False)
    assert inventory[1].next_review is not None
    assert inventory[1].aliases == ("champion",)
    assert "OVERDUE" not in rows["1"]  # not today
    code, card, _ = _cli(root, "audrey.auditor", "card", MODEL, "1")
    assert code == 0
    report = json.loads(
        (root / f"data/08_reporting/governance/{MODEL}/1/gate_report.json").read_text()
    )
    auc = report["measurements"]["performance"]["out_of_time"]["auc"]
    assert f"| auc | {auc:.4g} |" in card
    assert "Materiality tier **tier_1** (SR 26-2)" in card
    assert "| status | in production (champion) |" in card
    assert (
        "Monotone directions enforced: gambling_share_90d +, card_utilisation +,"
        in card
    )
    assert "income -" in card
    assert "| disparate_impact |" in card
    assert "| training_set |" in card or "| customers_raw |" in card
    assert "model.approve" in card and "victor.validator" in card
    # The rollback from 2 to 1 shows on both versions' cards.
    rollback_row = "| model.rollback | rita.riskofficer | allowed | champion 2 -> 1, previous 1 -> - |"
    assert rollback_row in card
    code, second_card, _ = _cli(root, "audrey.auditor", "card", MODEL, "2")
    assert code == 0
    assert rollback_row in second_card
    assert (
        "| model.promote | rita.riskofficer | allowed | challenger 2 -> -, champion 1 -> 2, previous - -> 1 |"
        in card
    )
    code, out, _ = _cli(root, "audrey.auditor", "docs", MODEL, "1")
    assert code == 0
    pack = Path(out.rsplit(": ", 1)[1])
    annex = (pack / "annex_iv.md").read_text()
    assert [line for line in annex.splitlines() if line.startswith("## ")] == [
        "## 1. General description of the AI system",
        "## 2. Detailed description of the elements and of the development process",
        "## 3. Monitoring, functioning and control",
        "## 4. Appropriateness of the performance metrics",
        "## 5. Risk management system (Art 9)",
        "## 6. Changes through the lifecycle",
        "## 7. Harmonised standards and specifications applied",
        "## 8. EU declaration of conformity",
        "## 9. Post-market monitoring plan (Art 72)",
    ]
    assert "**TO BE WRITTEN BY A PERSON:** the declaration of conformity" in annex
    # The post-market monitoring plan is the env's monitoring.yml.
    assert "| performance_drop | rollback |" in annex
    assert "No window has been monitored for this version yet." in annex
    sums = json.loads((pack / "manifest.json").read_text())["sha256"]
    assert "evidence/model_validation.html" in sums
    assert "model_card.html" in sums
    from bankplatform.governance.evidence import file_sha256

    assert all(file_sha256(pack / name) == digest for name, digest in sums.items())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["approve", "../../x", "1"], "Error: invalid model name '../../x'"),
        (["approve", "fraud_model", "1"], "Error: unknown model 'fraud_model'"),
        (
            ["approve", MODEL, "99"],
            f"Error: model {MODEL} has no version 99 in the registry",
        ),
        (["approve", MODEL, "0"], "Error: Invalid value for 'VERSION'"),
        (
            ["reject", MODEL, "1", "--reason", "x" * 100_000],
            "Error: reason too long: 100,000 characters",
        ),
        (
            ["card", MODEL, "99"],
            f"Error: model {MODEL} has no version 99 in the registry",
        ),
    ],
)
def test_bad_names_give_one_line_errors(
    workspace: Path, args: list[str], message: str
) -> None:
    code, out, error = _cli(workspace, "victor.validator", *args)
    assert code != 0
    assert error.splitlines()[-1].startswith(message)
    assert "Traceback" not in error
