"""The scoring service on a real uvicorn server over a governed workspace: the
approved champion from the real registry, features from the real Feast online
store, tokens and audit records through the real key service.

Covers: every route authenticated (read from /openapi.json) with the right
role, bad tokens, bad input, canary stickiness and split, the three broken
challengers (and a shifted one) rolled back with no client-visible error, the
kill switch, overrides and appeals, a decommissioned or unapproved version
never served, and a decision reconstructed and traced from the log.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from bankplatform.security.policy import AccessDenied
from tests.conftest import run_command
from tests.helpers import (
    MODEL,
    RunningService,
    acting_as,
    audit_records,
    champion_workspace,
    register_challenger,
    start_service,
    token,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]
TERMS = {"amount": 5000.0, "term_months": 36, "purpose": "car"}


def _lifecycle(root: Path, user: str, *args: str) -> None:
    result = run_command(
        ["bankplatform", "model", *args, "--env", "test"],
        root,
        extra_env={"BANKPLATFORM_USER": user},
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def workspace(
    governed_workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The governed workspace with version 1 approved and promoted to champion."""
    return champion_workspace(governed_workspace, tmp_path_factory.mktemp("scoring"))


@pytest.fixture(scope="module")
def service(workspace: Path) -> Iterator[RunningService]:
    running = start_service(workspace)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tokens(workspace: Path) -> dict[str, str]:
    return {
        "client": token(workspace, "origination-system", "scoring_client"),
        "admin": token(workspace, "paul.admin", "platform_admin"),
        "scientist": token(workspace, "dana.scientist", "data_scientist"),
        "underwriter": token(workspace, "uma.underwriter", "credit_underwriter"),
    }


@pytest.fixture(scope="module")
def customers(workspace: Path) -> list[str]:
    frame = pd.read_parquet(
        workspace / "data" / "04_feature" / "customer_features.parquet",
        columns=["customer_token"],
    )
    return sorted(frame["customer_token"].unique())


