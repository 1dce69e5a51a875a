"""A client of a running scoring service (the ``traffic`` commands use it)."""

from __future__ import annotations

import hmac
import os
import ssl
import time
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bankplatform.errors import BankplatformError
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader, find_project_root, resolve_env
from bankplatform.security.client import TOKEN_ENV_VAR
from bankplatform.security.runtime import activate, workspace_security
from bankplatform.serving.listener import (
    key_file,
    listener_proof,
    new_challenge,
    read_key_file,
)
from bankplatform.serving.settings import load_serving_settings

if TYPE_CHECKING:
    import pandas as pd

ADMIN_ROLE = "platform_admin"
SIMULATED_CLIENT = ("origination-system", "scoring_client")
# Where the service listens when it is not where serving.yml says (another port).
URL_ENV_VAR = "BANKPLATFORM_SCORING_URL"


class ScoringClient:
    """Authenticated calls to one scoring service."""

    def __init__(
        self,
        base_url: str,
        token: str,
        ca_file: str | None = None,
        listener_key: bytes | Path | None = None,
    ) -> None:
        """A client of the service at ``base_url``.

        Args:
            base_url: ``http(s)://host:port``.
            token: The bearer token, sent only once the service is verified.
            ca_file: HTTPS: the certificate (or CA) the service must present.
            listener_key: Plain HTTP: the key of the service this workspace
                started on that port (``serving.listener``), or the file it is
                in (read when the service first answers: it is written once the
                service is bound); ``None``: no token is sent.
        """
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self.base_url = base_url
        self._token = token
        self._listener_key = listener_key
        self._verified = base_url.startswith("https://")
        self._http = httpx.Client(base_url=base_url, verify=verify, timeout=30.0)

    @classmethod
    def for_workspace(
        cls, env: str | None, as_user: tuple[str, str] | None = None
    ) -> ScoringClient:
        """The service ``serving.yml`` says this env listens on, with the caller's token.

        ``$BANKPLATFORM_SCORING_URL`` overrides the address. The token is
        ``$BANKPLATFORM_TOKEN``; without one, in a developer workspace,
        the key service issues the acting user a 5-minute admin token (it refuses
        if they are not a ``platform_admin``), or ``as_user`` (user, role) a token.
        """
        root = find_project_root()
        chosen = resolve_env(load_manifest(root), env)
        settings = load_serving_settings(env_config_loader(root, chosen), root)
        token = os.environ.get(TOKEN_ENV_VAR, "")
        if not token:
            security = workspace_security(chosen)
            activate(security)
            user, role = as_user or (security.starter().name, ADMIN_ROLE)
            token, _ = security.tokens().issue(user, [role], timedelta(minutes=5))
        scheme = "https" if settings.tls else "http"
        url = (
            os.environ.get(URL_ENV_VAR) or f"{scheme}://{settings.host}:{settings.port}"
        )
        port = httpx.URL(url).port or settings.port
        return cls(
            url,
            token,
            str(settings.tls_cert) if settings.tls else None,
            key_file(root, port),
        )

    def healthy(self) -> bool:
        """Whether ``/healthz`` answers OK (raises on no connection); no token."""
        return bool(self._http.get("/healthz").status_code == HTTPStatus.OK)

    def verify_listener(self) -> None:
        """Before the first token goes out on plain HTTP: the process answering
        must prove it holds the key of the service this workspace started there.

        Raises:
            BankplatformError: It does not (the port is another process's), or
                this workspace started no service on that port.
        """
        if self._verified:
            return
        port = httpx.URL(self.base_url).port
        if isinstance(self._listener_key, Path):
            self._listener_key = read_key_file(self._listener_key)
        if self._listener_key is None:
            msg = f"no scoring service started from this workspace listens on port {port} (no listener key): no token sent; start it with `bankplatform serve`"
            raise BankplatformError(msg)
        challenge = new_challenge()
        try:
            answer = self._http.get("/healthz", params={"challenge": challenge})
            proof = str(answer.json().get("proof", ""))
        except (httpx.HTTPError, ValueError, AttributeError):
            proof = ""
        expected = listener_proof(self._listener_key, challenge, port or 0)
        if not hmac.compare_digest(proof, expected):
            msg = f"the process answering at {self.base_url} is not the scoring service this workspace started (the port is taken by another?): no token sent"
            raise BankplatformError(msg)
        self._verified = True

    def get(self, path: str) -> dict[str, Any]:
        """GET a route; the service's refusal raises in its own words."""
        return self._call("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body; the service's refusal raises in its own words."""
        return self._call("POST", path, body)

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            self.verify_listener()
            response = self._http.request(
                method,
                path,
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.TransportError as error:
            msg = f"no scoring service answers at {self.base_url} ({type(error).__name__}); start it with `bankplatform serve`"
            raise BankplatformError(msg) from None
        try:
            content: dict[str, Any] = response.json()
        except ValueError:
            content = {"error": f"answered {response.status_code} without JSON"}
        if response.status_code >= 400:  # noqa: PLR2004
            msg = f"scoring service refused ({response.status_code}): {content.get('error')}"
            raise BankplatformError(msg)
        return content


def wait_until_up(client: ScoringClient, seconds: float) -> None:
    """Wait for ``/healthz``, then check who answers before any token goes out:
    whatever answers first must be the service this workspace started.

    Raises:
        BankplatformError: Nothing answered in time, or another process did.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.healthy()  # any answer at all: something listens there
        except httpx.TransportError:
            pass
        else:
            client.verify_listener()
            return
        if time.monotonic() > deadline:
            msg = f"no scoring service answered at {client.base_url} within {seconds:.0f} s; start it with `bankplatform serve`"
            raise BankplatformError(msg)
        time.sleep(0.5)


def simulate_applications(
    client: ScoringClient, applications: pd.DataFrame
) -> dict[str, Any]:
    """Send each application (``customer_token``, ``amount``, ``term_months``,
    ``purpose``); a summary of the answers."""
    decisions: dict[str, int] = {}
    last = ""
    for body in applications.to_dict(orient="records"):
        answer = client.post("/v1/score", {str(k): v for k, v in body.items()})
        decisions[answer["decision"]] = decisions.get(answer["decision"], 0) + 1
        last = str(answer["request_id"])
    return {"requests": len(applications), **decisions, "last_request_id": last}
