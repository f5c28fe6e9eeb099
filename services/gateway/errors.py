"""Errors as the reference server shapes them: `{"detail": "..."}` with an HTTP status.

A failed gRPC call (grpc.aio.AioRpcError) takes the status its gRPC code maps to and its
message as the detail; routes raise HTTPError for their own checks (a bad body field is
422 naming the field). Starlette's own errors (an unknown path: 404, a wrong method: 405)
get the same JSON shape."""

from __future__ import annotations

import logging

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graphmesh.errors import GraphmeshError

log = logging.getLogger(__name__)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    # A valid request this release does not serve.
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


class HTTPError(Exception):
    """What a route raises for a check of its own: answered as {"detail": detail}."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    if status in (204, 304) or status < 200:
        return Response(status_code=status, headers=headers)
    return JSONResponse({"detail": detail or "unknown error"}, status_code=status, headers=headers)


async def _rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
    status = http_status(exc.code())
    detail = exc.details() or exc.code().name
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        log.warning("%s %s: graphmesh unavailable: %s", request.method, request.url.path, detail)
    elif status == 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, exc.code().name, detail)
    return error_response(status, detail)


async def _http_error(request: Request, exc: HTTPError) -> Response:
    return error_response(exc.status, exc.detail, exc.headers)


async def _starlette_error(request: Request, exc: HTTPException) -> Response:
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _graphmesh_error(request: Request, exc: GraphmeshError) -> Response:
    return error_response(http_status(exc.status), exc.message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
    return error_response(500, "Internal Server Error")


EXCEPTION_HANDLERS = {
    grpc.aio.AioRpcError: _rpc_error,
    HTTPError: _http_error,
    HTTPException: _starlette_error,
    GraphmeshError: _graphmesh_error,
    Exception: _unexpected,
}