@pytest.fixture
def admin(service: RunningService, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    """An admin client; the release state is reset before each test."""
    with service.client(tokens["admin"]) as client:
        _ok(
            client.post(
                "/v1/admin/halt", json={"halted": False, "reason": "test reset"}
            )
        )
        _ok(client.post("/v1/admin/rollback", json={"reason": "test reset"}))
        yield client


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def _score(client: httpx.Client, customer: str, **terms: Any) -> httpx.Response:
    return client.post("/v1/score", json={"customer_token": customer, **TERMS, **terms})


def _traffic(
    service: RunningService, tokens: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``bankplatform traffic ...`` as the admin, against the test's server."""
    return run_command(
        ["bankplatform", "traffic", *args, "--env", "test"],
        service.root,
        extra_env={
            "BANKPLATFORM_TOKEN": tokens["admin"],
            "BANKPLATFORM_SCORING_URL": service.url,
        },
    )


def _decisions(root: Path) -> list[dict[str, Any]]:
    folder = root / "data" / "08_reporting" / "decisions"
    return [
        json.loads(line)
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _shadow_records(root: Path, ids: set[str]) -> list[dict[str, Any]]:
    """The shadow records of requests ``ids``, once every one is logged."""

    def logged() -> list[dict[str, Any]] | None:
        found = [
            d
            for d in _decisions(root)
            if d["type"] == "shadow" and d["request_id"] in ids
        ]
        return found if len(found) == len(ids) else None

    return list(wait_for(logged, what="shadow records logged"))


def _use_challenger(root: Path, admin: httpx.Client, fault: dict[str, Any]) -> int:
    version = register_challenger(root, fault)
    served = _ok(admin.post("/v1/admin/reload"))["served"]
    assert served["challenger"]["version"] == version
    return version


# Authentication and roles ---------------------------------------------------

# Each route and a declared user whose roles do not permit it.
WRONG_ROLE = {
    ("post", "/v1/score"): "admin",
    ("get", "/v1/models"): "scientist",
    ("post", "/v1/admin/traffic"): "client",
    ("post", "/v1/admin/halt"): "client",
    ("post", "/v1/admin/rollback"): "underwriter",
    ("post", "/v1/admin/reload"): "client",
    ("post", "/v1/decisions/{request_id}/override"): "client",
    ("post", "/v1/decisions/{request_id}/appeal"): "admin",
}


def test_every_route_but_healthz_needs_a_token_and_the_right_role(
    service: RunningService, tokens: dict[str, str], workspace: Path
) -> None:
    with service.client() as anonymous:
        assert anonymous.get("/openapi.json").status_code == 401
        health = anonymous.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
    with service.client(tokens["client"]) as client:
        schema = _ok(client.get("/openapi.json"))
    routes = {
        (m, p) for p, ops in schema["paths"].items() for m in ops if p != "/healthz"
    }
    assert routes == set(WRONG_ROLE)  # a new route must be added here
    seen = []
    for method, path in sorted(routes):
        url = path.replace("{request_id}", "req_" + "0" * 32)
        with service.client() as anonymous:
            refused = anonymous.request(method, url, json={})
        assert refused.status_code == 401, (method, path, refused.text)
        assert set(refused.json()) == {"error", "request_id"}
        with service.client(tokens[WRONG_ROLE[(method, path)]]) as wrong:
            denied = wrong.request(method, url, json={})
        assert denied.status_code == 403, (method, path, denied.text)
        assert denied.json()["error"].startswith("access denied: ")
        seen += [refused.json()["request_id"], denied.json()["request_id"]]

    # Every refusal is in the signed audit log, with the client and the route.
    def audited() -> list[dict[str, Any]]:
        found = {
            r["details"].get("request_id"): r
            for r in audit_records(workspace)
            if r["action"] == "scoring.request"
        }
        return [found[i] for i in seen if i in found]

    records = wait_for(
        lambda: len(audited()) == len(seen) and audited(), what="refusals audited"
    )
    assert {r["outcome"] for r in records} == {"denied"}
    assert {r["actor"] for r in records} == {"svc-scoring"}
    assert {r["details"]["status"] for r in records} == {401, 403}


def test_bad_tokens_are_refused(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
) -> None:
    good = tokens["client"]
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + "."
    for bad, reason in [
        ("not-a-token", "token rejected"),
        (forged, "signature does not verify"),
        (unsigned, "token rejected"),
        # Once 503 "key service unavailable" on every route (the key service
        # answered 400), asked again at each request.
        (good + "A" * 4_100, "token rejected: longer than 4,000 characters"),
    ]:
        with service.client(bad) as client:
            refused = _score(client, customers[0])
            again = client.get("/v1/models")
        assert refused.status_code == 401 and again.status_code == 401
        assert reason in refused.json()["error"] and reason in again.json()["error"]
    # A revoked token stops working within token_cache_seconds (1 s in test).
    short = token(workspace, "origination-system", "scoring_client")
    with service.client(short) as client:
        assert _score(client, customers[0]).status_code == 200
        import jwt

        from tests.helpers import acting_as

        with acting_as(workspace, "local-developer") as security:
            security.tokens().revoke(
                jwt.decode(short, options={"verify_signature": False})["jti"], "test"
            )
        time.sleep(1.2)
        revoked = _score(client, customers[0])
    assert (revoked.status_code, revoked.json()["error"]) == (
        401,
        "token rejected: revoked",
    )


# Bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ('{"customer_token": "cus_', 400, "malformed JSON"),
        (
            '{"customer_token": "CUS", "amount": 1, "term_months": 36, "purpose": "car"}',
            422,
            "customer_token",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": NaN, "term_months": 36, "purpose": "car"}',
            422,
            "amount",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": 1e400, "term_months": 36, "purpose": "car"}',
            422,
            "amount",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": -5, "term_months": 36, "purpose": "car"}',
            422,
            "amount",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": false, "term_months": 36, "purpose": "car"}',
            422,
            "amount",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": 5, "term_months": 36.5, "purpose": "car"}',
            422,
            "term_months",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": 5, "term_months": 36, "purpose": "yacht"}',
            422,
            "purpose",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": 5, "term_months": 36, "purpose": "car", "gender": "F"}',
            422,
            "gender",
        ),
        (
            '{"customer_token": "cus_00000000000000000000000000000000", "amount": 5, "term_months": 36, "purpose": "car"}',
            404,
            "unknown customer",
        ),
        ("[]", 422, "body"),
    ],
)
def test_bad_input_gets_a_one_line_4xx(
    service: RunningService,
    tokens: dict[str, str],
    body: str,
    status: int,
    fragment: str,
) -> None:
    with service.client(tokens["client"]) as client:
        response = client.post(
            "/v1/score", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    content = response.json()
    assert set(content) == {"error", "request_id"}
    assert fragment in content["error"]
    assert "Traceback" not in response.text and "\n" not in content["error"]


def test_oversized_and_non_json_bodies_are_refused(
    service: RunningService, tokens: dict[str, str], customers: list[str]
) -> None:
    with service.client(tokens["client"]) as client:
        big = client.post(
            "/v1/score",
            content=b"{" + b" " * 10_000 + b"}",
            headers={"content-type": "application/json"},
        )
        text = client.post(
            "/v1/score", content=b"customer=1", headers={"content-type": "text/plain"}
        )
        # 36.0 is an integer in JSON Schema; 2 is a number (the amount).
        whole = client.post(
            "/v1/score",
            json={
                "customer_token": customers[0],
                "amount": 2,
                "term_months": 36.0,
                "purpose": "car",
            },
        )
        # No Content-Length: the body is counted as it streams in.
        streamed = client.post(
            "/v1/score",
            content=iter([b"{" + b" " * 3_000] * 4 + [b"}"]),
            headers={"content-type": "application/json"},
        )
    assert (big.status_code, text.status_code, whole.status_code) == (413, 415, 200)
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "body larger than 4096 bytes"


# Scoring and the decision log --------------------------------------------------


def test_a_decision_has_a_score_reason_codes_and_is_logged_and_audited(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    with service.client(tokens["client"]) as client:
        # Enough applications that both decisions occur whatever the trained model.
        answers = [_ok(_score(client, c)) for c in customers[:200]]
    cut_off, refer_up_to = answers[0]["cut_off"], answers[0]["refer_up_to"]
    # governance.yml: cut-off 0.15, refer band 0.10 (an underwriter decides).
    assert (cut_off, refer_up_to) == (0.15, 0.25)
    for answer in answers:
        assert 0.0 < answer["score"] < 1.0
        assert answer["decision"] == (
            "approve"
            if answer["score"] <= cut_off
            else "refer"
            if answer["score"] <= refer_up_to
            else "decline"
        )
        assert (answer["model_version"], answer["variant"]) == (1, "champion")
        contributions = [code["contribution"] for code in answer["reason_codes"]]
        assert contributions == sorted(contributions, reverse=True) and all(
            c > 0 for c in contributions
        )
        assert len(contributions) <= 4
    assert {a["decision"] for a in answers} == {"approve", "refer", "decline"}
    ids = {a["request_id"] for a in answers}
    logged = wait_for(
        lambda: [
            d
            for d in _decisions(workspace)
            if d.get("request_id") in ids and d["type"] == "decision"
        ]
        if len([d for d in _decisions(workspace) if d.get("request_id") in ids]) == 200
        else None,
        what="decisions logged",
    )
    (registered,) = [
        r
        for r in audit_records(workspace)
        if r["action"] == "model.register" and r["resource"] == f"model:{MODEL}/1"
    ]
    for record in logged:
        assert set(record) >= {
            "input_sha256",
            "features",
            "model",
            "reason_codes",
            "latency_ms",
            "customer_token",
        }
        assert (
            record["model"]["artefact_sha256"]
            == registered["details"]["artefact_sha256"]
        )
        assert not any(
            k in record["features"]
            for k in ("name", "national_id", "email", "gender", "age_band")
        )
        # Nothing streamed here: the features are the batch's latest monthly snapshot.
        assert record["features_as_of"] == "2026-01-01T00:00:00+00:00"
    audited = wait_for(
        lambda: [
            r
            for r in audit_records(workspace)
            if r["action"] == "scoring.request"
            and r["details"].get("request_id") in ids
        ]
        if len(
            [
                r
                for r in audit_records(workspace)
                if r["action"] == "scoring.request"
                and r["details"].get("request_id") in ids
            ]
        )
        == 200
        else None,
        what="requests audited",
    )
    assert {
        (r["outcome"], r["details"]["client"], r["details"]["model_version"])
        for r in audited
    } == {("allowed", "origination-system", 1)}
    # Filed under the request, not the model: the model's own records stay few.
    assert {r["resource"] for r in audited} == {
        f"request:{r['details']['request_id']}" for r in audited
    }
    assert len({r["resource"] for r in audited}) == 200


# Releases -------------------------------------------------------------------------


def test_canary_is_sticky_by_customer_and_splits_at_the_weight(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    version = _use_challenger(workspace, admin, {"kind": "none"})
    _ok(
        admin.post(
            "/v1/admin/traffic", json={"challenger_weight": 0.2, "reason": "canary"}
        )
    )
    with service.client(tokens["client"]) as client:
        first = {c: _ok(_score(client, c))["variant"] for c in customers}
        again = {c: _ok(_score(client, c))["variant"] for c in customers[:500]}
    assert all(again[c] == first[c] for c in again)  # sticky
    share = sum(v == "challenger" for v in first.values()) / len(first)
    assert len(first) >= 4_000 and abs(share - 0.2) <= 0.02, share
    state = _ok(admin.get("/v1/models"))
    assert state["served"]["challenger"]["version"] == version
    assert (
        state["traffic"]["challenger_weight"] == 0.2
    )  # a healthy challenger keeps its traffic


@pytest.mark.parametrize(
    ("fault", "breach"),
    [
        ({"kind": "raise", "rate": 0.2, "seed": 1}, "error rate"),
        ({"kind": "nan", "rate": 0.1, "seed": 2}, "error rate"),
        ({"kind": "sleep", "seconds": 0.2}, "p99 latency"),
        ({"kind": "shift", "log_odds": 1.5}, "differ from the champion"),
        ({"kind": "extra_column"}, "error rate"),
        ({"kind": "exit"}, "error rate"),
        ({"kind": "sleep", "seconds": 30}, "error rate"),
    ],
    ids=[
        "raises-20pct",
        "nan-10pct",
        "sleeps-200ms",
        "shifted-scores",
        "extra-column",
        "sys-exit",
        "hangs-30s",
    ],
)
def test_a_broken_challenger_is_rolled_back_with_no_client_visible_error(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
    fault: dict[str, Any],
    breach: str,
) -> None:
    version = _use_challenger(workspace, admin, fault)
    _ok(
        admin.post(
            "/v1/admin/traffic", json={"challenger_weight": 0.5, "reason": "canary"}
        )
    )
    answers = []
    with service.client(tokens["client"]) as client:
        for customer in customers[:400]:
            response = _score(client, customer)
            assert response.status_code == 200, (
                response.text
            )  # never an error to the client
            answers.append(response.json())
            if _ok(admin.get("/v1/models"))["traffic"]["challenger_weight"] == 0.0:
                break
    assert all(
        a["decision"] in ("approve", "refer", "decline") and a["score"] is not None
        for a in answers
    )
    state = _ok(admin.get("/v1/models"))["traffic"]
    assert (state["challenger_weight"], state["changed_by"]) == (
        0.0,
        "automatic rollback",
    )
    assert breach in state["reason"]
    challenger_answers = sum(a["variant"] == "challenger" for a in answers)
    # Within the window: rolled back once min_requests (20) challenger requests are judged.
    assert len(answers) < 120, len(answers)
    (rollback,) = [
        r
        for r in audit_records(workspace)
        if r["action"] == "scoring.rollback"
        and r["details"].get("challenger_version") == version
    ]
    assert (
        rollback["details"]["automatic"] is True
        and breach in rollback["details"]["reason"]
    )
    if (
        fault["kind"] in ("raise", "nan", "extra_column", "exit")
        or fault.get("seconds", 0) > 1
    ):
        assert challenger_answers < len(answers)  # the champion answered the failures
    if fault["kind"] in ("extra_column", "exit"):
        assert challenger_answers == 0  # every call failed


def test_shadow_scores_silently_and_blue_green_switches_all(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    version = _use_challenger(workspace, admin, {"kind": "none"})
    _ok(admin.post("/v1/admin/traffic", json={"shadow": True, "reason": "shadow"}))
    # Each phase stays under the rollback policy's min_requests (20): the policy
    # (tested above) never judges here, so one slow answer on a loaded machine
    # cannot take the challenger out of traffic half-way through this test.
    sample = customers[:15]
    with service.client(tokens["client"]) as client:
        shadowed = [_ok(_score(client, c)) for c in sample]
        assert {a["variant"] for a in shadowed} == {"champion"}
        ids = {a["request_id"] for a in shadowed}
        shadows = _shadow_records(workspace, ids)
        _ok(
            admin.post(
                "/v1/admin/traffic",
                json={
                    "shadow": False,
                    "challenger_weight": 1.0,
                    "reason": "blue/green",
                },
            )
        )
        switched = [_ok(_score(client, c)) for c in sample]
        _ok(
            admin.post(
                "/v1/admin/traffic", json={"challenger_weight": 0.0, "reason": "back"}
            )
        )
        back = [_ok(_score(client, c)) for c in sample]
    assert {(a["variant"], a["model_version"]) for a in switched} == {
        ("challenger", version)
    }
    assert {a["variant"] for a in back} == {"champion"}
    for record in shadows:  # the healthy copy scores exactly as the champion
        assert (
            record["model"]["version"] == version
            and abs(record["score"] - record["champion_score"]) < 1e-12
        )


def test_shadow_work_is_bounded_counted_and_dropped_at_rollback(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    """A shadow challenger with one output too many once leaked its backlog count
    (shadow scoring stopped silently); a slow one rolled back kept working through
    its queue. Now each failure is a shadow record with its fault, and a rollback
    drops the queued work."""
    _use_challenger(workspace, admin, {"kind": "extra_column"})
    _ok(admin.post("/v1/admin/traffic", json={"shadow": True, "reason": "shadow"}))
    sample = customers[:15]  # under min_requests: the policy does not judge yet
    with service.client(tokens["client"]) as client:
        ids = {_ok(_score(client, c))["request_id"] for c in sample}
    logged = _shadow_records(workspace, ids)
    version = logged[0]["model"]["version"]
    (fault,) = {d["fault"] for d in logged}
    found = re.fullmatch(
        rf"version {version} gave (\d+) outputs, expected (\d+)", fault
    )
    assert found and int(found[1]) == int(found[2]) + 1, fault
    assert {d["score"] for d in logged} == {None}
    window = _ok(admin.get("/v1/models"))["challenger_window"]
    assert window["shadow_skipped"] == 0
    # A slow shadow challenger with a full queue, then rolled back.
    _use_challenger(workspace, admin, {"kind": "sleep", "seconds": 0.2})
    _ok(admin.post("/v1/admin/traffic", json={"shadow": True, "reason": "shadow"}))
    with service.client(tokens["client"]) as client:
        queued = {_ok(_score(client, c))["request_id"] for c in customers[100:160]}

    def scored() -> int:
        return sum(
            d["type"] == "shadow" and d["request_id"] in queued
            for d in _decisions(workspace)
        )

    _ok(admin.post("/v1/admin/rollback", json={"reason": "too slow"}))
    at_rollback = scored()  # shadow lines are on disk when written
    time.sleep(1.0)
    after = scored()
    # At most the call running when the rollback came (0.2 s each) finishes in
    # the second waited here, never the rest of the queue (12 s of work in all).
    assert after - at_rollback <= 2, (at_rollback, after)
    assert after < len(queued)
    window = _ok(admin.get("/v1/models"))["challenger_window"]
    assert window["shadow_cancelled"] >= len(queued) - after - 1, window


# Human oversight ------------------------------------------------------------


def test_the_kill_switch_refers_every_application_to_a_person(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    halted = _traffic(service, tokens, "halt", "--reason", "suspected data incident")
    assert halted.returncode == 0, halted.stderr
    with service.client(tokens["client"]) as client:
        referred = [_ok(_score(client, c)) for c in customers[:10]]
        assert {(a["decision"], a["score"], a["model_version"]) for a in referred} == {
            ("refer", None, None)
        }
        # Halted or not, a customer the bank does not know is 404, never "refer".
        unknown = _score(client, "cus_" + "0" * 32)
        assert (unknown.status_code, unknown.json()["error"]) == (
            404,
            "unknown customer: no features in the online store for this customer token",
        )
        resumed = _traffic(service, tokens, "resume", "--reason", "incident closed")
        assert resumed.returncode == 0, resumed.stderr
        assert _ok(_score(client, customers[0]))["decision"] in (
            "approve",
            "refer",
            "decline",
        )
    records = [
        r
        for r in audit_records(workspace)
        if r["action"] in ("scoring.halt", "scoring.resume")
    ]
    assert [
        (r["action"], r["details"]["by"], r["details"]["reason"]) for r in records[-2:]
    ] == [
        ("scoring.halt", "paul.admin", "suspected data incident"),
        ("scoring.resume", "paul.admin", "incident closed"),
    ]


def test_with_no_champion_every_application_is_referred_to_a_person(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    """The champion decommissioned (its alias gone) with no replacement once gave
    503 to every application; a bank refers them to manual underwriting."""
    registry = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    champion = registry.get_model_version_by_alias(MODEL, "champion").version
    registry.delete_registered_model_alias(MODEL, "champion")
    try:
        assert "champion" not in _ok(admin.post("/v1/admin/reload"))["served"]
        with service.client(tokens["client"]) as client:
            referred = _score(client, customers[0])
            unknown = _score(client, "cus_" + "0" * 32)
        assert referred.status_code == 200, referred.text
        answer = referred.json()
        assert (answer["decision"], answer["score"], answer["model_version"]) == (
            "refer",
            None,
            None,
        )
        assert unknown.status_code == 404
        logged = wait_for(
            lambda: [
                d
                for d in _decisions(workspace)
                if d.get("request_id") == answer["request_id"]
            ],
            what="the referral logged",
        )
        assert logged[0]["fallback"] == "no champion: no champion is set"
    finally:
        registry.set_registered_model_alias(MODEL, "champion", champion)
        assert _ok(admin.post("/v1/admin/reload"))["served"]["champion"][
            "version"
        ] == int(champion)


def test_a_reviewer_overrides_and_an_applicant_appeals(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    with service.client(tokens["client"]) as client:
        decided = _ok(_score(client, customers[1]))
        appeal = _ok(
            client.post(
                f"/v1/decisions/{decided['request_id']}/appeal",
                json={"reason": "my income has risen"},
            )
        )
        unknown = client.post(
            "/v1/decisions/req_" + "f" * 32 + "/appeal", json={"reason": "x"}
        )
    assert appeal == {
        "request_id": decided["request_id"],
        "status": "open",
        "queue": "appeals",
    }
    assert unknown.status_code == 404
    with service.client(tokens["underwriter"]) as reviewer:
        override = _ok(
            reviewer.post(
                f"/v1/decisions/{decided['request_id']}/override",
                json={"decision": "refer", "reason": "income evidence requested"},
            )
        )
    assert override == {
        "request_id": decided["request_id"],
        "decision": "refer",
        "original_decision": decided["decision"],
    }
    queue = (
        (workspace / "data" / "08_reporting" / "serving" / "appeals.jsonl")
        .read_text()
        .splitlines()
    )
    assert json.loads(queue[-1])["request_id"] == decided["request_id"]
    actions = [
        (r["action"], r["details"]["by"])
        for r in audit_records(workspace)
        if r["action"] in ("scoring.override", "scoring.appeal")
    ]
    assert actions[-2:] == [
        ("scoring.appeal", "origination-system"),
        ("scoring.override", "uma.underwriter"),
    ]


def test_a_cut_off_edited_in_conf_refuses_the_champion_instead_of_deciding_otherwise(
    workspace: Path, tokens: dict[str, str], customers: list[str]
) -> None:
    """The service's cut-off and refer band come from conf/, which people in the
    workspace can edit; the champion was judged (and approved) at those of its
    signed gate report. A service configured otherwise refuses it, audited, and
    refers every application to a person instead of deciding at other bounds."""
    settings = workspace / "conf" / "test" / "governance.yml"
    shipped = settings.read_text()
    edited = yaml.safe_load(shipped)
    edited["governance"]["refer_band"] = 0.30
    settings.write_text(yaml.safe_dump(edited))
    try:
        moved = start_service(workspace)
        try:
            with moved.client(tokens["client"]) as client:
                answer = _ok(_score(client, customers[0]))
            with moved.client(tokens["admin"]) as client:
                state = _ok(client.get("/v1/models"))
        finally:
            moved.stop()
    finally:
        settings.write_text(shipped)
    assert (answer["decision"], answer["score"], answer["refer_up_to"]) == (
        "refer",
        None,
        0.45,
    )
    assert "champion" not in state["served"]
    assert state["refused"]["champion"] == (
        f"{MODEL} version 1 was judged at cut-off 0.15 (refer band up to 0.25); this "
        "service decides at 0.15 (up to 0.45): governance.yml differs from what was "
        "approved, not served"
    )
    refusals = [
        r
        for r in audit_records(workspace)
        if r["action"] == "scoring.model_refused"
        and "governance.yml differs" in r["details"]["reason"]
    ]
    assert refusals


def test_a_decommissioned_or_unapproved_version_is_never_served(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    admin: httpx.Client,
) -> None:
    version = _use_challenger(workspace, admin, {"kind": "none"})
    _lifecycle(
        workspace,
        "rita.riskofficer",
        "decommission",
        MODEL,
        str(version),
        "--reason",
        "retired in test",
    )
    registry = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    # Someone with registry access puts the alias back and clears the tag.
    registry.set_registered_model_alias(MODEL, "challenger", str(version))
    registry.delete_model_version_tag(MODEL, str(version), "status")
    state = _ok(admin.post("/v1/admin/reload"))
    assert "challenger" not in state["served"]
    assert "decommissioned" in state["refused"]["challenger"]
    # A version nobody approved, aliased directly in the registry.
    unapproved = int(
        registry.create_model_version(
            MODEL, registry.get_model_version(MODEL, "1").source
        ).version
    )
    registry.set_registered_model_alias(MODEL, "challenger", str(unapproved))
    state = _ok(admin.post("/v1/admin/reload"))
    assert (
        "no approval of a signed bundle in the audit log"
        in state["refused"]["challenger"]
    )
    traffic = admin.post(
        "/v1/admin/traffic", json={"challenger_weight": 0.5, "reason": "try"}
    )
    assert traffic.status_code == 409 and "no challenger" in traffic.json()["error"]
    registry.delete_registered_model_alias(MODEL, "challenger")
    assert _ok(admin.post("/v1/admin/reload"))["refused"] == {}


def _bundle_folder(root: Path, digest: str) -> Path:
    """The store's copy of a bundle (the key service's folder) the tests tamper with."""
    return root / ".bankplatform" / "bundles" / digest / "bundle"


def _reload_challenger(
    admin: httpx.Client, registry: MlflowClient, version: int
) -> dict[str, Any]:
    """Move the challenger alias away and back: the service loads it afresh."""
    registry.delete_registered_model_alias(MODEL, "challenger")
    _ok(admin.post("/v1/admin/reload"))
    registry.set_registered_model_alias(MODEL, "challenger", str(version))
    return _ok(admin.post("/v1/admin/reload"))


def test_only_the_approved_signed_bundle_is_served_and_the_champion_keeps_serving(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    admin: httpx.Client,
    tmp_path: Path,
) -> None:
    """A bundle with one byte changed, signed by another key, or other than the one
    its approval names is refused, each with its own reason on /v1/models; so is a
    champion alias on a version never promoted; the champion keeps serving."""
    import model_signing.signing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    version = _use_challenger(workspace, admin, {"kind": "none"})
    registry = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    records = audit_records(workspace)

    def digest_of(action: str, number: int) -> str:
        return [
            r["details"]["bundle_digest"]
            for r in records
            if r["action"] == action
            and r["resource"] == f"model:{MODEL}/{number}"
            and r["outcome"] == "allowed"
        ][-1]

    champion, challenger = (
        digest_of("model.promote", 1),
        digest_of("model.approve", version),
    )
    served = _ok(admin.get("/v1/models"))["served"]
    assert served["champion"]["bundle_digest"] == champion
    assert served["challenger"]["bundle_digest"] == challenger
    folder = _bundle_folder(workspace, challenger)
    saved = tmp_path / "saved"
    shutil.copytree(folder, saved)

    def restore() -> None:
        shutil.rmtree(folder)
        shutil.copytree(saved, folder)

    # One byte changed in the store.
    mlmodel = folder / f"{MODEL}-v{version}" / "model" / "MLmodel"
    mlmodel.write_bytes(mlmodel.read_bytes() + b" ")
    state = _reload_challenger(admin, registry, version)
    assert "challenger" not in state["served"]
    assert (
        "the bundle's files differ from what was signed"
        in state["refused"]["challenger"]
    )
    assert "model/MLmodel" in state["refused"]["challenger"]
    assert state["served"]["champion"]["version"] == 1
    restore()
    # The same files signed again with a key that is not the key service's.
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "other.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    model_signing.signing.Config().use_elliptic_key_signer(private_key=key_file).sign(
        folder / f"{MODEL}-v{version}", folder / "model.sig"
    )
    state = _reload_challenger(admin, registry, version)
    assert (
        "not signed by the key service's bundle key" in state["refused"]["challenger"]
    )
    restore()
    # The store's folder of the approved digest holds another (validly signed) bundle.
    shutil.rmtree(folder)
    shutil.copytree(_bundle_folder(workspace, champion), folder)
    state = _reload_challenger(admin, registry, version)
    assert (
        f"the store's bundle is {champion[:12]}..., the approved one {challenger[:12]}..."
        in state["refused"]["challenger"]
    )
    restore()
    state = _reload_challenger(admin, registry, version)
    assert state["served"]["challenger"]["bundle_digest"] == challenger
    assert "challenger" not in state["refused"]
    registry.delete_registered_model_alias(MODEL, "challenger")
    _ok(admin.post("/v1/admin/reload"))


def test_a_champion_alias_or_a_record_naming_an_unpackaged_bundle_changes_nothing(
    workspace: Path, admin: httpx.Client
) -> None:
    """The champion alias moved in the registry to a version approved but never
    promoted is refused and the champion keeps serving; approvals and promotions
    naming a bundle the key service did not package for that version are refused
    by the key service, and audited."""
    version = _use_challenger(workspace, admin, {"kind": "none"})
    registry = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    champion = [
        r["details"]["bundle_digest"]
        for r in audit_records(workspace)
        if r["action"] == "model.promote" and r["outcome"] == "allowed"
    ][-1]
    registry.set_registered_model_alias(MODEL, "champion", str(version))
    state = _ok(admin.post("/v1/admin/reload"))
    assert (
        f"version {version} (champion) has no promotion in the audit log"
        in (state["refused"]["champion"])
    )
    assert state["served"]["champion"]["version"] == 1  # still serving
    registry.set_registered_model_alias(MODEL, "champion", "1")
    assert "champion" not in _ok(admin.post("/v1/admin/reload"))["refused"]
    # Approvals and promotions naming a bundle the service did not package for
    # that version are refused by the key service, and audited.
    for user, action, digest in (
        ("victor.validator", "model.approve", "0" * 64),
        ("victor.validator", "model.approve", champion),
        ("rita.riskofficer", "model.promote", champion),
    ):
        with (
            acting_as(workspace, user) as security,
            pytest.raises(
                AccessDenied, match="names no bundle the key service packaged"
            ),
        ):
            security.audit_log().append(
                action, f"model:{MODEL}/{version}", "allowed", {"bundle_digest": digest}
            )
    denied = [
        r
        for r in audit_records(workspace)
        if r["action"] in ("model.approve", "model.promote")
        and r["resource"] == f"model:{MODEL}/{version}"
        and r["outcome"] == "denied"
    ]
    assert len(denied) == 3
    assert all("names no bundle" in r["details"]["reason"] for r in denied)
    registry.delete_registered_model_alias(MODEL, "challenger")
    _ok(admin.post("/v1/admin/reload"))


# Reconstruction ---------------------------------------------------------------


def _decided_and_audited(
    service: RunningService, tokens: dict[str, str], root: Path, customer: str
) -> dict[str, Any]:
    """One decision for ``customer``, returned once its audit record is written."""
    with service.client(tokens["client"]) as client:
        decided = _ok(_score(client, customer))
    wait_for(
        lambda: any(
            r["details"].get("request_id") == decided["request_id"]
            for r in audit_records(root)
            if r["action"] == "scoring.request"
        ),
        what="audited",
    )
    return decided


def test_a_decision_is_reconstructed_and_traced_to_the_raw_extract(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
    admin: httpx.Client,
) -> None:
    decided = _decided_and_audited(service, tokens, workspace, customers[2])
    request_id = decided["request_id"]
    auditor = {"BANKPLATFORM_USER": "audrey.auditor"}
    # A validator reads reports, not the whole audit log: the model's records and
    # this request's are enough to show the decision.
    shown = run_command(
        ["bankplatform", "decision", "show", request_id, "--env", "test"],
        workspace,
        extra_env={"BANKPLATFORM_USER": "victor.validator"},
    )
    assert shown.returncode == 0, shown.stderr
    assert (
        f"re-score: version 1 scores the logged inputs {decided['score']:.6f} again (logged {decided['score']:.6f})"
        in shown.stdout
    )
    traced = run_command(
        ["bankplatform", "decision", "trace", request_id, "--env", "test"],
        workspace,
        extra_env=auditor,
    )
    assert traced.returncode == 0, traced.stdout + traced.stderr
    names = [
        line.split()[1] for line in traced.stdout.splitlines() if line.startswith("ok ")
    ]
    assert names == [
        "decision",
        "model",
        "re-score",
        "approval",
        "promotion",
        "evidence",
        "training",  # the run
        "training",  # the data it made and read
        "input",
        "raw",
    ]
    assert "chain intact" in traced.stdout
    # An evidence notebook edited after evaluation breaks the chain there.
    notebook = next(
        (workspace / "data" / "08_reporting" / "governance").rglob("*.ipynb")
    )
    original = notebook.read_bytes()
    notebook.write_bytes(original + b" ")
    broken = run_command(
        ["bankplatform", "decision", "trace", request_id, "--env", "test"],
        workspace,
        extra_env=auditor,
    )
    notebook.write_bytes(original)
    assert broken.returncode == 1
    assert "the chain breaks at: evidence" in broken.stderr
    assert (
        f"{notebook.relative_to(workspace)} was changed after evaluation"
        in broken.stdout
    )
    # A decision line edited in the log no longer matches its audit record.
    log = next((workspace / "data" / "08_reporting" / "decisions").glob("*.jsonl"))
    text = log.read_text()
    lines = text.splitlines()
    (index,) = [
        i
        for i, line in enumerate(lines)
        if f'"request_id":"{request_id}"' in line and '"type":"decision"' in line
    ]

    def trace_edited(field: str, value: Any) -> subprocess.CompletedProcess[str]:
        """The trace with one field of the logged decision changed, then put back."""
        record = json.loads(lines[index])
        record[field] = value
        edited = [
            *lines[:index],
            json.dumps(record, separators=(",", ":")),
            *lines[index + 1 :],
        ]
        log.write_text("\n".join(edited) + "\n")
        try:
            return run_command(
                ["bankplatform", "decision", "trace", request_id, "--env", "test"],
                workspace,
                extra_env=auditor,
            )
        finally:
            log.write_text(text)

    logged = json.loads(lines[index])
    flipped = "approve" if logged["decision"] == "decline" else "decline"
    tampered = trace_edited("decision", flipped)
    assert (
        tampered.returncode == 1 and "the chain breaks at: decision" in tampered.stderr
    )
    # One byte of the customer token changed (the decision moved to another
    # customer): the line is no longer the one whose hash was audited.
    token = logged["customer_token"]
    shifted = trace_edited(
        "customer_token", token[:-1] + ("0" if token[-1] != "0" else "1")
    )
    assert shifted.returncode == 1
    assert "the decision log line is not the one audited" in shifted.stdout


def test_a_changed_training_set_or_feature_snapshot_breaks_the_trace(
    service: RunningService,
    tokens: dict[str, str],
    workspace: Path,
    customers: list[str],
) -> None:
    """The trace once passed after a byte of the training set or of the feature
    snapshots changed: the run recorded digests of the raw extract only."""
    request_id = _decided_and_audited(service, tokens, workspace, customers[3])[
        "request_id"
    ]
    auditor = {"BANKPLATFORM_USER": "audrey.auditor"}
    # One byte of the training set or of the feature snapshot, changed after the
    # run that trained the champion, breaks the chain there (it once passed).
    for made in (
        workspace / "data" / "05_model_input" / "training_set.parquet.enc",
        workspace / "data" / "04_feature" / "customer_features.parquet",
    ):
        assert made.is_file(), made
        saved = made.read_bytes()
        made.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
        try:
            edited = run_command(
                ["bankplatform", "decision", "trace", request_id, "--env", "test"],
                workspace,
                extra_env=auditor,
            )
        finally:
            made.write_bytes(saved)
        assert edited.returncode == 1, edited.stdout
        assert "the chain breaks at: training data" in edited.stderr
        assert "changed since the run" in edited.stdout


# TLS ---------------------------------------------------------------------------


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Holds a port and answers like a healthy service; keeps every header."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.extend(f"{k}: {v}" for k, v in self.headers.items())
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_: Any) -> None:
        pass


def test_a_taken_port_stops_serve_and_gets_no_token(workspace: Path) -> None:
    """`make demo` once sent the workspace's bearer token to whatever held port
    8080. The server stops in one line when its port is taken; the shipped
    clients check who answers before a token goes out (the `traffic` commands of
    the other tests are the positive case: the real service proves itself)."""
    from bankplatform.errors import BankplatformError
    from bankplatform.serving.remote import ScoringClient, wait_until_up

    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    port = impostor.server_address[1]
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        started = run_command(
            ["bankplatform", "serve", "--env", "test", "--port", str(port)], workspace
        )
        assert started.returncode == 1
        assert started.stderr.strip() == (
            f"Error: port {port} on 127.0.0.1 is taken by another process: stop it, "
            "or serve on another port (--port, or serving.port)"
        )
        # This workspace started no service there: no key, no token.
        with pytest.raises(BankplatformError) as unkeyed:
            ScoringClient(url, "a-secret-token", None, None).get("/v1/models")
        assert str(unkeyed.value) == (
            f"no scoring service started from this workspace listens on port {port} "
            "(no listener key): no token sent; start it with `bankplatform serve`"
        )
        # A key left by an earlier service on that port does not help the impostor.
        stale = workspace / ".bankplatform-run" / f"scoring-{port}.key"
        stale.write_text("ab" * 32)
        simulated = run_command(
            ["bankplatform", "simulate", "traffic", "--env", "test", "--requests", "3"],
            workspace,
            extra_env={"BANKPLATFORM_SCORING_URL": url},
        )
        assert simulated.returncode == 1
        assert simulated.stderr.strip() == (
            f"Error: the process answering at {url} is not the scoring service this "
            "workspace started (the port is taken by another?): no token sent"
        )
        with pytest.raises(BankplatformError, match="no token sent"):
            wait_until_up(ScoringClient(url, "a-secret-token", None, b"k" * 32), 5)
        assert not [h for h in _Impostor.seen if h.lower().startswith("authorization")]
        assert _Impostor.seen  # it was asked, and told nothing
    finally:
        impostor.shutdown()
        (workspace / ".bankplatform-run" / f"scoring-{port}.key").unlink(
            missing_ok=True
        )


def test_tls_serves_https_only_and_a_production_workspace_refuses_plain_http(
    workspace: Path, tokens: dict[str, str], customers: list[str], tmp_path: Path
) -> None:
    import ssl

    made = run_command(
        ["bankplatform", "tls", "init", "--service", "scoring", "--env", "test"],
        workspace,
    )
    assert made.returncode == 0, made.stderr
    cert = workspace / ".bankplatform-tls" / "scoring.crt"
    assert (workspace / ".bankplatform-tls" / "scoring.key").stat().st_mode & 0o077 == 0
    trust = ssl.create_default_context(cafile=str(cert))
    secure = start_service(workspace, "--tls", scheme="https", verify=trust)
    try:
        with secure.client(tokens["client"], verify=trust) as client:
            assert _ok(_score(client, customers[0]))["variant"] == "champion"
        plain = secure.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/healthz", timeout=5)
    finally:
        secure.stop()
    production = tmp_path / "production"
    shutil.copytree(
        workspace, production, ignore=shutil.ignore_patterns("*.sock", "mlruns", "data")
    )
    manifest = production / ".kedro.yml"
    manifest.write_text(manifest.read_text() + "production: true\n")
    refused = run_command(["bankplatform", "serve", "--env", "test"], production)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "Error: a production workspace serves over TLS only: start with --tls "
        "(and `bankplatform tls init` or the bank's certificate)"
    )


def test_the_online_lookup_returns_what_feast_get_online_features_returns(
    workspace: Path, customers: list[str]
) -> None:
    from feast import FeatureStore

    from bankplatform.feature_repo.definitions import credit_default_v1
    from bankplatform.feature_repo.services import service_features
    from bankplatform.serving.scoring import OnlineFeatures, UnknownCustomer

    store = FeatureStore(repo_path=str(workspace / "data" / "04_feature"))
    refs = service_features(credit_default_v1)
    lookup = OnlineFeatures(store, refs)
    online = [r for r in refs if not r.startswith("loan_application_terms:")]
    for customer in customers[:200]:
        expected = store.get_online_features(
            features=online, entity_rows=[{"customer_token": customer}]
        ).to_dict()
        expected.pop("customer_token")
        found = lookup.of(customer)
        assert list(found.values) == [r.partition(":")[2] for r in online]
        assert found.values == {name: values[0] for name, values in expected.items()}
        # The batch's latest monthly snapshot, as Feast itself reports it.
        stamps = store.get_online_features(
            features=online, entity_rows=[{"customer_token": customer}]
        ).to_dict(include_event_timestamps=True)
        assert found.as_of is not None
        assert int(found.as_of.timestamp()) == min(
            values[0]
            for name, values in stamps.items()
            if name.endswith("__ts") and name != "customer_token__ts"  # the key's: 0
        )
    with pytest.raises(UnknownCustomer):
        lookup.of("cus_" + "0" * 32)


def test_killed_under_load_every_answered_decision_can_be_traced(
    workspace: Path, tokens: dict[str, str], customers: list[str]
) -> None:
    """kill -9 under load once left answered decisions with no decision line or
    no audit record (trace failed for them forever, an appeal got 404). Now an
    answer waits for its durable line, and the next start appends the audit
    records the dead process had queued."""
    doomed = start_service(workspace)
    answered: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def load(offset: int) -> None:
        with doomed.client(tokens["client"]) as client:
            for customer in customers[offset::4]:
                if stop.is_set():
                    return
                try:
                    response = _score(client, customer)
                except httpx.HTTPError as error:
                    errors.append(type(error).__name__)
                    return
                if response.status_code == 200:
                    answered.append(response.json()["request_id"])

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered) >= 300 or None, timeout=120, what="load")
    doomed.process.kill()  # SIGKILL: nothing is flushed
    doomed.process.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    # A line planted among audited ones while the service is down: never vouched for.
    log = sorted((workspace / "data" / "08_reporting" / "decisions").glob("*.jsonl"))[
        -1
    ]
    kept = log.read_bytes().splitlines(keepends=True)
    planted = json.loads(kept[0])
    planted.update(type="decision", request_id="req_" + "ab" * 16)
    log.write_bytes(
        kept[0]
        + json.dumps(planted, separators=(",", ":")).encode()
        + b"\n"
        + b"".join(kept[1:])
    )
    restarted = start_service(workspace)
    try:
        assert not [
            r
            for r in audit_records(workspace)
            if r["resource"] == f"request:{planted['request_id']}"
        ]
        lines = {
            d["request_id"]: d
            for d in _decisions(workspace)
            if d["type"] == "decision" and d["request_id"] in set(answered)
        }
        assert set(lines) == set(answered)  # no answer without its durable line
        audited = {
            r["details"]["request_id"]: r
            for r in audit_records(workspace)
            if r["action"] == "scoring.request"
            and r["details"].get("request_id") in lines
        }
        assert set(audited) == set(answered), len(set(answered) - set(audited))
        from bankplatform.serving.records import decision_lines

        hashes = {
            record["request_id"]: sha256
            for path in sorted(
                (workspace / "data" / "08_reporting" / "decisions").glob("*.jsonl")
            )
            for sha256, record in decision_lines(path)
            if record.get("request_id") in lines and record["type"] == "decision"
        }
        assert {
            k: r["details"]["decision_sha256"] for k, r in audited.items()
        } == hashes
        replayed = [k for k, r in audited.items() if r["details"].get("replayed")]
        # The last answer before the kill: traced, and appealed on the new process.
        last = replayed[-1] if replayed else answered[-1]
        traced = run_command(
            ["bankplatform", "decision", "trace", last, "--env", "test"], workspace
        )
        assert traced.returncode == 0, traced.stdout + traced.stderr
        if replayed:  # shown, since the line vouched for itself
            assert "replayed at a restart from the line itself" in traced.stdout
        with restarted.client(tokens["client"]) as client:
            appealed = client.post(
                f"/v1/decisions/{last}/appeal", json={"reason": "please look again"}
            )
        assert appealed.status_code == 200, appealed.text
        print(f"answered {len(answered)}, replayed {len(replayed)}, errors {errors}")
    finally:
        restarted.stop()
