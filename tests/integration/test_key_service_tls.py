"""The key service on its own host: TLS over TCP, verified with its certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from bankplatform.project import env_config_loader
from bankplatform.security.client import KeyServiceUnavailable
from bankplatform.security.runtime import open_security
from bankplatform.security.tls import issue_certificate, local_ca
from tests.conftest import REPO, command_env, make_workspace, run_command

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tls_workspace(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = make_workspace(tmp_path / "workspace")
    url = f"https://127.0.0.1:{_free_port()}"
    security = yaml.safe_load((REPO / "conf" / "base" / "security.yml").read_text())
    security["security"]["keyservice_url"] = url
    (root / "conf" / "test" / "security.yml").write_text(
        yaml.safe_dump({"security": security["security"]})
    )
    made = run_command(["bankplatform", "tls", "init", "--env", "test"], root)
    assert made.returncode == 0, made.stderr
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bankplatform.keyservice",
            "--root",
            str(root),
            "--env",
            "test",
            "--idle-seconds",
            "0",
        ],
        cwd=root,
        env=command_env(),
    )
    trust = ssl.create_default_context(
        cafile=str(root / ".bankplatform-tls" / "keyservice.crt")
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", verify=trust)
            break
        except httpx.TransportError:
            assert service.poll() is None, "the key service exited"
            time.sleep(0.1)
    yield root, url
    service.terminate()
    service.wait(timeout=30)


def test_clients_reach_the_service_over_verified_tls(
    tls_workspace: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = tls_workspace
    monkeypatch.delenv("BANKPLATFORM_TOKEN", raising=False)
    monkeypatch.setenv("BANKPLATFORM_USER", "audrey.auditor")
    security = open_security(env_config_loader(root, "test"), root, "test")
    assert security.starter().name == "audrey.auditor"
    written = security.audit_log().append("tls.check", "keyring", "allowed")
    assert written["seq"] >= 1
    # Plain HTTP to the TLS port gets nowhere; the key stays the service's.
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https", "http") + "/healthz", timeout=5)
    # A client that trusts another CA's certificate refuses to talk to it.
    issue_certificate(
        local_ca(root / "other-ca"),
        root / "other.crt",
        root / "other.key",
        ["127.0.0.1"],
    )
    (root / ".bankplatform-tls" / "keyservice.crt").write_bytes(
        (root / "other.crt").read_bytes()
    )
    stranger = open_security(env_config_loader(root, "test"), root, "test")
    with pytest.raises(KeyServiceUnavailable, match=f"at {url} cannot be reached"):
        stranger.starter()
