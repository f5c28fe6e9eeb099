"""The review page's HTTP surface (Starlette): the page's files and a small JSON API over
ReviewBackend.

Security model (docs/review-page.md): the browser keeps the reviewer's token in
sessionStorage (it dies with the tab) and sends it as `Authorization: Bearer` on every
call. No cookie is ever set or read, so a cross-site request carries no credential and
there is nothing to forge (CSRF); state-changing calls also need a JSON body and, when the
browser names one, this page's own Origin. Every response carries a strict CSP (no inline
script, no third-party origin: the page's assets are served from here) and no-store for
the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from graphmesh.errors import GraphmeshError, InvalidArgument, PermissionDenied, Unauthenticated
from graphmesh.rpc.errors import from_rpc_error
from services.review.web.backend import ReviewBackend, Reviewer, approval_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGES = ("/", "/history", "/audit", "/approvals/{approval_id}", "/runs/{run_id}/trace")
HEARTBEAT_SECONDS = 15.0
FIRST_ITEM_WAIT = 1.0  # a stream that fails at once (a bad sequence) answers with an HTTP error
SIGN_IN_CACHE_SECONDS = 10.0  # WhoAmI per token; the forwarded calls authenticate on their own

SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
                                "object-src 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

# gRPC status -> HTTP status for the page's API.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def error_body(error: GraphmeshError) -> dict:
    return {"error": {"status": error.status.name, "code": error.code if error.code != error.status.name else "",
                      "message": error.message}}


def error_response(error: GraphmeshError, **extra: Any) -> JSONResponse:
    return JSONResponse({**error_body(error), **extra}, status_code=HTTP_STATUS.get(error.status, 500))


def as_graphmesh_error(exc: Exception) -> GraphmeshError | None:
    if isinstance(exc, GraphmeshError):
        return exc
    if isinstance(exc, grpc.RpcError):
        return from_rpc_error(exc)
    return None


class SecurityHeaders:
    """Pure ASGI (streamed responses pass through untouched): the headers above on every
    response, and no caching of the API's answers."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-store" if api else b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class ReviewPage:
    """Route handlers; one instance per process, holding the backend and a short cache of
    who each token is."""

    def __init__(self, backend: ReviewBackend) -> None:
        self.backend = backend
        self._signed_in: dict[str, tuple[float, Reviewer]] = {}

    async def reviewer(self, request: Request) -> Reviewer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("sign in: send your graphmesh token or JWT as 'Authorization: Bearer <token>'")
        key = hashlib.sha256(token.strip().encode()).hexdigest()
        cached = self._signed_in.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        reviewer = await self.backend.sign_in(token.strip())
        if len(self._signed_in) > 1000:  # the cache stays small: drop what expired
            now = time.monotonic()
            self._signed_in = {k: v for k, v in self._signed_in.items() if v[0] > now}
        self._signed_in[key] = (time.monotonic() + SIGN_IN_CACHE_SECONDS, reviewer)
        return reviewer

    # -- JSON endpoints -------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        return JSONResponse((await self.reviewer(request)).as_json())

    async def graphs(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        return JSONResponse(await self.backend.graph_names(reviewer))

    async def approvals(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        return JSONResponse(await self.backend.list_approvals(reviewer, _query(request)))

    async def approval(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        return JSONResponse(await self.backend.approval_page(reviewer, request.path_params["approval_id"]))

    async def decide(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        _same_origin_json(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error_response(_bad("the body must be a JSON object: {kind, comment, edited_value}"))
        approval_id = request.path_params["approval_id"]
        try:
            return JSONResponse(await self.backend.decide(reviewer, approval_id, body))
        except grpc.RpcError as e:
            error = from_rpc_error(e)
            if error.code in ("ALREADY_DECIDED", "APPROVAL_EXPIRED", "APPROVAL_CANCELLED") \
                    or error.status == grpc.StatusCode.FAILED_PRECONDITION:
                # Someone else decided first (or it expired): the page shows that decision.
                current = await self.backend.get_approval(reviewer, approval_id)
                return error_response(error, approval=approval_json(current, reviewer))
            raise

    async def audit(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        return JSONResponse(await self.backend.audit(reviewer, _query(request)))

    async def trace(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        return JSONResponse(await self.backend.trace(reviewer, request.path_params["run_id"]))

    # -- NDJSON streams ---------------------------------------------------------------------------

    async def watch(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        after = _whole(request.query_params.get("after", "0"), "after")
        source = self.backend.watch(reviewer, after=after, graph=request.query_params.get("graph", ""))
        return await ndjson(source)

    async def run_events(self, request: Request) -> Response:
        reviewer = await self.reviewer(request)
        after = _whole(request.query_params.get("after", "0"), "after")
        return await ndjson(self.backend.run_events(reviewer, request.path_params["run_id"], after))


async def ndjson(source: AsyncIterator[dict]) -> Response:
    """Streams `source` as one JSON object per line, with a heartbeat line while it is
    quiet (proxies close idle connections). A failure before the first item is an HTTP
    error; a later one is a last line {"type": "error", ...}."""
    items = aiter(source)
    pending = asyncio.ensure_future(anext(items))
    done, _ = await asyncio.wait({pending}, timeout=FIRST_ITEM_WAIT)
    exc = pending.exception() if done else None
    if isinstance(exc, StopAsyncIteration):  # ended at once: nothing to send
        return Response(b"", media_type="application/x-ndjson")
    if exc is not None:
        error = as_graphmesh_error(exc)
        if error is None:
            raise exc
        return error_response(error)

    async def lines() -> AsyncIterator[bytes]:
        nonlocal pending
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
                if not done:
                    yield b'{"type": "heartbeat"}\n'
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - told to the page, then the stream ends
                    error = as_graphmesh_error(exc)
                    if error is None:
                        log.exception("review page stream failed")
                        return
                    yield json.dumps({"type": "error", **error_body(error)}).encode() + b"\n"
                    return
                yield json.dumps(item).encode() + b"\n"
                pending = asyncio.ensure_future(anext(items))
        finally:  # the page went away, or the stream ended: stop the gRPC call behind it
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
            await items.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _query(request: Request) -> dict[str, Any]:
    query: dict[str, Any] = dict(request.query_params)
    query["status"] = [s for value in request.query_params.getlist("status") for s in value.split(",") if s]
    return query


def _bad(message: str) -> GraphmeshError:
    return InvalidArgument(message)


def _whole(value: str, name: str) -> int:
    if not value.isdigit():
        raise _bad(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _same_origin_json(request: Request) -> None:
    """Belt and braces against cross-site requests (the token is never ambient anyway)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise _bad("send the decision as application/json")
    origin = request.headers.get("origin")
    # Host only: behind a proxy that ends TLS the browser says https, this server sees http.
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise PermissionDenied(f"a decision from another origin ({origin}) is refused", code="CROSS_ORIGIN")


async def _on_error(request: Request, exc: Exception) -> Response:
    error = as_graphmesh_error(exc)
    if error is None:
        log.exception("review page: %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": {"status": "INTERNAL", "code": "", "message": "internal error; see the "
                                       "review service's log"}}, status_code=500)
    return error_response(error)


def make_app(backend: ReviewBackend) -> Starlette:
    page = ReviewPage(backend)
    index = STATIC / "index.html"

    async def serve_index(request: Request) -> Response:
        return FileResponse(index, media_type="text/html")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/api/me", page.me),
        Route("/api/graphs", page.graphs),
        Route("/api/approvals", page.approvals),
        Route("/api/approvals/watch", page.watch),
        Route("/api/approvals/{approval_id}", page.approval),
        Route("/api/approvals/{approval_id}/decision", page.decide, methods=["POST"]),
        Route("/api/audit", page.audit),
        Route("/api/runs/{run_id}/events", page.run_events),
        Route("/api/runs/{run_id}/trace", page.trace),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *(Route(path, serve_index) for path in PAGES),
    ]
    app = Starlette(routes=routes, exception_handlers={GraphmeshError: _on_error, grpc.RpcError: _on_error, Exception: _on_error})
    app.add_middleware(SecurityHeaders)
    return app
