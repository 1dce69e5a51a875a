"""Notebook 07 on a workspace with a champion, and the scoring service deciding on
the streamed features."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bankplatform.streaming.broker import EmbeddedServer
from tests.conftest import run_command
from tests.streams import ENV, stream_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_notebook_shows_a_booking_move_features_and_score_and_decisions_see_it(
    governed_workspace: Path, tmp_path: Path
) -> None:
    """Notebook 07 on a workspace with a champion: bookings published and counted,
    one customer's features and score before and after; then the scoring service
    decides on the streamed features and its decision line says as of when."""
    from tests.conftest import notebook_summary
    from tests.helpers import champion_workspace, start_service, token

    root = champion_workspace(governed_workspace, tmp_path / "champion")
    try:
        summary = notebook_summary("07_streaming_features.ipynb", root, tmp_path)
        assert summary["published"] >= 250
        assert summary["counted"] + summary["dead_letters"] == summary["published"]
        assert summary["customers_moved"] > 100
        assert summary["as_of_before"] == "2026-01-01T00:00:00+00:00"
        assert summary["as_of_after"] > summary["as_of_before"]
        assert "txn_count_7d" in summary["features_changed"]
        assert 0 < summary["score_before"] < 1 and 0 < summary["score_after"] < 1
        service = start_service(root)
        try:
            with service.client(
                token(root, "origination-system", "scoring_client")
            ) as client:
                answer = client.post(
                    "/v1/score",
                    json={
                        "customer_token": summary["customer"],
                        "amount": 8_000.0,
                        "term_months": 36,
                        "purpose": "car",
                    },
                )
            assert answer.status_code == 200, answer.text
            request_id = answer.json()["request_id"]
            shown = run_command(
                ["bankplatform", "decision", "show", request_id, "--env", ENV], root
            )
            assert shown.returncode == 0, shown.stderr[-2000:]
        finally:
            service.stop()
        from bankplatform.serving.records import decision_lines

        folder = root / "data" / "08_reporting" / "decisions"
        (line,) = [
            record
            for path in sorted(folder.glob("*.jsonl"))
            for _, record in decision_lines(path)
            if record.get("request_id") == request_id
        ]
        # Feast keeps whole seconds of the event time.
        streamed = pd.Timestamp(summary["as_of_after"]).floor("s")
        assert pd.Timestamp(line["features_as_of"]) == streamed
        assert line["score"] == pytest.approx(summary["score_after"], abs=1e-6)
    finally:
        EmbeddedServer(stream_settings(root), root).stop()
