"""The scoring service's HTTP API (FastAPI).

Every route but ``/healthz`` needs a bearer token, checked before the body is
read; the role each route needs comes from the key service's verdict on the
token. Every response that is not a success is ``{"error", "request_id"}`` with
a 4xx status (503 when the service cannot decide now), never a stack trace.
Bodies are bounded (413) and validated strictly (400 malformed JSON, 422 a
field out of contract). The OpenAPI document at ``/openapi.json`` lists every
status a route can answer.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from bankplatform.errors import BankplatformError
from bankplatform.http_api import ErrorPolicy, install_error_handlers
from bankplatform.security.audit import DECISION_SHA256
from bankplatform.security.policy import AccessDenied, Action, IdentityError
from bankplatform.serving.listener import CHALLENGE_PATTERN, listener_proof
from bankplatform.serving.schemas import (
    REQUEST_ID,
    AppealRequest,
    Application,
    HaltRequest,
    OverrideRequest,
    RollbackRequest,
    ScoreResponse,
    TrafficRequest,
)
from bankplatform.serving.scoring import UnknownCustomer
from bankplatform.serving.service import (
    Caller,
    DecisionNotFound,
    ScoringService,
    Unavailable,
    new_request_id,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOG = logging.getLogger("bankplatform.serving")
PUBLIC = "/healthz"
_STATUS: list[tuple[type[Exception], int]] = [
    (IdentityError, 401),
    (AccessDenied, 403),
    (DecisionNotFound, 404),
    (UnknownCustomer, 404),
    (Unavailable, 503),
    (BankplatformError, 409),
]


class ErrorBody(BaseModel):
    """Every refusal: what was wrong, in one line, and the request's id."""

    error: str
    request_id: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "Malformed JSON",
        401: "No or invalid bearer token",
        403: "The token's roles do not permit this route",
        404: "No such decision, or (on /v1/score) no features for the customer token",
        409: "The change cannot be made now",
        413: "Body larger than the limit",
        415: "Body is not JSON",
        422: "A field out of contract",
        503: "The service cannot decide now (no champion, or records not written)",
    }
    return {c: {"model": ErrorBody, "description": meaning[c]} for c in codes}


_BODY_ERRORS = _errors(400, 401, 403, 413, 415, 422, 503)


class _Gate:
    """ASGI middleware: request id, body bound, authentication, one audit record.

    Runs before FastAPI parses anything, so an unauthenticated caller learns
    nothing about the body's contract, and a too-large body is never read whole.
    """

    def __init__(self, app: ASGIApp, service: ScoringService, max_body: int) -> None:
        self.app, self.service, self.max_body = app, service, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        if scope["path"] == PUBLIC:
            await self.app(scope, receive, send)
            return
        route = f"{scope['method']} {scope['path']}"[:200]
        caller, refusal = self._admit(dict(scope["headers"]))
        body: bytes | None = b""
        if caller is not None:
            state["caller"] = caller
        if refusal is None:
            # The body (a few KiB at most) is read here, bounded, and handed on
            # whole: one that streams in without Content-Length is refused as it grows.
            body = await _bounded_body(receive, self.max_body)
            if body is None:
                refusal = self._too_large()
        name = caller.name if caller is not None else "anonymous"
        if refusal is not None:
            status, error = refusal
            await _send_error(send, status, error, request_id)
            details = (
                {"reason": error[:200]} if status == HTTPStatus.UNAUTHORIZED else None
            )
            self.service.record_request(name, route, status, request_id, details)
            return
        answered = {"status": 500}
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        await self.app(scope, replay, observed_send)
        self.service.record_request(
            name, route, answered["status"], request_id, state.get("audit")
        )

    def _admit(
        self, headers: dict[bytes, bytes]
    ) -> tuple[Caller | None, tuple[int, str] | None]:
        """The proven caller, and the refusal its headers earn (status, reason)."""
        try:
            caller = self.service.authenticate(
                headers.get(b"authorization", b"").decode("latin-1")
            )
        except IdentityError as error:
            return None, (HTTPStatus.UNAUTHORIZED, str(error))
        except Unavailable as error:
            return None, (HTTPStatus.SERVICE_UNAVAILABLE, str(error))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return caller, self._too_large()
        kind = headers.get(b"content-type", b"").split(b";")[0].strip()
        has_body = length not in (None, b"0") or b"transfer-encoding" in headers
        if has_body and kind != b"application/json":
            return caller, (
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json",
            )
        return caller, None

    def _too_large(self) -> tuple[int, str]:
        return (
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body larger than {self.max_body} bytes",
        )


