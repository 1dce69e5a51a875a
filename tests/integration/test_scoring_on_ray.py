"""The same scoring app under Ray Serve (``bankplatform serve --engine ray``) on a
local Ray: it answers with the champion, refuses without a token, and audits."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    audit_records,
    champion_workspace,
    start_service,
    token,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


def test_the_app_serves_under_ray_serve(
    governed_workspace: Path, tmp_path: Path
) -> None:
    root = champion_workspace(governed_workspace, tmp_path)
    customer = pd.read_parquet(
        root / "data" / "04_feature" / "customer_features.parquet",
        columns=["customer_token"],
    )["customer_token"].iloc[0]
    service = start_service(root, "--engine", "ray")
    try:
        with service.client(
            token(root, "origination-system", "scoring_client")
        ) as client:
            answer = client.post(
                "/v1/score",
                json={
                    "customer_token": customer,
                    "amount": 5000.0,
                    "term_months": 36,
                    "purpose": "car",
                },
            )
        with service.client() as anonymous:
            refused = anonymous.post("/v1/score", json={})
    finally:
        service.process.send_signal(signal.SIGINT)
        service.process.wait(timeout=120)
    # The app removed and the Ray started here stopped, then a normal exit.
    assert service.process.returncode == 0, service.log.read_text()[-2000:]
    assert answer.status_code == 200, answer.text
    assert (answer.json()["model_version"], answer.json()["variant"]) == (1, "champion")
    assert refused.status_code == 401
    request_id = answer.json()["request_id"]
    record = wait_for(
        lambda: [
            r
            for r in audit_records(root)
            if r["action"] == "scoring.request"
            and r["details"].get("request_id") == request_id
        ],
        what="audited",
    )
    assert (record[0]["actor"], record[0]["details"]["client"]) == (
        "svc-scoring",
        "origination-system",
    )
