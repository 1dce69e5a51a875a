"""The scoring service's parts that need no server: routing, the rollback
policy, reason codes, request bodies, and the model's one-row path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bankplatform.serving.schemas import Application
from bankplatform.serving.scoring import reason_codes
from bankplatform.serving.settings import RollbackPolicy
from bankplatform.serving.traffic import (
    ReleaseMonitor,
    customer_bucket,
    routes_to_challenger,
)

pytestmark = pytest.mark.unit


def _tokens(count: int, seed: int = 0) -> list[str]:
    return [
        f"cus_{hashlib.sha256(f'{seed}-{i}'.encode()).hexdigest()[:32]}"
        for i in range(count)
    ]


@pytest.mark.parametrize("weight", [0.05, 0.2, 0.5, 0.9])
def test_the_canary_split_is_within_two_points_of_the_weight_over_10k_customers(
    weight: float,
) -> None:
    customers = _tokens(10_000)
    share = np.mean([routes_to_challenger(c, weight) for c in customers])
    assert abs(share - weight) <= 0.02


def test_a_customer_stays_with_one_model_and_a_larger_weight_only_adds_customers() -> (
    None
):
    customers = _tokens(2_000, seed=1)
    assert [customer_bucket(c) for c in customers] == [
        customer_bucket(c) for c in customers
    ]
    at_10 = {c for c in customers if routes_to_challenger(c, 0.1)}
    at_30 = {c for c in customers if routes_to_challenger(c, 0.3)}
    assert at_10 < at_30  # raising the weight never moves a customer back
    assert not any(routes_to_challenger(c, 0.0) for c in customers)
    assert all(routes_to_challenger(c, 1.0) for c in customers)


def _monitor(**policy: float) -> ReleaseMonitor:
    return ReleaseMonitor(RollbackPolicy(window_seconds=60, min_requests=20, **policy))


def test_no_verdict_before_min_requests_then_the_error_rate_breaches() -> None:
    monitor = _monitor(max_error_rate=0.05)
    verdicts = [
        monitor.observe(failed=i % 5 == 0, latency_ms=1.0, shift=0.0) for i in range(20)
    ]
    assert verdicts[:19] == [None] * 19
    assert (
        verdicts[19]
        == "challenger error rate 20.0% over the last 20 requests is above 5.0%"
    )


def test_p99_latency_and_score_shift_breach_and_a_healthy_window_does_not() -> None:
    slow = _monitor(max_p99_ms=100)
    assert [slow.observe(failed=False, latency_ms=200.0, shift=0.0) for _ in range(20)][
        -1
    ] == ("challenger p99 latency 200 ms over the last 20 requests is above 100 ms")
    shifted = _monitor(max_score_shift=0.1)
    verdict = [
        shifted.observe(failed=False, latency_ms=1.0, shift=0.3) for _ in range(20)
    ][-1]
    assert verdict is not None and "differ from the champion's by 0.300" in verdict
    healthy = _monitor()
    assert {
        healthy.observe(failed=False, latency_ms=2.0, shift=0.01) for _ in range(500)
    } == {None}
    assert healthy.summary() == {"requests": 500, "error_rate": 0.0, "p99_ms": 2.0}


def test_reason_codes_are_the_largest_positive_contributions_in_order() -> None:
    features = ["income", "card_utilisation", "late_fee_count_365d", "purpose"]
    contributions = np.array([-0.4, 0.5, 0.2, 0.0])
    row = {
        "income": 20_000.0,
        "card_utilisation": 0.9,
        "late_fee_count_365d": 2.0,
        "purpose": "car",
    }
    assert reason_codes(features, contributions, row, 4) == [
        {"feature": "card_utilisation", "value": 0.9, "contribution": 0.5},
        {"feature": "late_fee_count_365d", "value": 2.0, "contribution": 0.2},
    ]
    assert reason_codes(features, contributions, row, 1) == [
        {"feature": "card_utilisation", "value": 0.9, "contribution": 0.5}
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"amount": float("nan")},
        {"amount": float("inf")},
        {"amount": -1.0},
        {"amount": 0},
        {"amount": True},
        {"amount": "5000"},
        {"term_months": 37},
        {"term_months": "36"},
        {"purpose": "yacht"},
        {"customer_token": "cus_123"},
        {"gender": "F"},
    ],
)
def test_an_application_out_of_contract_is_refused(change: dict[str, object]) -> None:
    body = {
        "customer_token": "cus_" + "0" * 32,
        "amount": 5000.0,
        "term_months": 36,
        "purpose": "car",
        **change,
    }
    with pytest.raises(ValidationError):
        Application.model_validate(body)


def test_json_integers_and_whole_floats_are_accepted_where_the_schema_says_so() -> None:
    body = (
        '{"customer_token": "cus_'
        + "0" * 32
        + '", "amount": 5000, "term_months": 36.0, "purpose": "car"}'
    )
    application = Application.model_validate_json(body)
    assert (application.amount, application.term_months) == (5000.0, 36)


def test_the_one_row_path_scores_exactly_as_the_pyfunc_and_the_training_rule(
    tmp_path: Path,
) -> None:
    import mlflow

    from bankplatform.training.boosting import fit, predict
    from bankplatform.training.pd_model import CreditDefaultModel
    from tests.code.test_training import small_boosting_config, synthetic_training_set

    config = small_boosting_config(tmp_path)
    frame = synthetic_training_set(400)
    fitted = fit(frame, frame, config)
    (tmp_path / "booster.ubj").write_bytes(fitted.model)
    (tmp_path / "design.json").write_text(
        pd.Series(
            {"features": config.features, "categories": config.categories}
        ).to_json()
    )
    model = CreditDefaultModel()
    model.load_context(
        mlflow.pyfunc.PythonModelContext(
            {
                "booster": str(tmp_path / "booster.ubj"),
                "design": str(tmp_path / "design.json"),
            },
            None,
        )
    )
    rows = frame[config.features].head(200).copy()
    rows.loc[rows.index[:20], "purpose"] = "yacht"  # unknown level: missing
    rows.loc[rows.index[20:30], "card_utilisation"] = np.nan
    expected = predict(fitted.model, rows, config)
    by_frame = model.predict(None, rows)
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in rows.to_dict("records")
    ]
    contributions = model.contributions_of(records)
    by_row = 1.0 / (1.0 + np.exp(-contributions.sum(axis=1)))
    assert np.max(np.abs(by_frame - expected)) <= 1e-12
    assert np.max(np.abs(by_row - expected)) <= 1e-6  # float32 contributions, summed


def test_the_client_checks_the_listener_with_the_key_written_once_bound(
    tmp_path: Path,
) -> None:
    """`make demo` starts `simulate traffic` while `serve` is still loading: the
    client is made before the key exists and reads it when the service answers.
    A real HTTP server answers ``/healthz?challenge=`` as the service does."""
    import http.server
    import threading
    from urllib.parse import parse_qs, urlparse

    from bankplatform.errors import BankplatformError
    from bankplatform.serving.listener import (
        key_file,
        listener_proof,
        read_listener_key,
        write_listener_key,
    )
    from bankplatform.serving.remote import ScoringClient

    class Service(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            challenge = parse_qs(urlparse(self.path).query).get("challenge", [""])[0]
            key = read_listener_key(tmp_path, port) or b""
            body = (
                f'{{"status": "ok", "proof": "{listener_proof(key, challenge, port)}"}}'
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{port}"
        client = ScoringClient(url, "token", None, key_file(tmp_path, port))
        key = write_listener_key(tmp_path, port)  # after the client was made
        assert key_file(tmp_path, port).stat().st_mode & 0o777 == 0o600
        client.verify_listener()  # the proof matches: verified
        other = ScoringClient(url, "token", None, b"x" * 32)
        with pytest.raises(BankplatformError, match="no token sent"):
            other.verify_listener()
        assert len(key) == 32 and read_listener_key(tmp_path, port) == key
    finally:
        server.shutdown()