async def _bounded_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it passes ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)  # the client went away; the app sees an empty body
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _send_error(send: Send, status: int, error: str, request_id: str) -> None:
    body = json.dumps({"error": error, "request_id": request_id}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or new_request_id()


def _needs(*actions: Action) -> Any:
    """A route dependency: the caller's roles permit one of ``actions``. It runs
    before the body is parsed, so a caller without the role learns nothing of it."""

    async def check(request: Request) -> None:  # async: no thread hop for a lookup
        ScoringService.authorize(request.state.caller, *actions)

    return Depends(check)


def _caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


def _service(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.service
    return service


Service = Annotated[ScoringService, Depends(_service)]
_BEARER = HTTPBearer(
    auto_error=False, description="A token from `bankplatform token issue`."
)
_ERRORS = ErrorPolicy(
    service="scoring service",
    statuses=_STATUS,
    unexpected_status=503,
    invalid_status=422,
    malformed_json=True,
    request_id=_request_id,
    log=_LOG,
)
public = APIRouter()
scoring = APIRouter(prefix="/v1")
admin = APIRouter(prefix="/v1/admin")
oversight = APIRouter(prefix="/v1/decisions")


def create_app(service: ScoringService) -> FastAPI:
    """The scoring API over one ``ScoringService``."""
    app = FastAPI(
        title="bankplatform scoring service",
        version="1",
        docs_url=None,
        redoc_url=None,
        description="Credit decisions from the governed champion (and challenger).",
    )
    app.state.service = service
    install_error_handlers(app, _ERRORS)
    for router in (public, scoring, admin, oversight):
        app.include_router(router)
    app.add_middleware(
        _Gate, service=service, max_body=service.context.settings.max_body_bytes
    )
    return app


@public.get("/healthz", include_in_schema=True)
def healthz(
    request: Request,
    challenge: Annotated[
        str, Query(pattern=CHALLENGE_PATTERN, description="hex, 32-128 characters")
    ] = "",
) -> dict[str, str]:
    """Liveness; with a ``challenge``, the proof that this is the service the
    workspace started (``serving.listener``). Reveals nothing else."""
    listener = getattr(request.app.state, "listener", None)
    if not challenge or listener is None:
        return {"status": "ok"}
    key, port = listener
    return {"status": "ok", "proof": listener_proof(key, challenge, port)}


@scoring.post(
    "/score",
    response_model=ScoreResponse,
    responses={**_BODY_ERRORS, **_errors(404)},
    dependencies=[Depends(_BEARER), _needs(Action.SCORE)],
)
async def score(
    application: Application, request: Request, service: Service
) -> Response:
    """Decide one loan application: score, decision, reason codes, version."""
    caller = _caller(request)
    arguments = (application, caller, _request_id(request))
    if service.challenger_in_traffic():
        # A slow challenger must not hold up other requests: a worker thread.
        response = await run_in_threadpool(service.score, *arguments)
    else:
        # The champion alone answers in about a millisecond: no thread hop.
        response = service.score(*arguments)
    request.state.audit = {
        "model_version": response["model_version"],
        "variant": response["variant"],
        "decision": response["decision"],
        # The decision-log line, bound to the signed log: an edit shows.
        DECISION_SHA256: service.logged_line_sha256(arguments[2]),
    }
    # Built by the service to the ScoreResponse schema; not validated twice.
    return Response(orjson.dumps(response), media_type="application/json")


@scoring.get(
    "/models",
    responses=_errors(401, 403, 503),
    dependencies=[Depends(_BEARER), _needs(Action.SCORE, Action.MANAGE_TRAFFIC)],
)
def models(service: Service) -> dict[str, Any]:
    """Served versions, refused ones, the release state and the challenger's window."""
    return service.models()


@admin.post(
    "/traffic",
    responses={**_BODY_ERRORS, **_errors(409)},
    dependencies=[Depends(_BEARER), _needs(Action.MANAGE_TRAFFIC)],
)
def traffic(body: TrafficRequest, request: Request, service: Service) -> dict[str, Any]:
    """Canary weight (1 = blue/green switch, 0 = back) and shadow mode."""
    state = service.set_traffic(
        _caller(request),
        weight=body.challenger_weight,
        shadow=body.shadow,
        reason=body.reason,
    )
    return state.model_dump()


@admin.post(
    "/halt",
    responses=_BODY_ERRORS,
    dependencies=[Depends(_BEARER), _needs(Action.MANAGE_TRAFFIC)],
)
def halt(body: HaltRequest, request: Request, service: Service) -> dict[str, Any]:
    """Kill switch: refer every application to manual underwriting (or resume)."""
    caller = _caller(request)
    return service.halt(caller, halted=body.halted, reason=body.reason).model_dump()


@admin.post(
    "/rollback",
    responses=_BODY_ERRORS,
    dependencies=[Depends(_BEARER), _needs(Action.MANAGE_TRAFFIC)],
)
def rollback(
    body: RollbackRequest, request: Request, service: Service
) -> dict[str, Any]:
    """Take the challenger out of traffic now (weight 0, shadow off)."""
    return service.rollback(_caller(request).name, body.reason).model_dump()


@admin.post(
    "/reload",
    responses=_errors(401, 403, 413, 415, 503),
    dependencies=[Depends(_BEARER), _needs(Action.MANAGE_TRAFFIC)],
)
def reload(request: Request, service: Service) -> dict[str, Any]:
    """Re-read the registry aliases now (they are also polled)."""
    return service.reload(_caller(request).name)


_DECISION_ID = Path(pattern=REQUEST_ID, description="A request id from /v1/score.")


@oversight.post(
    "/{request_id}/override",
    responses={**_BODY_ERRORS, **_errors(404)},
    dependencies=[Depends(_BEARER), _needs(Action.REVIEW_DECISIONS)],
)
def override(
    body: OverrideRequest,
    request: Request,
    service: Service,
    request_id: str = _DECISION_ID,
) -> dict[str, Any]:
    """A reviewer replaces a decision, with a reason."""
    return service.override(_caller(request), request_id, body.decision, body.reason)


@oversight.post(
    "/{request_id}/appeal",
    responses={**_BODY_ERRORS, **_errors(404)},
    dependencies=[Depends(_BEARER), _needs(Action.APPEAL_DECISION)],
)
def appeal(
    body: AppealRequest,
    request: Request,
    service: Service,
    request_id: str = _DECISION_ID,
) -> dict[str, Any]:
    """An applicant contests a decision; it joins the appeal queue."""
    return service.appeal(_caller(request), request_id, body.reason)
