"""What the platform's two HTTP APIs share (the scoring service and the key and
audit service): one error handler, so every refusal is one JSON line with the
right status and no failure leaves a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


@dataclass(frozen=True)
class ErrorPolicy:
    """How an API answers what it refuses.

    Attributes:
        service: Its name in the line a caller gets for a bug ("... error (Type)").
        statuses: An exception type's status, the first that matches in order.
        unexpected_status: The status of a bug (500, or 503 where callers retry).
        invalid_status: The status of a body out of contract.
        invalid_prefix: What starts the line of a body out of contract.
        malformed_json: Answer a body that is not JSON with 400 on its own line.
        request_id: The id a response carries beside the error (``None``: none).
        log: Where a bug's traceback goes (never to the caller).
    """

    service: str
    statuses: Sequence[tuple[type[Exception], int]]
    unexpected_status: int = 500
    invalid_status: int = 400
    invalid_prefix: str = ""
    malformed_json: bool = False
    request_id: Callable[[Request], str] | None = None
    log: logging.Logger | None = None

    def answer(self, request: Request, status: int, error: str) -> JSONResponse:
        """``{"error": ...}`` (and the request id where the API gives one)."""
        body: dict[str, Any] = {"error": error}
        if self.request_id is not None:
            body["request_id"] = self.request_id(request)
        return JSONResponse(body, status_code=status)

    def refused(self, request: Request, error: Exception) -> JSONResponse:
        """A decision of the service: the status its exception type maps to."""
        status = next(code for kind, code in self.statuses if isinstance(error, kind))
        return self.answer(request, status, str(error))

    def invalid(self, request: Request, error: RequestValidationError) -> JSONResponse:
        """The first field out of contract, where and why, in one line."""
        first = error.errors()[0]
        if self.malformed_json and first.get("type") == "json_invalid":
            return self.answer(request, 400, "malformed JSON body")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        line = f"{self.invalid_prefix}{where}: {first.get('msg', 'invalid')}"
        return self.answer(request, self.invalid_status, line[:300])

    def http(self, request: Request, error: HTTPException) -> JSONResponse:
        """Starlette's own refusals (404, 405 with its Allow header)."""
        response = self.answer(request, error.status_code, str(error.detail))
        response.headers.update(error.headers or {})
        return response

    def unexpected(self, request: Request, error: Exception) -> JSONResponse:
        """A bug, not a decision: the type to the caller, the traceback to the log."""
        if self.log is not None:
            request_id = self.request_id(request) if self.request_id else "-"
            self.log.error("request %s failed", request_id, exc_info=error)
        return self.answer(
            request,
            self.unexpected_status,
            f"{self.service} error ({type(error).__name__}); see its log",
        )


def install_error_handlers(app: FastAPI, policy: ErrorPolicy) -> None:
    """Answer every refusal and failure of ``app`` as ``policy`` says."""
    decided = tuple(kind for kind, _ in policy.statuses)

    async def refused(request: Request, error: Exception) -> JSONResponse:
        return policy.refused(request, error)

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        return policy.invalid(request, cast("RequestValidationError", error))

    async def http(request: Request, error: Exception) -> JSONResponse:
        return policy.http(request, cast("HTTPException", error))

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return policy.unexpected(request, error)

    for kind in decided:
        app.add_exception_handler(kind, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, unexpected)
