"""A client of a running scoring service (the ``traffic`` commands use it)."""

from __future__ import annotations

import os
import ssl
import time
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httpx

from bankplatform.errors import BankplatformError
from bankplatform.manifest import load_manifest
from bankplatform.project import env_config_loader, find_project_root, resolve_env
from bankplatform.security.client import TOKEN_ENV_VAR
from bankplatform.security.runtime import activate, workspace_security
from bankplatform.serving.settings import load_serving_settings

if TYPE_CHECKING:
    import pandas as pd

ADMIN_ROLE = "platform_admin"
SIMULATED_CLIENT = ("origination-system", "scoring_client")
# Where the service listens when it is not where serving.yml says (another port).
URL_ENV_VAR = "BANKPLATFORM_SCORING_URL"


class ScoringClient:
    """Authenticated calls to one scoring service."""

    def __init__(self, base_url: str, token: str, ca_file: str | None = None) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=30.0,
        )

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
        return cls(
            os.environ.get(URL_ENV_VAR)
            or f"{scheme}://{settings.host}:{settings.port}",
            token,
            str(settings.tls_cert) if settings.tls else None,
        )

    def healthy(self) -> bool:
        """Whether ``/healthz`` answers OK (raises on no connection)."""
        return bool(self._http.get("/healthz").status_code == HTTPStatus.OK)

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
            response = self._http.request(method, path, json=body)
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
    """Wait for ``/healthz``.

    Raises:
        BankplatformError: Nothing answered in time.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.healthy():
                return
        except httpx.TransportError:
            pass
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
