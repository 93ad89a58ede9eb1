"""One error shape for every HTTP answer that is not a success: `{"error": {"code", "message"}}`.

The message says what happened, the offending value and what to do; the code is stable for
programs. Handlers turn FastAPI's validation errors, Starlette's 404/405, a Redis that cannot
be reached or refuses writes (out of memory, a read-only replica, loading) and any other
failure into the same shape, so a client never has to parse two formats nor sees a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from core.domain.errors import StoreUnavailable
from core.redis.store import redis_errors

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
READS = ("GET", "HEAD", "OPTIONS")

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)
    error: ErrorDetail


class ApiError(Exception):
    """A refusal with its HTTP status; raised before anything is enqueued, so nothing changed."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class RequestRefused(HTTPException):
    """A request refused while it arrives (`bot/http/guard.py`): headers, body size, body time, JSON depth.

    An HTTPException, so FastAPI's body reading lets it through to `_http_error`, which answers its
    own `code`. The connection stays open: h11 drains what is left of the body, so the client reads
    the answer instead of a reset.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry for the error statuses an operation may answer."""
    return {status: {"model": ErrorBody, "description": STATUS_CODES.get(status, "error")} for status in statuses}


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{_where(error['loc'])}: {error['msg']}" for error in exc.errors()[:5]]
    message = "; ".join(problems) + f"; fix the request (see /openapi.json for {request.method} {request.url.path})"
    return error_response(422, "invalid_request", message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, RequestRefused):
        return error_response(exc.status_code, exc.code, str(exc.detail), dict(exc.headers or {}))
    code = STATUS_CODES.get(exc.status_code, "error")
    if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8): the same 422 as bad JSON
        message = f"the body could not be read ({exc.detail}); send UTF-8 JSON with Content-Type: application/json"
        return error_response(422, "invalid_request", message)
    if exc.status_code == 404:
        message = f"there is no {request.url.path}; the API is described at /openapi.json"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /openapi.json for its methods"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


def store_unavailable_message(method: str, exc: StoreUnavailable) -> str:
    """What a client may conclude: a refused or unreachable store wrote nothing; a timeout may have."""
    if method in READS:
        return f"the bot cannot read its store right now; retry in {RETRY_AFTER_SECONDS}s ({exc})"
    if isinstance(exc.__cause__, redis.exceptions.TimeoutError):  # the command may have run; the answer was lost
        return (
            f"the bot's store did not answer in time; your request may or may not have been stored: "
            f"check before you retry in {RETRY_AFTER_SECONDS}s ({exc})"
        )
    return f"the bot cannot store your request right now; nothing was done; retry in {RETRY_AFTER_SECONDS}s ({exc})"


def _translated(exc: redis.exceptions.RedisError) -> StoreUnavailable | None:
    """The StoreUnavailable the core would raise for `exc`, or None for a Redis error that is a bug."""
    try:
        with redis_errors():
            raise exc
    except StoreUnavailable as translated:
        return translated
    except redis.exceptions.RedisError:
        return None


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer is sent; the client gets the usual shape.
    message = (
        f"the bot failed while handling {request.method} {request.url.path}; the error is in the server log. "
        "Check the outcome (GET) before retrying"
    )
    return error_response(500, "internal_error", message)


def install(app: FastAPI, on_store_unavailable: Callable[[], None] = lambda: None) -> None:
    """Register the handlers; `on_store_unavailable` is called for each `store_unavailable` answer (a metric)."""

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreUnavailable)
        on_store_unavailable()
        log.warning("%s %s: answered 503 store_unavailable: %s", request.method, request.url.path, exc)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return error_response(503, "store_unavailable", store_unavailable_message(request.method, exc), headers)

    async def redis_error(request: Request, exc: Exception) -> JSONResponse:
        """A Redis error that escaped the core's translation (a direct client call): the same 503, or a 500."""
        assert isinstance(exc, redis.exceptions.RedisError)
        translated = _translated(exc)
        if translated is None:
            raise exc  # a bug, not an outage: the 500 handler answers and Starlette logs the traceback
        return await store_unavailable(request, translated)

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(redis.exceptions.RedisError, redis_error)
    app.add_exception_handler(Exception, _internal_error)
