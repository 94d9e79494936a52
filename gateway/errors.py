"""Every error the gateway answers, in one shape: JSON {"error": {"code", "message"}}.

Routes raise ApiError (or let a gRPC error through grpc_call); the handlers registered
here turn it, FastAPI's validation and routing errors, and anything unexpected into that
body, never a stack trace. `error_responses` documents that body in the OpenAPI document
for the statuses a route can answer.
"""
from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("gateway")

GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


# The code of the errors Starlette raises itself (routing, body size and read timeouts).
HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 413: "TOO_LARGE"}

ERROR_DESCRIPTIONS = {
    400: "A parameter, header or token is malformed or out of range; the message says which.",
    401: "Sign-in required.",
    403: "Not allowed (or a missing, tampered or expired signature).",
    404: "No such resource.",
    408: "The request body stalled: nothing arrived for `http.body_idle_timeout_s`.",
    409: "The resource is not in a state that allows this (not READY, upload offset mismatch).",
    412: "`Tus-Resumable: 1.0.0` is required.",
    413: "The body or upload is larger than allowed; the message says the limit.",
    415: "Wrong Content-Type.",
    416: "The Range is outside the object.",
    422: "The JSON body or a parameter does not match its schema.",
    429: "Too many requests; `Retry-After` says when to try again.",
    503: "A backend service is unavailable; retry later.",
    504: "A backend service did not answer in time; retry later.",
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # some errors add fields (e.g. `status` of a video)
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer's body."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int, dict]:
    """OpenAPI `responses=` entries: the error body for each of `statuses`."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


# What any route that reads a backend service may answer besides its own errors.
SERVICE_ERRORS = (429, 503, 504)


class ApiError(Exception):
    """An error answered to the client as status + {"error": {code, message, **extra}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}


async def grpc_call(coro):
    """Awaits a gRPC call; its failure becomes the matching ApiError (details hidden on 500)."""
    try:
        return await coro
    except grpc.aio.AioRpcError as exc:
        status = GRPC_TO_HTTP.get(exc.code(), 500)
        message = exc.details() or exc.code().name
        if status == 500:
            log.error("backend error: %s %s", exc.code(), exc.details())
            message = "internal error"
        raise ApiError(status, exc.code().name, message) from None


async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
    body = {"error": {"code": exc.code, "message": exc.message, **exc.extra}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return JSONResponse({"error": {"code": "INVALID_ARGUMENT", "message": "; ".join(parts)}}, status_code=422)


async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                        headers=exc.headers)


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error: %s", exc)
    return JSONResponse({"error": {"code": "INTERNAL", "message": "internal error"}}, status_code=500)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
