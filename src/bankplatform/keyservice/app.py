"""The key and audit service's HTTP API (FastAPI), served on a Unix socket.

Every route but ``/healthz`` authenticates the caller on every call (a bearer
token, or in a developer workspace the local session credential and a declared
user name). Errors are one line of JSON, ``{"error": "..."}``: 400 bad request,
401 no acceptable identity, 403 denied, 503 the audit log cannot be written.
"""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel, Field

from bankplatform.errors import BankplatformError
from bankplatform.http_api import ErrorPolicy, install_error_handlers
from bankplatform.keyservice.authority import (
    BadRequest,
    Credential,
    KeyAuthority,
)
from bankplatform.keyservice.bundles import MAX_FILES, PackageRequest
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
_ERRORS = ErrorPolicy(
    service="key service",
    statuses=_STATUS,
    invalid_prefix="bad request: ",
    log=logging.getLogger("bankplatform.keyservice"),
)


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


class BundleRequest(BaseModel):
    model: str = Field(max_length=200)
    version: int = Field(ge=1, le=1_000_000)
    files: dict[str, str] = Field(max_length=MAX_FILES)
    lineage: dict[str, Any] = {}


class RunRequest(BaseModel):
    run_id: str = Field(min_length=1, max_length=200)
    pipelines: list[str] = Field(min_length=1, max_length=50)
    minutes: int = Field(default=24 * 60, ge=1, le=24 * 60)


class RunCredentialRequest(BaseModel):
    credential: str = Field(min_length=1, max_length=200)
    minutes: int = Field(default=24 * 60, ge=1, le=24 * 60)


class VerifyTokenRequest(BaseModel):
    token: str = Field(min_length=1, max_length=4_000)


def _authority(request: Request) -> KeyAuthority:
    authority: KeyAuthority = request.app.state.authority
    return authority


def _caller(
    request: Request,
    authorization: Annotated[str, Header()] = "",
    x_bankplatform_user: Annotated[str, Header()] = "",
    x_bankplatform_pipeline: Annotated[str, Header()] = "",
    x_bankplatform_run: Annotated[str, Header()] = "",
) -> Principal:
    """The proven identity of a request (every route but ``/healthz``)."""
    return _authority(request).authenticate(
        Credential(
            authorization,
            x_bankplatform_user,
            x_bankplatform_pipeline,
            x_bankplatform_run,
        )
    )


Authority = Annotated[KeyAuthority, Depends(_authority)]
Caller = Annotated[Principal, Depends(_caller)]
public = APIRouter()
access = APIRouter(prefix="/v1")
keys = APIRouter(prefix="/v1")
audit = APIRouter(prefix="/v1")
bundles = APIRouter(prefix="/v1")


