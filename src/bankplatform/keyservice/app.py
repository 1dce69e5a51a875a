"""The key and audit service's HTTP API (FastAPI), served on a Unix socket.

Every route but ``/healthz`` authenticates the caller on every call (a bearer
token, or in a developer workspace the local session credential and a declared
user name). Errors are one line of JSON, ``{"error": "..."}``: 400 bad request,
401 no acceptable identity, 403 denied, 503 the audit log cannot be written.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bankplatform.errors import BankplatformError
from bankplatform.keyservice.authority import (
    BadRequest,
    Credential,
    KeyAuthority,
)
from bankplatform.security.audit import AuditWriteError
from bankplatform.security.kms import KeyManagementError
from bankplatform.security.policy import AccessDenied, IdentityError, Principal

_STATUS: list[tuple[type[Exception], int]] = [
    (BadRequest, 400),
    (IdentityError, 401),
    (AccessDenied, 403),
    (KeyManagementError, 409),
    (AuditWriteError, 503),
    (BankplatformError, 400),
]


class DecideRequest(BaseModel):
    action: str = Field(max_length=64)
    resource: str = Field(max_length=300)
    details: dict[str, Any] = {}


class DatasetRequest(BaseModel):
    dataset: str = Field(max_length=200)
    operation: Literal["read", "write"] = "read"


class CatalogRequest(BaseModel):
    datasets: dict[str, str] = Field(max_length=10_000)


class UnwrapRequest(BaseModel):
    dataset: str = Field(max_length=200)
    version: int = Field(ge=1)
    wrapped: str = Field(max_length=400)


class PseudonymRequest(BaseModel):
    kind: str = Field(max_length=8)
    values: list[str | None]


class TokenRequest(BaseModel):
    user: str = Field(max_length=200)
    roles: list[str] = Field(min_length=1, max_length=20)
    ttl_minutes: int = Field(ge=1, le=10_000_000)


class RevokeRequest(BaseModel):
    jti: str = Field(max_length=200)
    reason: str = Field(max_length=500)


class AppendRequest(BaseModel):
    action: str = Field(max_length=64)
    resource: str = Field(max_length=300)
    outcome: Literal["allowed", "denied", "failed"]
    details: dict[str, Any] = {}


class BatchRequest(BaseModel):
    records: list[AppendRequest] = Field(min_length=1, max_length=5_000)


class VerifyTokenRequest(BaseModel):
    token: str = Field(min_length=1, max_length=4_000)


def _caller(
    request: Request,
    authorization: Annotated[str, Header()] = "",
    x_bankplatform_user: Annotated[str, Header()] = "",
    x_bankplatform_pipeline: Annotated[str, Header()] = "",
) -> Principal:
    """The proven identity of a request (every route but ``/healthz``)."""
    authority: KeyAuthority = request.app.state.authority
    return authority.authenticate(
        Credential(authorization, x_bankplatform_user, x_bankplatform_pipeline)
    )


Caller = Annotated[Principal, Depends(_caller)]


def create_app(authority: KeyAuthority) -> FastAPI:
    """The API over one ``KeyAuthority``."""
    app = FastAPI(
        title="bankplatform key and audit service",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.state.authority = authority

    @app.exception_handler(BankplatformError)
    async def _one_line(request: Request, error: Exception) -> JSONResponse:
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return JSONResponse({"error": str(error)}, status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug, not a decision: one line to the caller, the type for the log.
        return JSONResponse(
            {"error": f"key service error ({type(error).__name__}); see its log"},
            status_code=500,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            {"error": f"bad request: {where}: {first.get('msg', 'invalid')}"},
            status_code=400,
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "env": authority.env}

    @app.get("/v1/whoami")
    def whoami(principal: Caller) -> dict[str, Any]:
        return authority.describe(principal)

    @app.post("/v1/access/decide")
    def decide(body: DecideRequest, principal: Caller) -> dict[str, bool]:
        authority.decide(principal, body.action, body.resource, body.details)
        return {"allowed": True}

    @app.post("/v1/datasets/access")
    def dataset_access(body: DatasetRequest, principal: Caller) -> dict[str, str]:
        classification = authority.dataset_access(
            principal, body.dataset, body.operation
        )
        return {"classification": classification}

    @app.post("/v1/datasets/check")
    def check_catalog(body: CatalogRequest, principal: Caller) -> dict[str, Any]:
        return {"mismatches": authority.check_run_catalog(principal, body.datasets)}

    @app.post("/v1/keys/data-key")
    def data_key(body: DatasetRequest, principal: Caller) -> dict[str, Any]:
        key, version, wrapped = authority.data_key(principal, body.dataset)
        return {"data_key": _b64(key), "version": version, "wrapped": _b64(wrapped)}

    @app.post("/v1/keys/unwrap")
    def unwrap(body: UnwrapRequest, principal: Caller) -> dict[str, str]:
        try:
            wrapped = base64.urlsafe_b64decode(body.wrapped)
        except ValueError:
            raise BadRequest("wrapped: not base64") from None
        key = authority.unwrap(principal, body.dataset, body.version, wrapped)
        return {"data_key": _b64(key)}

    @app.post("/v1/pseudonyms")
    def pseudonyms(body: PseudonymRequest, principal: Caller) -> dict[str, Any]:
        return {"tokens": authority.pseudonyms(principal, body.kind, body.values)}

    @app.post("/v1/tokens")
    def issue(body: TokenRequest, principal: Caller) -> dict[str, str]:
        token, jti = authority.issue_token(
            principal, body.user, body.roles, body.ttl_minutes
        )
        return {"token": token, "jti": jti}

    @app.post("/v1/tokens/revoke")
    def revoke(body: RevokeRequest, principal: Caller) -> dict[str, str]:
        authority.revoke_token(principal, body.jti, body.reason)
        return {"revoked": body.jti}

    @app.post("/v1/audit/records")
    def append(body: AppendRequest, principal: Caller) -> dict[str, Any]:
        record = authority.record(
            principal, body.action, body.resource, body.outcome, body.details
        )
        return {"seq": record["seq"], "hash": record["hash"]}

    @app.post("/v1/audit/batch")
    def append_batch(body: BatchRequest, principal: Caller) -> dict[str, Any]:
        written = authority.record_many(
            principal,
            [(r.action, r.resource, r.outcome, r.details) for r in body.records],
        )
        return {"first_seq": written[0]["seq"], "last_seq": written[-1]["seq"]}

    @app.post("/v1/tokens/verify")
    def verify_token(body: VerifyTokenRequest, principal: Caller) -> dict[str, Any]:
        client = authority.verify_token(principal, body.token)
        return authority.describe(client)

    @app.get("/v1/audit/records")
    def records(principal: Caller, resource: str = "", tail: int = 0) -> dict[str, Any]:
        if not 0 <= tail <= 10_000_000:  # noqa: PLR2004
            raise BadRequest("tail: between 0 and 10,000,000")
        return {"records": authority.records(principal, resource, tail)}

    @app.post("/v1/audit/verify")
    def verify(principal: Caller) -> dict[str, Any]:
        verdict = authority.verify(principal)
        return {
            "ok": verdict.ok,
            "records": verdict.records,
            "checkpoints": verdict.checkpoints,
            "problem": verdict.problem,
        }

    return app


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()
