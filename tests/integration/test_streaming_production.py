"""The production profile's stream path: an existing JetStream instead of the
embedded server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from bankplatform.streaming.broker import ADMIN, EDGE, FEATURES
from bankplatform.streaming.settings import StreamingSettings
from tests.conftest import REPO, run_command
from tests.streams import ENV, assert_online_equals_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_existing_jetstream_stands_in_for_the_bank_s_cluster(
    streaming_workspace: Path,
) -> None:
    """The production profile's path: no embedded server, the machine's own
    JetStream on 127.0.0.1:4222 (plain: the only TLS-less URL accepted is a
    loopback one), under names of this test's own."""
    import uuid

    import nats
    import yaml

    root = streaming_workspace
    prod = yaml.safe_load((REPO / "conf" / "prod" / "streaming.yml").read_text())
    prod_settings = StreamingSettings.model_validate(prod["streaming"])
    assert prod_settings.server.startswith("tls://")
    assert set(prod_settings.credentials) == {EDGE, FEATURES, ADMIN}
    suffix = uuid.uuid4().hex[:8]
    names = {
        "stream": f"BOOKINGS_{suffix}",
        "subject": f"bookings.{suffix}.events",
        "dead_letter_stream": f"BOOKINGS_DEAD_{suffix}",
        "dead_letter_subject": f"bookings.{suffix}.dead_letter",
        "consumer": f"online-features-{suffix}",
        "ack_wait_seconds": 5,
    }
    (root / "conf" / ENV / "streaming.yml").write_text(
        yaml.safe_dump({"streaming": names})
    )
    external = {"BANKPLATFORM_STREAM_SERVER": "nats://127.0.0.1:4222"}

    def command(*args: str) -> Any:
        result = run_command(["bankplatform", *args, "--env", ENV], root, 240, external)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    try:
        command(
            "simulate", "bookings", "--rate", "200", "--seconds", "2", "--seed", "9"
        )
        command("stream", "--until-idle", "2")
        status = command("stream", "status").stdout
        assert f"stream {names['stream']}:" in status and "lag 0" in status
        assert not (root / ".bankplatform" / "stream" / "run").exists()  # never started

        async def held() -> int:
            connection = await nats.connect("nats://127.0.0.1:4222")
            try:
                info = await connection.jetstream().stream_info(names["stream"])
                return int(info.state.messages)
            finally:
                await connection.close()

        assert asyncio.run(held()) >= 350
        os.environ["BANKPLATFORM_STREAM_SERVER"] = external[
            "BANKPLATFORM_STREAM_SERVER"
        ]
        assert_online_equals_batch(root)
    finally:
        os.environ.pop("BANKPLATFORM_STREAM_SERVER", None)

        async def remove() -> None:
            connection = await nats.connect("nats://127.0.0.1:4222")
            try:
                for stream in (names["stream"], names["dead_letter_stream"]):
                    try:
                        await connection.jetstream().delete_stream(stream)
                    except Exception:  # noqa: S110 - not created
                        pass
            finally:
                await connection.close()

        asyncio.run(remove())