def create_app(authority: KeyAuthority) -> FastAPI:
    """The API over one ``KeyAuthority``."""
    app = FastAPI(
        title="bankplatform key and audit service",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.authority = authority
    install_error_handlers(app, _ERRORS)
    for router in (public, access, keys, audit, bundles):
        app.include_router(router)
    return app


@public.get("/healthz")
def healthz(authority: Authority) -> dict[str, str]:
    return {"status": "ok", "env": authority.env}


@access.get("/whoami")
def whoami(principal: Caller, authority: Authority) -> dict[str, Any]:
    return authority.describe(principal)


@access.get("/policy")
def policy(principal: Caller, authority: Authority) -> dict[str, Any]:
    """The installed policy's hash, the workspace conf's, and their differences."""
    del principal  # any proven identity may see whether conf/ is in force
    return authority.policy_status()


@access.post("/access/decide")
def decide(
    body: DecideRequest, principal: Caller, authority: Authority
) -> dict[str, bool]:
    authority.decide(principal, body.action, body.resource, body.details)
    return {"allowed": True}


@access.post("/runs")
def start_run(
    body: RunRequest, principal: Caller, authority: Authority
) -> dict[str, str]:
    """A run credential for the pipelines a run acts for (its starter's decisions)."""
    credential = authority.grant_run(
        principal, body.run_id, body.pipelines, body.minutes
    )
    return {"credential": credential}


@access.post("/runs/renew")
def renew_run(
    body: RunCredentialRequest, principal: Caller, authority: Authority
) -> dict[str, bool]:
    authority.renew_run(principal, body.credential, body.minutes)
    return {"renewed": True}


@access.post("/runs/end")
def end_run(
    body: RunCredentialRequest, principal: Caller, authority: Authority
) -> dict[str, bool]:
    authority.end_run(principal, body.credential)
    return {"ended": True}


@access.post("/datasets/access")
def dataset_access(
    body: DatasetRequest, principal: Caller, authority: Authority
) -> dict[str, str]:
    classification = authority.dataset_access(principal, body.dataset, body.operation)
    return {"classification": classification}


@access.post("/datasets/check")
def check_catalog(
    body: CatalogRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    return {"mismatches": authority.check_run_catalog(principal, body.datasets)}


@keys.post("/keys/data-key")
def data_key(
    body: DatasetRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    key, version, wrapped = authority.data_key(principal, body.dataset)
    return {"data_key": _b64(key), "version": version, "wrapped": _b64(wrapped)}


@keys.post("/keys/unwrap")
def unwrap(
    body: UnwrapRequest, principal: Caller, authority: Authority
) -> dict[str, str]:
    try:
        wrapped = base64.urlsafe_b64decode(body.wrapped)
    except ValueError:
        raise BadRequest("wrapped: not base64") from None
    key = authority.unwrap(principal, body.dataset, body.version, wrapped)
    return {"data_key": _b64(key)}


@keys.post("/pseudonyms")
def pseudonyms(
    body: PseudonymRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    return {"tokens": authority.pseudonyms(principal, body.kind, body.values)}


@keys.post("/tokens")
def issue(
    body: TokenRequest, principal: Caller, authority: Authority
) -> dict[str, str]:
    token, jti = authority.issue_token(
        principal, body.user, body.roles, body.ttl_minutes
    )
    return {"token": token, "jti": jti}


@keys.post("/tokens/revoke")
def revoke(
    body: RevokeRequest, principal: Caller, authority: Authority
) -> dict[str, str]:
    authority.revoke_token(principal, body.jti, body.reason)
    return {"revoked": body.jti}


@keys.post("/tokens/verify")
def verify_token(
    body: VerifyTokenRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    client = authority.verify_token(principal, body.token)
    return authority.describe(client)


@audit.post("/audit/records")
def append(
    body: AppendRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    record = authority.record(
        principal, body.action, body.resource, body.outcome, body.details
    )
    return {"seq": record["seq"], "hash": record["hash"]}


@audit.post("/audit/batch")
def append_batch(
    body: BatchRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    written = authority.record_many(
        principal,
        [(r.action, r.resource, r.outcome, r.details) for r in body.records],
    )
    return {"first_seq": written[0]["seq"], "last_seq": written[-1]["seq"]}


@audit.get("/audit/records")
def records(
    principal: Caller, authority: Authority, resource: str = "", tail: int = 0
) -> dict[str, Any]:
    if not 0 <= tail <= 10_000_000:  # noqa: PLR2004
        raise BadRequest("tail: between 0 and 10,000,000")
    return {"records": authority.records(principal, resource, tail)}


@audit.post("/audit/verify")
def verify(principal: Caller, authority: Authority) -> dict[str, Any]:
    verdict = authority.verify(principal)
    return {
        "ok": verdict.ok,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "problem": verdict.problem,
    }


@bundles.post("/bundles")
def package(
    body: BundleRequest, principal: Caller, authority: Authority
) -> dict[str, Any]:
    try:
        files = {
            name: base64.b64decode(data, validate=True)
            for name, data in body.files.items()
        }
    except ValueError:
        raise BadRequest("files: not base64") from None
    return authority.package_bundle(
        principal, PackageRequest(body.model, body.version, files, body.lineage)
    )


@bundles.get("/bundles/public-key")
def bundle_public_key(principal: Caller, authority: Authority) -> dict[str, str]:
    del principal  # any proven identity may verify a bundle
    return {"pem": authority.keyring.bundle_public_key().decode()}


@bundles.get("/bundles/{digest}")
def bundle_archive(digest: str, principal: Caller, authority: Authority) -> Response:
    return Response(
        authority.bundle_archive(principal, digest), media_type="application/x-tar"
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()
